// The dead-letter queue: failed tasks, replayed one by one, as a selection, or all (after a dry-run preview).

import {api, report, say} from "./api.js";
import {h, fill, time, table} from "./dom.js";
import {confirmButton} from "./tasks.js";

// The ids in an answer of /dlq/replay: a list of tasks (or, should a dry run answer so, of ids).
function idsOf(answer) {
  return (Array.isArray(answer) ? answer : []).map((t) => (typeof t === "number" ? t : t.id));
}

/** The DLQ page: `#/dlq?queue=&tenant=`. */
export async function mount(main, params, app) {
  const filter = {queue: params.get("queue") || "", tenant: params.get("tenant") || ""};
  const selected = new Set();
  const operate = Boolean(app.me.may.operate);
  const list = h("div", {id: "dlq-list"});
  const toolbar = h("div", {class: "actions", id: "dlq-actions"});
  const preview = h("div", {id: "replay-preview"});
  fill(main,
    h("h1", {}, "Dead-letter queue"),
    h("p", {class: "muted"}, "Tasks that failed their last attempt. A replay resets their attempts and makes them pending again, keeping their ids."),
    filter.queue || filter.tenant ? h("p", {}, `only ${[filter.queue && `queue ${filter.queue}`, filter.tenant && `tenant ${filter.tenant}`].filter(Boolean).join(", ")} `,
      h("a", {href: "#/dlq"}, "show all")) : null,
    operate ? toolbar : h("p", {class: "muted", id: "dlq-readonly"}, "Replaying needs the operator or admin role."),
    preview, list);

  const scope = () => ({...(filter.queue ? {queue: filter.queue} : {}), ...(filter.tenant ? {tenant: filter.tenant} : {})});

  async function replay(body, what) {
    try {
      const tasks = await api("/api/v1/dlq/replay", {method: "POST", body});
      const ids = idsOf(tasks);
      say(ids.length ? `replayed ${ids.length} task(s): ${ids.join(", ")}; they are pending again` : "nothing to replay", "ok");
      for (const id of ids) selected.delete(id);
    } catch (error) {
      report(error, `replay ${what}`);
    }
    fill(preview);
    await load();
  }

  function drawToolbar(tasks) {
    if (!operate) return;
    const chosen = tasks.filter((t) => selected.has(t.id)).map((t) => t.id);
    fill(toolbar,
      h("button", {type: "button", id: "replay-selected", disabled: chosen.length === 0,
        onclick: () => replay({ids: chosen}, `task(s) ${chosen.join(", ")}`)}, `Replay selected (${chosen.length})`),
      h("button", {type: "button", id: "replay-all-preview", disabled: tasks.length === 0, onclick: async () => {
        try {
          const would = await api("/api/v1/dlq/replay", {method: "POST", body: {all: true, dry_run: true, ...scope()}});
          const ids = idsOf(would);
          fill(preview, h("div", {class: "preview panel"},
            h("p", {}, ids.length ? `A replay of all would make ${ids.length} task(s) pending again: ` : "A replay of all would replay nothing.",
              h("span", {class: "ids", id: "preview-ids"}, ids.join(", "))),
            ids.length ? confirmButton(`Replay all ${ids.length}`, `Click again to replay ${ids.length}`, () => replay({all: true, ...scope()}, "all"), {id: "replay-all", class: "primary"}) : null,
            h("button", {type: "button", onclick: () => fill(preview)}, "Close")));
        } catch (error) {
          report(error, "replay preview");
        }
      }}, "Replay all… (preview)"));
  }

  async function load() {
    let tasks;
    try {
      tasks = await api("/api/v1/dlq", {query: filter});
    } catch (error) {
      report(error, "dlq");
      return;
    }
    const columns = [
      {label: "id", class: "num", cell: (t) => h("a", {href: `#/tasks/${t.id}`}, String(t.id))},
      {label: "name", cell: (t) => h("a", {href: `#/tasks/${t.id}`}, t.name)},
      {label: "queue", cell: (t) => h("a", {href: `#/dlq?queue=${encodeURIComponent(t.queue)}`}, t.queue)},
      {label: "tenant", cell: (t) => t.tenant},
      {label: "attempts", class: "num", cell: (t) => String(t.attempts)},
      {label: "error", cell: (t) => h("span", {class: "error-text clip", title: t.error || ""}, t.error || "")},
      {label: "failed", cell: (t) => time(t.finished_at)},
    ];
    if (operate) {
      columns.unshift({label: "", cell: (t) => h("input", {type: "checkbox", class: "pick", "aria-label": `select task ${t.id}`, checked: selected.has(t.id),
        onchange: (e) => {
          if (e.target.checked) selected.add(t.id);
          else selected.delete(t.id);
          drawToolbar(tasks);
        }})});
      columns.push({label: "", cell: (t) => h("button", {type: "button", class: "replay-one small", "data-task": t.id,
        onclick: () => replay({ids: [t.id]}, `task ${t.id}`)}, "Replay")});
    }
    fill(list, table(columns, tasks, {empty: "the dead-letter queue is empty", rowAttrs: (t) => ({"data-task": t.id})}));
    drawToolbar(tasks);
  }
  await load();
  return {
    async refresh(topics) {
      if (topics.has("dlq")) await load();
    },
  };
}
