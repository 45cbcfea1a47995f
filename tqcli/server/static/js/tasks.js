// The task list (filters, paging) and one task's detail (attempts, result or error, why it waits, actions).

import {api, report, say} from "./api.js";
import {h, fill, extend, badge, time, table, pretty, duration, between, STATES} from "./dom.js";

const PAGE = 50;

/** A table of task objects (status --json's tasks); each id links to the task's page. */
export function taskTable(tasks, {empty = "no task matches"} = {}) {
  return table([
    {label: "id", class: "num", cell: (t) => h("a", {href: `#/tasks/${t.id}`, class: "task-link"}, String(t.id))},
    {label: "name", cell: (t) => h("a", {href: `#/tasks/${t.id}`, class: "task-name"}, t.name)},
    {label: "queue", cell: (t) => t.queue},
    {label: "tenant", cell: (t) => t.tenant},
    {label: "state", cell: (t) => badge(t.state)},
    {label: "attempts", class: "num", cell: (t) => `${t.attempts}/${t.max_retries + 1}`},
    {label: "priority", class: "num", cell: (t) => String(t.priority)},
    {label: "created", cell: (t) => time(t.created_at)},
    {label: "finished", cell: (t) => time(t.finished_at)},
  ], tasks, {empty, rowAttrs: (t) => ({"data-task": t.id, "data-state": t.state, class: "task-row"})});
}

function options(values, chosen, all) {
  return [h("option", {value: ""}, all), ...values.map((v) => h("option", {value: v, selected: v === chosen}, v))];
}

async function names(path) {
  try {
    return (await api(path)).map((item) => item.name);
  } catch (error) {
    report(error, path.split("/").pop());
    return [];
  }
}

/** The task list: `#/tasks?queue=&tenant=&state=&limit=`. */
export async function mountList(main, params, app) {
  const chosen = {queue: params.get("queue") || "", tenant: params.get("tenant") || "", state: params.get("state") || ""};
  const limit = Math.max(1, Number(params.get("limit")) || PAGE);
  const go = (changes) => {
    const next = new URLSearchParams({...chosen, limit: String(limit), ...changes});
    for (const [key, value] of [...next]) if (!value) next.delete(key);
    app.navigate(`#/tasks?${next}`);
  };
  const [queueNames, tenantNames] = await Promise.all([names("/api/v1/queues"), names("/api/v1/tenants")]);
  const pick = (key, values, all) => h("label", {}, key,
    h("select", {id: `filter-${key}`, name: key, onchange: (e) => go({[key]: e.target.value, limit: String(PAGE)})},
      options(values.includes(chosen[key]) || !chosen[key] ? values : [...values, chosen[key]], chosen[key], all)));
  const list = h("div", {id: "task-list"});
  const footer = h("div", {class: "list-footer"});
  fill(main,
    h("h1", {}, "Tasks"),
    h("form", {class: "filters", onsubmit: (e) => e.preventDefault()},
      pick("queue", queueNames, "every queue"), pick("tenant", tenantNames, "every tenant"), pick("state", STATES, "every state"),
      (chosen.queue || chosen.tenant || chosen.state) ? h("a", {href: "#/tasks", class: "button-link"}, "clear filters") : null),
    list, footer);

  async function load() {
    try {
      const doc = await api("/api/v1/tasks", {query: {...chosen, limit}});
      const counts = doc.counts || {};
      const matching = chosen.state ? Number(counts[chosen.state] || 0) : STATES.reduce((n, s) => n + Number(counts[s] || 0), 0);
      fill(list, taskTable(doc.tasks || []));
      const shown = (doc.tasks || []).length;
      fill(footer,
        h("span", {class: "muted", id: "task-count"}, `showing the ${shown} newest of ${matching} matching task(s)`),
        shown < matching ? h("button", {type: "button", id: "show-more", onclick: () => go({limit: String(limit + PAGE)})}, `show ${Math.min(PAGE, matching - shown)} more`) : null);
    } catch (error) {
      report(error, "tasks");
    }
  }
  await load();
  return {
    async refresh(topics) {
      if (topics.has("tasks")) await load();
    },
  };
}

function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value === null || value === undefined || value === "" ? h("span", {class: "muted"}, "–") : value)];
}

