// Schedules, circuit breakers, and the audit chain (its state and newest entries).

import {api, report} from "./api.js";
import {h, fill, badge, time, relative, table, duration} from "./dom.js";

/** The schedules page: `#/schedules`. */
export async function mountSchedules(main, params, app) {
  const list = h("div", {id: "schedule-list"});
  fill(main, h("h1", {}, "Schedules"), list);
  async function load() {
    try {
      const schedules = await api("/api/v1/schedules");
      fill(list, table([
        {label: "name", cell: (s) => h("strong", {}, s.name)},
        {label: "cron", cell: (s) => h("code", {}, s.cron)},
        {label: "zone", cell: (s) => s.tz},
        {label: "state", cell: (s) => badge(s.paused ? "paused" : "active")},
        {label: "next fire", cell: (s) => s.paused ? h("span", {class: "muted"}, "paused") : nextFires(s)},
        {label: "last fire", cell: (s) => time(s.last_fire)},
        {label: "runs", cell: (s) => h("code", {}, s.target || "")},
        {label: "queue", cell: (s) => s.queue || ""},
      ], schedules, {empty: "no schedule: add one with tqcli schedule add", rowAttrs: (s) => ({"data-schedule": s.name})}));
    } catch (error) {
      report(error, "schedules");
    }
  }
  await load();
  return {async refresh(topics) {
    if (topics.has("schedules")) await load();
  }};
}

/** A fire time with how far off it is; one already past is due (a worker's next run enqueues it). */
export function fireTime(iso) {
  const due = new Date(iso).getTime() <= Date.now();
  return h("span", {}, time(iso), " ", due
    ? h("span", {class: "due", title: "every worker run enqueues the fire times that fell due"}, `due ${relative(iso)}: waits for a worker`)
    : h("span", {class: "muted"}, relative(iso)));
}

function nextFires(s) {
  const fires = Array.isArray(s.next_fires) && s.next_fires.length ? s.next_fires : s.next ? [s.next] : [];
  if (!fires.length) return h("span", {class: "muted"}, "none");
  return h("span", {}, fireTime(fires[0]),
    fires.length > 1 ? h("div", {class: "muted small"}, "then ", fires.slice(1, 4).flatMap((f, i) => (i ? [", ", time(f)] : [time(f)]))) : null);
}

/** The breakers page: `#/breakers`. */
export async function mountBreakers(main, params, app) {
  const list = h("div", {id: "breaker-list"});
  fill(main, h("h1", {}, "Circuit breakers"),
    h("p", {class: "muted"}, "One circuit per service key: after its failure threshold of consecutive failed attempts it opens, and its tasks wait until the recovery timeout admits a trial."),
    list);
  async function load() {
    try {
      const breakers = await api("/api/v1/breakers");
      fill(list, table([
        {label: "service key", cell: (b) => h("code", {}, b.key)},
        {label: "state", cell: (b) => badge(b.state)},
        {label: "failures", class: "num", cell: (b) => `${b.failures}${b.failure_threshold ? ` / ${b.failure_threshold}` : ""}`},
        {label: "recovery", class: "num", cell: (b) => b.recovery_timeout ? duration(b.recovery_timeout) : ""},
        {label: "opened", cell: (b) => time(b.opened_at)},
        {label: "trial at", cell: (b) => b.retry_at ? h("span", {}, time(b.retry_at), " ", h("span", {class: "muted"}, relative(b.retry_at))) : time(null)},
      ], breakers, {empty: "no circuit has failures or settings yet", rowAttrs: (b) => ({"data-breaker": b.key})}));
    } catch (error) {
      report(error, "breakers");
    }
  }
  await load();
  return {async refresh(topics) {
    if (topics.has("breakers")) await load();
  }};
}

/** The audit chain's state (`GET /api/v1/audit/verify`), with a button to verify it again. */
export function chainPanel(app) {
  const element = h("div", {class: "chain", id: "audit-chain"});
  async function load() {
    fill(element, h("p", {class: "muted"}, "verifying the chain…"));
    try {
      const doc = await api("/api/v1/audit/verify");
      fill(element,
        doc.intact
          ? h("p", {class: "chain-ok", "data-intact": "true"}, "✔ intact: ", `${doc.entries} entries`)
          : h("p", {class: "chain-bad", "data-intact": "false"}, "✘ broken", doc.bad_seq !== null ? ` at entry ${doc.bad_seq}` : "", doc.kind ? ` (${doc.kind})` : ""),
        doc.problem ? h("p", {class: "error-text"}, doc.problem) : null,
        h("p", {class: "muted small"}, doc.head_hash ? `head ${doc.head_seq}: ${doc.head_hash.slice(0, 16)}…` : "empty chain",
          doc.checkpoint_seq ? ` · checkpoint at ${doc.checkpoint_seq}${doc.checkpoint_signed_by ? ` signed by ${doc.checkpoint_signed_by}` : ""}` : ""),
        h("p", {class: "muted small"}, `verified ${new Date().toLocaleTimeString()} `,
          h("button", {type: "button", class: "small", id: "verify-again", onclick: load}, "verify again")));
    } catch (error) {
      fill(element, h("p", {class: "muted"}, "the chain could not be verified"));
      report(error, "audit verify");
    }
  }
  return {element, load};
}

/** The audit page: `#/audit`: the chain's state and, for roles that may read it, the newest entries. */
export async function mountAudit(main, params, app) {
  const chain = chainPanel(app);
  const entries = h("div", {id: "audit-entries"});
  fill(main, h("h1", {}, "Audit"), h("section", {class: "panel"}, h("h2", {}, "Chain"), chain.element),
    h("section", {class: "panel"}, h("h2", {}, "Newest entries"), entries));
  async function load() {
    if (!app.me.may.audit) {
      fill(entries, h("p", {class: "muted"}, "Reading the audit log needs the auditor or admin role."));
      return;
    }
    try {
      const list = await api("/api/v1/audit", {query: {limit: 100}});
      const newest = [...list].sort((a, b) => b.seq - a.seq);
      fill(entries, table([
        {label: "seq", class: "num", cell: (e) => String(e.seq)},
        {label: "time", cell: (e) => time(e.ts)},
        {label: "actor", cell: (e) => e.actor},
        {label: "action", cell: (e) => h("code", {}, e.action)},
        {label: "task", class: "num", cell: (e) => e.task_id === null ? "" : h("a", {href: `#/tasks/${e.task_id}`}, String(e.task_id))},
        {label: "tenant", cell: (e) => e.tenant || ""},
        {label: "details", cell: (e) => h("span", {class: "clip muted", title: JSON.stringify(e.details)}, e.details ? JSON.stringify(e.details) : "")},
      ], newest, {empty: "no entry"}));
    } catch (error) {
      report(error, "audit log");
    }
  }
  await Promise.all([chain.load(), load()]);
  return {async refresh(topics) {
    if (topics.has("audit")) await load();
  }};
}
