// Throughput chart (uPlot, vendored): tasks finished per minute, by outcome.

/* global uPlot */

const SERIES = [
  {key: "completed", label: "completed", stroke: "#2b8a3e", fill: "rgba(43, 138, 62, 0.12)", width: 2},
  {key: "failed", label: "failed", stroke: "#e03131", fill: "rgba(224, 49, 49, 0.10)", width: 2},
  {key: "cancelled", label: "cancelled", stroke: "#868e96", width: 1.5, dash: [4, 4]},
];

function columns(doc) {
  const points = doc && Array.isArray(doc.series) ? doc.series : [];
  const xs = points.map((p) => Math.floor(new Date(p.at).getTime() / 1000));
  return [xs, ...SERIES.map((s) => points.map((p) => Number(p[s.key] || 0)))];
}

/** A chart in `container` of a `GET /api/v1/throughput` document; `.update(doc)` redraws it with new data. */
export function throughputChart(container, doc) {
  if (typeof uPlot !== "function") {
    container.textContent = "the chart library did not load (static/vendor/uPlot.iife.min.js)";
    return {update() {}, destroy() {}};
  }
  const width = () => Math.max(280, container.clientWidth || 600);
  const plot = new uPlot({
    width: width(),
    height: 220,
    scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.15))]}},
    axes: [
      {stroke: "#5c6370", grid: {stroke: "#eef0f3"}, ticks: {stroke: "#e3e6ea"}},
      {stroke: "#5c6370", grid: {stroke: "#eef0f3"}, ticks: {stroke: "#e3e6ea"}, size: 44,
        values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? t : ""))},
    ],
    series: [{label: "minute"}, ...SERIES.map((s) => ({
      label: s.label, stroke: s.stroke, fill: s.fill, width: s.width, dash: s.dash, points: {show: false},
    }))],
    cursor: {drag: {x: false, y: false}},
  }, columns(doc), container);
  const resize = new ResizeObserver(() => plot.setSize({width: width(), height: 220}));
  resize.observe(container);
  return {
    update(next) {
      plot.setData(columns(next));
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}

/** The totals of a throughput document: {completed, failed, cancelled}. */
export function totals(doc) {
  const sum = {completed: 0, failed: 0, cancelled: 0};
  for (const p of (doc && doc.series) || []) for (const key of Object.keys(sum)) sum[key] += Number(p[key] || 0);
  return sum;
}