function attempts(history) {
  if (!history || history.length === 0) return h("p", {class: "muted"}, "no attempt yet");
  return table([
    {label: "run", class: "num", cell: (a) => String(a.run)},
    {label: "attempt", class: "num", cell: (a) => String(a.attempt)},
    {label: "outcome", cell: (a) => badge(a.outcome || "running")},
    {label: "started", cell: (a) => time(a.started_at)},
    {label: "took", class: "num", cell: (a) => duration(between(a.started_at, a.finished_at))},
    {label: "worker", cell: (a) => a.worker || ""},
    {label: "error", cell: (a) => a.error ? (a.traceback
      ? h("details", {}, h("summary", {}, a.error), h("pre", {class: "traceback"}, a.traceback))
      : a.error) : ""},
  ], history);
}

/** Whether the signed-in user may cancel or bump `task` (change_task, or "own" for a submitter's own tasks). */
export function mayChange(app, task) {
  const may = app.me.may.change_task;
  return may === true || (may === "own" && task.submitted_by === app.me.user);
}

/** A button that asks for a second click before it acts (no browser dialog). */
export function confirmButton(text, confirmText, action, attrs = {}) {
  let armed = null;
  const button = h("button", {type: "button", ...attrs, onclick: async () => {
    if (!armed) {
      button.textContent = confirmText;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = text;
        button.classList.remove("armed");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      button.textContent = text;
      button.classList.remove("armed");
    }
  }}, text);
  return button;
}

// The task page's buttons, made once per page: a live refresh re-draws the page around the same
// elements, so what the user typed (a priority) and a half-confirmed cancel survive it.
function controls(id, app, reload) {
  const act = (doing, call, done) => async () => {
    try {
      await call();
      say(done(), "ok");
    } catch (error) {
      report(error, doing);
    }
    await reload();
  };
  const cancel = confirmButton("Cancel", "Click again to cancel",
    act(`cancel task ${id}`, () => api(`/api/v1/tasks/${id}/cancel`, {method: "POST"}), () => `task ${id} cancelled`),
    {id: "cancel-task", class: "danger"});
  const priority = h("input", {type: "number", id: "bump-priority", step: "1", min: "-100", max: "100", "aria-label": "new priority"});
  let typed = false;
  for (const event of ["focus", "input"]) priority.addEventListener(event, () => {
    typed = true; // the user is at it: a refresh leaves the value alone
  });
  const bump = h("span", {class: "inline-form"}, h("label", {for: "bump-priority"}, "priority"), priority,
    h("button", {type: "button", id: "bump-task", onclick: () => {
      const value = Number(priority.value);
      if (priority.value === "" || !Number.isInteger(value)) return say("the priority must be a whole number", "error");
      typed = false;
      return act(`bump task ${id}`, () => api(`/api/v1/tasks/${id}/bump`, {method: "POST", body: {priority: value}}),
        () => `task ${id} now has priority ${value}`)();
    }}, "Bump"));
  const replay = h("button", {type: "button", id: "replay-task", class: "primary",
    onclick: act(`replay task ${id}`, () => api("/api/v1/dlq/replay", {method: "POST", body: {ids: [id]}}), () => `task ${id} replayed: pending again`)},
    "Replay");
  const bar = h("div", {class: "actions"});
  return {
    /** The buttons `task`'s state and the user's roles allow, in the one bar. */
    bar(task) {
      const change = mayChange(app, task);
      if (!typed) priority.value = String(Math.min(100, task.priority + 10));
      const wanted = [
        ["pending", "blocked", "running"].includes(task.state) && change ? cancel : null,
        (task.state === "pending" || task.state === "blocked") && change ? bump : null,
        task.state === "failed" && app.me.may.operate ? replay : null,
      ].filter(Boolean);
      // Re-inserting the same buttons would take the focus (and a selection) from the priority field.
      const shown = [...bar.children];
      if (wanted.length !== shown.length || wanted.some((el, i) => el !== shown[i])) fill(bar, wanted);
      return bar;
    },
  };
}

