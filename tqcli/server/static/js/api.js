// The JSON API, and the message line where every failure is shown.

import {h, fill} from "./dom.js";

/** A request the API refused: its HTTP status, the server's message and the CLI exit code it stands for. */
export class ApiError extends Error {
  constructor(status, message, exitCode) {
    super(message);
    this.status = status;
    this.exitCode = exitCode;
  }
}

let onUnauthenticated = () => {};

/** What to do when a request answers 401 (the session ended: show how to log in again). */
export function whenUnauthenticated(handler) {
  onUnauthenticated = handler;
}

/** Call the API: GET unless `method` says otherwise; `query` an object of parameters (empty ones left out). */
export async function api(path, {method = "GET", body, query} = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  const headers = {Accept: "application/json"};
  if (method !== "GET") headers["X-Tqcli-Request"] = "1"; // the server refuses cookie changes without it (CSRF)
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `the server did not answer (${error.message}): is tqcli serve still running?`, null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, message, data ? data.exit_code : null);
    if (response.status === 401) onUnauthenticated(error);
    throw error;
  }
  return data;
}

let clearTimer = null;

/** Show `text` in the message line: kind "error" stays until dismissed, "ok" and "info" fade after a while. */
export function say(text, kind = "info") {
  const line = document.getElementById("message");
  clearTimeout(clearTimer);
  fill(line,
    h("span", {class: "message-text", "data-kind": kind}, text),
    h("button", {class: "message-close", type: "button", title: "dismiss", "aria-label": "dismiss", onclick: () => unsay()}, "×"));
  line.className = `message message-${kind}`;
  line.hidden = false;
  if (kind !== "error") clearTimer = setTimeout(unsay, 8000);
}

/** Clear the message line. */
export function unsay() {
  const line = document.getElementById("message");
  line.hidden = true;
  line.replaceChildren();
}

/** Show a failed request in the message line, prefixed with what was being done ("replay: ..."). */
export function report(error, doing) {
  if (error instanceof ApiError && error.status === 401) return; // the login notice says it
  const code = error instanceof ApiError && error.exitCode !== null && error.exitCode !== undefined ? ` (exit code ${error.exitCode})` : "";
  say(`${doing ? doing + ": " : ""}${error.message}${code}`, "error");
  if (!(error instanceof ApiError)) console.error(error);
}
