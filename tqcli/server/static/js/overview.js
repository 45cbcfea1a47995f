// Overview: counts per queue and state, throughput over time, and the state of breakers, schedules and the audit chain.

import {api, report} from "./api.js";
import {h, fill, badge, time, relative, table, STATES} from "./dom.js";
import {throughputChart, totals} from "./chart.js";
import {taskTable} from "./tasks.js";
import {chainPanel, fireTime} from "./catalog.js";

const RANGES = [[60, "last hour"], [360, "last 6 hours"], [1440, "last 24 hours"]];

function sum(counts) {
  return STATES.reduce((n, s) => n + Number(counts[s] || 0), 0);
}

function stateCards(counts) {
  return h("div", {class: "cards", id: "state-cards"}, STATES.map((state) =>
    h("a", {class: `card card-${state}`, href: `#/tasks?state=${state}`, "data-state": state},
      h("span", {class: "card-number"}, String(counts[state] || 0)),
      h("span", {class: "card-label"}, state))));
}

function queueTable(queues) {
  const names = Object.keys(queues).sort();
  return table([
    {label: "queue", cell: (q) => h("a", {href: `#/tasks?queue=${encodeURIComponent(q)}`}, q)},
    ...STATES.map((s) => ({label: s, class: "num", cell: (q) => {
      const n = Number(queues[q][s] || 0);
      return n ? h("a", {href: `#/tasks?queue=${encodeURIComponent(q)}&state=${s}`, class: `count count-${s}`}, String(n)) : h("span", {class: "muted"}, "0");
    }})),
    {label: "total", class: "num", cell: (q) => String(sum(queues[q]))},
  ], names, {empty: "no queue has tasks yet: submit one with tqcli submit", rowAttrs: (q) => ({"data-queue": q})});
}

/** The overview page. */
export async function mount(main, params, app) {
  let minutes = Number(params.get("minutes")) || 60;
  const cards = h("div");
  const queues = h("div", {id: "queue-counts"});
  const newest = h("div");
  const chartBox = h("div", {class: "chart", id: "throughput-chart"});
  const chartTotals = h("span", {class: "muted chart-totals"});
  const breakers = h("div");
  const schedules = h("div");
  const workers = h("div", {id: "workers"});
  const chain = chainPanel(app);
  const range = h("select", {id: "throughput-range", "aria-label": "time range", onchange: () => {
    minutes = Number(range.value);
    loadChart();
  }}, RANGES.map(([m, text]) => h("option", {value: m, selected: m === minutes}, text)));
  fill(main,
    h("h1", {}, "Overview"),
    cards,
    h("section", {class: "panel"},
      h("div", {class: "panel-head"}, h("h2", {}, "Finished per minute"), chartTotals, range), chartBox),
    h("div", {class: "grid-main"},
      h("section", {class: "panel"}, h("h2", {}, "Tasks per queue and state"), queues),
      h("div", {class: "stack"},
        h("section", {class: "panel"}, h("h2", {}, "Workers"), workers),
        h("section", {class: "panel"}, h("h2", {}, h("a", {href: "#/breakers"}, "Circuit breakers")), breakers),
        h("section", {class: "panel"}, h("h2", {}, h("a", {href: "#/schedules"}, "Next schedule fires")), schedules),
        h("section", {class: "panel"}, h("h2", {}, h("a", {href: "#/audit"}, "Audit chain")), chain.element))),
    h("section", {class: "panel"}, h("h2", {}, h("a", {href: "#/tasks"}, "Newest tasks")), newest));

  let chart = null;
  async function loadChart() {
    try {
      const doc = await api("/api/v1/throughput", {query: {minutes}});
      const t = totals(doc);
      chartTotals.textContent = `${t.completed} completed · ${t.failed} failed · ${t.cancelled} cancelled${doc.truncated ? " (partial: too many to count)" : ""}`;
      if (chart) chart.update(doc);
      else chart = throughputChart(chartBox, doc);
    } catch (error) {
      report(error, "throughput");
    }
  }
  async function loadTasks() {
    try {
      const doc = await api("/api/v1/tasks", {query: {limit: 10}});
      fill(cards, stateCards(doc.counts || {}));
      fill(queues, queueTable(doc.queues || {}));
      fill(newest, taskTable(doc.tasks || []));
    } catch (error) {
      report(error, "tasks");
    }
  }
  async function loadBreakers() {
    try {
      const list = await api("/api/v1/breakers");
      const notClosed = list.filter((b) => b.state !== "closed");
      fill(breakers, list.length === 0 ? h("p", {class: "muted"}, "no circuit has tripped or been configured")
        : notClosed.length === 0 ? h("p", {class: "ok-text"}, `all ${list.length} circuit(s) closed`)
          : h("ul", {class: "plain"}, notClosed.map((b) => h("li", {}, badge(b.state), " ", h("code", {}, b.key), ` ${b.failures} failure(s)`))));
    } catch (error) {
      report(error, "breakers");
    }
  }
  async function loadWorkers() {
    try {
      const alive = (await api("/api/v1/workers")).filter((w) => w.alive);
      fill(workers, alive.length === 0 ? h("p", {class: "muted"}, "no worker is alive: start one with tqcli worker")
        : h("ul", {class: "plain"}, alive.map((w) => h("li", {}, h("strong", {}, w.id), ` running ${w.running}`,
          h("span", {class: "muted"}, ` · heartbeat ${relative(w.heartbeat_at)}`)))));
    } catch (error) {
      report(error, "workers");
    }
  }
  async function loadSchedules() {
    try {
      const list = (await api("/api/v1/schedules")).filter((s) => !s.paused && s.next).sort((a, b) => a.next.localeCompare(b.next));
      fill(schedules, list.length === 0 ? h("p", {class: "muted"}, "no active schedule")
        : h("ul", {class: "plain"}, list.slice(0, 5).map((s) => h("li", {}, h("strong", {}, s.name), " ", fireTime(s.next)))));
    } catch (error) {
      report(error, "schedules");
    }
  }
  await Promise.all([loadTasks(), loadChart(), loadBreakers(), loadSchedules(), loadWorkers(), chain.load()]);
  const minute = setInterval(() => Promise.all([loadChart(), loadWorkers()]), 60_000); // the chart's window moves on even when nothing happens
  return {
    async refresh(topics) {
      const work = [];
      if (topics.has("tasks")) work.push(loadTasks(), loadWorkers());
      if (topics.has("throughput")) work.push(loadChart());
      if (topics.has("breakers")) work.push(loadBreakers());
      if (topics.has("schedules")) work.push(loadSchedules());
      await Promise.all(work);
    },
    unmount() {
      clearInterval(minute);
      if (chart) chart.destroy();
    },
  };
}