/** One task: `#/tasks/ID`. */
export async function mountDetail(main, id, app) {
  const body = h("div", {id: "task-detail"});
  fill(main, h("p", {class: "crumbs"}, h("a", {href: "#/tasks"}, "Tasks"), " / ", `task ${id}`), body);
  // The title row stays in place across refreshes (its heading and badge are swapped, the rest after
  // it redrawn), so the buttons in it are never taken out of the page while someone types.
  const title = h("div", {class: "title-row"});
  let heading = null, state = null;
  let output = null;
  const buttons = controls(id, app, () => load());
  async function load() {
    let task;
    try {
      task = await api(`/api/v1/tasks/${id}`);
    } catch (error) {
      report(error, `task ${id}`);
      if (!body.firstChild) fill(body, h("p", {class: "muted"}, `task ${id} could not be read`));
      return;
    }
    const waiting = task.waiting ? h("div", {class: "waiting", id: "task-waiting"},
      h("strong", {}, "Why it waits: "), task.waiting, task.waiting_detail ? h("div", {class: "muted"}, pretty(task.waiting_detail)) : null) : null;
    const deps = (task.depends_on || []).map((d) => h("a", {href: `#/tasks/${d}`}, `#${d}`));
    const outcome = [
      task.error ? [h("h2", {}, "Error"), h("pre", {class: "error-text", id: "task-error"}, pretty(task.error))] : null,
      task.result !== null && task.result !== undefined ? [h("h2", {}, "Result"), h("pre", {id: "task-result"}, pretty(task.result))] : null,
    ].filter(Boolean);
    const nextHeading = h("h1", {}, `#${task.id} `, h("span", {class: "task-title"}, task.name)), nextState = badge(task.state);
    if (heading === null) {
      fill(body, fill(title, nextHeading, nextState, buttons.bar(task)));
    } else {
      heading.replaceWith(nextHeading);
      state.replaceWith(nextState);
      buttons.bar(task);
    }
    heading = nextHeading;
    state = nextState;
    while (title.nextSibling) title.nextSibling.remove();
    extend(body,
      waiting,
      outcome.length ? h("section", {class: "panel"}, outcome) : null,
      h("section", {class: "panel"}, h("h2", {}, "Attempts"), attempts(task.history)),
      h("section", {class: "panel"}, h("h2", {}, "Task"), h("dl", {class: "fields"},
        field("queue", h("a", {href: `#/tasks?queue=${encodeURIComponent(task.queue)}`}, task.queue)),
        field("tenant", task.tenant), field("backend", task.backend), field("target", h("code", {}, task.target)),
        field("priority", String(task.priority)), field("attempts", `${task.attempts} of ${task.max_retries + 1}`),
        field("timeout", task.timeout === null ? null : duration(task.timeout)),
        field("run at", time(task.run_at)), field("created", time(task.created_at)),
        field("started", time(task.started_at)), field("finished", time(task.finished_at)),
        field("submitted by", task.submitted_by), field("depends on", deps.length ? deps.flatMap((d, i) => (i ? [", ", d] : [d])) : null),
        field("DAG", task.dag_id === null ? null : h("a", {href: `#/dags/${task.dag_id}`}, `DAG ${task.dag_id}`)),
        field("run", String(task.run)), field("restarted from", task.restarted_from === null ? null : h("a", {href: `#/tasks/${task.restarted_from}`}, `#${task.restarted_from}`)),
        field("idempotency key", task.idempotency_key), field("expires", time(task.expires_at)),
        field("encrypted", task.encrypted ? "yes" : "no"))),
      h("div", {class: "grid-2"},
        h("section", {class: "panel"}, h("h2", {}, "Payload"), h("pre", {}, pretty(task.payload))),
        h("section", {class: "panel"}, h("h2", {}, "Output"), output || (output = outputBox(task.id)))),
      (task.replays || []).length ? h("section", {class: "panel"}, h("h2", {}, "Replays"), h("pre", {}, pretty(task.replays))) : null);
  }
  await load();
  return {
    async refresh(topics) {
      if (topics.has(`task:${id}`)) await load();
    },
  };
}

function outputBox(id) {
  const box = h("div", {class: "output"});
  const show = h("button", {type: "button", id: "show-output", onclick: async () => {
    try {
      const logs = await api(`/api/v1/tasks/${id}/logs`, {query: {tail: 200}});
      const text = logs.output || "";
      fill(box, h("p", {class: "muted"}, `attempt ${logs.attempt}${logs.dropped_bytes ? `, ${logs.dropped_bytes} bytes dropped before` : ""}${logs.running ? ", still running" : ""}`),
        text ? h("pre", {class: "log"}, text) : h("p", {class: "muted"}, "no output"));
    } catch (error) {
      report(error, `output of task ${id}`);
    }
  }}, "Show output");
  box.append(show);
  return box;
}
