// DAGs: the list, and one DAG drawn as a graph of its tasks (a list past GRAPH_LIMIT tasks).

import {api, report} from "./api.js";
import {h, fill, badge, time, table, STATES} from "./dom.js";
import {dagGraph, GRAPH_LIMIT} from "./graph.js";
import {taskTable} from "./tasks.js";

function progress(counts) {
  const total = STATES.reduce((n, s) => n + Number(counts[s] || 0), 0) || 1;
  return h("span", {class: "progress", title: STATES.map((s) => `${counts[s] || 0} ${s}`).join(", ")},
    STATES.filter((s) => counts[s]).map((s) => h("span", {class: `bar state-${s}`, "data-width": Math.round((counts[s] / total) * 100)})));
}

// Widths are set through the CSSOM, which the page's Content-Security-Policy allows (a style attribute it would not).
function sizeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-width]")) bar.style.width = `${bar.dataset.width}%`;
}

/** The DAG list: `#/dags`. */
export async function mountList(main, params, app) {
  const list = h("div", {id: "dag-list"});
  fill(main, h("h1", {}, "DAGs"), list);
  async function load() {
    try {
      const dags = await api("/api/v1/dags");
      fill(list, table([
        {label: "id", class: "num", cell: (d) => h("a", {href: `#/dags/${d.id}`}, String(d.id))},
        {label: "name", cell: (d) => h("a", {href: `#/dags/${d.id}`}, d.name)},
        {label: "state", cell: (d) => badge(d.state)},
        {label: "tasks", cell: (d) => progress(d.counts || {})},
        {label: "created", cell: (d) => time(d.created_at)},
        {label: "by", cell: (d) => d.submitted_by},
      ], dags, {empty: "no DAG yet: run one with tqcli dag run FILE", rowAttrs: (d) => ({"data-dag": d.id})}));
      sizeBars(list);
    } catch (error) {
      report(error, "dags");
    }
  }
  await load();
  return {async refresh(topics) {
    if (topics.has("dags")) await load();
  }};
}

/** One DAG: `#/dags/ID`. */
export async function mountDetail(main, id, app) {
  const body = h("div", {id: "dag-detail"});
  fill(main, h("p", {class: "crumbs"}, h("a", {href: "#/dags"}, "DAGs"), " / ", `DAG ${id}`), body);
  let ids = new Set();
  async function load() {
    let dag;
    try {
      dag = await api(`/api/v1/dags/${id}`);
    } catch (error) {
      report(error, `DAG ${id}`);
      return;
    }
    const tasks = Object.values(dag.tasks || {});
    ids = new Set(tasks.map((t) => t.id));
    const counts = dag.counts || {};
    fill(body,
      h("div", {class: "title-row"}, h("h1", {}, `DAG ${dag.id} `, h("span", {class: "task-title"}, dag.name)), badge(dag.state)),
      h("p", {class: "muted"}, STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(" · "),
        ` — submitted by ${dag.submitted_by} at `, time(dag.created_at)),
      h("div", {class: "legend"}, STATES.map((s) => h("span", {class: "legend-item"}, h("span", {class: `swatch state-${s}`}), s))),
      tasks.length <= GRAPH_LIMIT
        ? h("section", {class: "panel"}, dagGraph(dag))
        : h("p", {class: "muted", id: "dag-too-large"}, `${tasks.length} tasks: too many to draw (more than ${GRAPH_LIMIT}), listed instead`),
      h("section", {class: "panel"}, h("h2", {}, "Tasks"), taskTable(tasks.sort((a, b) => a.id - b.id))));
  }
  await load();
  return {async refresh(topics) {
    const touched = [...topics].filter((t) => t.startsWith("task:")).map((t) => Number(t.slice(5)));
    if (topics.has("dags") && (touched.length === 0 || touched.some((t) => ids.has(t)))) await load();
  }};
}
