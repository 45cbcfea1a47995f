// Live updates: the server's event stream (one event per new audit entry),
// turned into "topics" the open view refreshes, at most every MAX_WAIT ms.

const QUIET = 250; // refresh this long after the last event...
const MAX_WAIT = 1500; // ...but no later than this after the first one of a burst

/** The topics one audit entry touches: "tasks", "task:ID", "dlq", "dags", "schedules", "breakers", "throughput", "catalog", "audit". */
export function topicsOf(entry) {
  const action = String(entry.action || "");
  const kind = action.split(".")[0];
  const topics = new Set(["audit"]);
  if (entry.task_id !== null && entry.task_id !== undefined) topics.add(`task:${entry.task_id}`);
  if (kind === "task" || kind === "dlq" || kind === "dag" || kind === "schedule") topics.add("tasks");
  if (kind === "task" || kind === "dlq") topics.add("dags"); // a DAG's graph shows its tasks' states
  if (action === "task.fail" || kind === "dlq") topics.add("dlq");
  if (action === "task.complete" || action === "task.fail" || action === "task.cancel" || action === "task.lost") topics.add("throughput");
  if (kind === "dag") topics.add("dags");
  if (kind === "schedule") topics.add("schedules");
  if (kind === "breaker") topics.add("breakers");
  if (action === "task.fail" || action === "task.complete") topics.add("breakers");
  if (kind === "queue" || kind === "tenant" || kind === "settings") topics.add("catalog");
  return topics;
}

/** Connect to /api/v1/events; `onTopics(set)` gets the debounced topics, `onState(text)` "live", "reconnecting" or "closed". */
export function connect({onTopics, onState, onClosed}) {
  let pending = new Set();
  let quiet = null;
  let deadline = null;
  const flush = () => {
    clearTimeout(quiet);
    clearTimeout(deadline);
    quiet = deadline = null;
    const topics = pending;
    pending = new Set();
    if (topics.size) onTopics(topics);
  };
  const source = new EventSource("/api/v1/events", {withCredentials: true});
  source.addEventListener("open", () => onState("live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      onState("closed");
      onClosed(source);
    } else {
      onState("reconnecting");
    }
  });
  source.addEventListener("audit", (event) => {
    let entry;
    try {
      entry = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const topic of topicsOf(entry)) pending.add(topic);
    clearTimeout(quiet);
    quiet = setTimeout(flush, QUIET);
    if (deadline === null) deadline = setTimeout(flush, MAX_WAIT);
  });
  return source;
}
