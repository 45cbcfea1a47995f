// Small DOM helpers: elements are built with text nodes only (never innerHTML),
// so a task name or an error message can never become markup.

/** An element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "value" && !svg) el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Add `children` after what `el` holds. */
export function extend(el, ...children) {
  append(el, children);
  return el;
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An ISO time as "2026-12-02 19:33:43" in the browser's zone, with the UTC value as its tooltip. */
export function time(iso) {
  if (!iso) return h("span", {class: "muted"}, "–");
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const text = `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
    `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  return h("time", {datetime: iso, title: iso}, text);
}

/** "in 3h 4m" / "5m 2s ago" from now to an ISO time. */
export function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const text = duration(Math.abs(seconds));
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** A number of seconds as "1h 2m", "3m 4s", "5.2 s", "12 ms". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const s = Math.round(seconds);
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

/** Seconds between two ISO times (null when either is missing). */
export function between(start, end) {
  if (!start || !end) return null;
  return (new Date(end).getTime() - new Date(start).getTime()) / 1000;
}

/** A coloured badge for a task, DAG or breaker state. */
export function badge(state) {
  return h("span", {class: `badge state-${String(state).replace(/[^a-z-]/g, "")}`}, state);
}

/** JSON text for a <pre>, two-space indented. */
export function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/** A table: columns [{label, cell: row => node, class}], rows; `empty` shown when there are none. */
export function table(columns, rows, {empty = "nothing here", rowAttrs} = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", {class: c.class}, c.label))));
  const body = h("tbody", {}, rows.length === 0
    ? h("tr", {class: "empty"}, h("td", {colspan: columns.length}, empty))
    : rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", {class: c.class}, c.cell(row))))));
  return h("div", {class: "table-wrap"}, h("table", {}, head, body));
}

export const STATES = ["pending", "running", "blocked", "completed", "failed", "cancelled"];
