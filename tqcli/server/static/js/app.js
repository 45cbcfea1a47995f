// The dashboard's shell: who is signed in, the navigation, the views by address (#/...), and live updates.

import {api, report, whenUnauthenticated} from "./api.js";
import {h, fill} from "./dom.js";
import {connect} from "./live.js";
import * as overview from "./overview.js";
import * as tasks from "./tasks.js";
import * as dlq from "./dlq.js";
import * as dags from "./dags.js";
import * as catalog from "./catalog.js";

const NAV = [
  ["", "Overview"], ["tasks", "Tasks"], ["dlq", "Dead letters"], ["dags", "DAGs"],
  ["schedules", "Schedules"], ["breakers", "Breakers"], ["audit", "Audit"],
];

const app = {
  me: null,
  view: null,
  source: null,
  navigate(hash) {
    if (window.location.hash === hash) route();
    else window.location.hash = hash;
  },
};

function parse() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  return {parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "")};
}

function mountFor(parts, params, main) {
  const [section, id] = parts;
  if (section === "tasks" && id) return tasks.mountDetail(main, Number(id), app);
  if (section === "tasks") return tasks.mountList(main, params, app);
  if (section === "dlq") return dlq.mount(main, params, app);
  if (section === "dags" && id) return dags.mountDetail(main, Number(id), app);
  if (section === "dags") return dags.mountList(main, params, app);
  if (section === "schedules") return catalog.mountSchedules(main, params, app);
  if (section === "breakers") return catalog.mountBreakers(main, params, app);
  if (section === "audit") return catalog.mountAudit(main, params, app);
  return overview.mount(main, params, app);
}

let routing = 0;

async function route() {
  if (!app.me) return;
  const {parts, params} = parse();
  const section = parts[0] || "";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.section === section);
  if (app.view && app.view.unmount) app.view.unmount();
  app.view = null;
  const turn = ++routing;
  const main = h("div", {class: "view", "data-view": section || "overview"});
  fill(document.getElementById("main"), main);
  try {
    const view = await mountFor(parts, params, main);
    if (turn !== routing) {
      if (view && view.unmount) view.unmount(); // the user moved on while it loaded
      return;
    }
    app.view = view;
    main.dataset.ready = "true"; // tests wait for this
  } catch (error) {
    report(error, "page");
  }
}

function showUser(me) {
  const roles = me.open ? "open database (no role granted)" : me.roles.length
    ? me.roles.map((r) => (r.tenant ? `${r.role} of ${r.tenant}` : r.role)).join(", ") : "no role";
  fill(document.getElementById("who"), h("span", {class: "user", id: "user-name"}, me.user), h("span", {class: "roles"}, roles));
}

function setLive(state) {
  const live = document.getElementById("live");
  live.dataset.state = state;
  live.textContent = {live: "live", reconnecting: "reconnecting…", closed: "not live", connecting: "connecting…"}[state] || state;
  live.title = state === "live" ? "updates arrive as the audit log grows" : "the page does not update by itself now";
}

function startLive() {
  setLive("connecting");
  app.source = connect({
    onTopics: async (topics) => {
      if (app.view && app.view.refresh) {
        try {
          await app.view.refresh(topics);
        } catch (error) {
          report(error, "refresh");
        }
      }
    },
    onState: setLive,
    onClosed: () => setTimeout(reconnect, 5000),
  });
}

// The stream ended for good (the server restarted or stopped, or the session ended): find out which, and go on.
async function reconnect() {
  try {
    app.me = await api("/api/v1/me");
  } catch (error) {
    if (error.status === 401) return; // showLogin has said how to sign in again
    setLive("closed");
    setTimeout(reconnect, 5000);
    return;
  }
  startLive();
  await route(); // what happened while the stream was down is read afresh
}

function showLogin(error) {
  app.me = null;
  if (app.source) app.source.close();
  setLive("closed");
  fill(document.getElementById("who"));
  document.getElementById("nav").hidden = true;
  fill(document.getElementById("main"), h("section", {class: "notice", id: "login-needed"},
    h("h1", {}, "Not signed in"),
    h("p", {}, "Open the login URL that ", h("code", {}, "tqcli serve"), " printed on its terminal (",
      h("code", {}, `${window.location.origin}/?token=…`), "). It sets a session cookie and brings you back here."),
    h("p", {class: "muted"}, "With a token of your own (", h("code", {}, "tqcli token create USER"), "), open ",
      h("code", {}, "/?token=TOKEN"), "."),
    error && error.message ? h("p", {class: "muted small"}, `The server said: ${error.message}`) : null));
}

async function start() {
  whenUnauthenticated(showLogin);
  fill(document.getElementById("nav"), NAV.map(([section, text]) =>
    h("a", {href: `#/${section}`, "data-section": section}, text)));
  try {
    app.me = await api("/api/v1/me");
  } catch (error) {
    if (error.status !== 401) {
      report(error, "who am I");
      showLogin(error);
    }
    return;
  }
  document.getElementById("nav").hidden = false;
  showUser(app.me);
  window.addEventListener("hashchange", route);
  startLive();
  await route();
}

start();
