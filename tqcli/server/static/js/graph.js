// A DAG drawn as a layered graph (dagre, vendored, lays it out; we draw SVG).

/* global dagre */

import {h} from "./dom.js";

export const GRAPH_LIMIT = 300; // more nodes than this are listed instead: a graph that large is unreadable

const NODE_HEIGHT = 46;

function label(name) {
  return name.length > 28 ? name.slice(0, 27) + "…" : name;
}

/** An SVG of `dag` (`GET /api/v1/dags/{id}`: tasks by name, each with `depends_on` ids); nodes link to the task. */
export function dagGraph(dag) {
  if (typeof dagre !== "object") return h("p", {class: "muted"}, "the graph library did not load (static/vendor/dagre.min.js)");
  const tasks = Object.entries(dag.tasks || {});
  const g = new dagre.graphlib.Graph();
  g.setGraph({rankdir: "LR", nodesep: 16, ranksep: 56, marginx: 12, marginy: 12});
  g.setDefaultEdgeLabel(() => ({}));
  const byId = new Map();
  for (const [name, task] of tasks) {
    byId.set(task.id, name);
    const width = Math.min(230, Math.max(120, label(name).length * 7.4 + 28));
    g.setNode(name, {width, height: NODE_HEIGHT, task});
  }
  for (const [name, task] of tasks) {
    for (const dep of task.depends_on || []) if (byId.has(dep)) g.setEdge(byId.get(dep), name);
  }
  dagre.layout(g);
  const {width, height} = g.graph();
  const svg = h("svg:svg", {
    class: "dag-graph", width: Math.ceil(width), height: Math.ceil(height),
    viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`, role: "img", "aria-label": `graph of DAG ${dag.id}`,
  });
  svg.append(h("svg:defs", {}, h("svg:marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, h("svg:path", {d: "M 0 0 L 10 5 L 0 10 z", class: "edge-head"}))));
  for (const e of g.edges()) {
    const points = g.edge(e).points;
    const d = points.map((p, i) => `${i ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
    svg.append(h("svg:path", {d, class: "edge", "marker-end": "url(#arrow)"}));
  }
  for (const name of g.nodes()) {
    const node = g.node(name);
    const task = node.task;
    const x = node.x - node.width / 2, y = node.y - node.height / 2;
    svg.append(h("svg:a", {href: `#/tasks/${task.id}`, class: "dag-node", "data-task": task.id, "data-state": task.state},
      h("svg:title", {}, `${name} (task ${task.id}): ${task.state}`),
      h("svg:rect", {x, y, width: node.width, height: node.height, rx: 7, class: `node state-${task.state}`}),
      h("svg:text", {x: node.x, y: node.y - 4, class: "node-name", "text-anchor": "middle"}, label(name)),
      h("svg:text", {x: node.x, y: node.y + 13, class: "node-sub", "text-anchor": "middle"}, `${task.state} · #${task.id}`)));
  }
  return h("div", {class: "graph-wrap"}, svg);
}
