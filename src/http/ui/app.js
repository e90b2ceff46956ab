// The page's life: log in, route by the URL's hash, poll the API every
// few seconds and redraw the page shown.
"use strict";

const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);
let pollTimer = null;

/** Overview: totals and two live charts (rates, queued messages). */
const overviewState = {
  rates: new Rates(),
  rateChart: new LineChart("Message rates (/s)", [
    { key: "publish", label: "Publish", color: "#e6550d" },
    { key: "deliver_get", label: "Deliver / get", color: "#3182bd" },
    { key: "ack", label: "Ack", color: "#31a354" },
  ], 60, "chart-rates"),
  depthChart: new LineChart("Queued messages", [
    { key: "messages_ready", label: "Ready", color: "#756bb1" },
    { key: "messages_unacknowledged", label: "Unacked", color: "#d62728" },
  ], 60, "chart-depth"),
};

/** One reading of /api/overview into the charts (taken on every poll,
 *  whichever page is shown, so the charts have no gaps). */
async function sampleOverview() {
  const o = await Api.get("/api/overview");
  const s = overviewState;
  const rates = s.rates.of("all", o.message_stats, Date.now());
  if (rates) s.rateChart.push(rates);
  s.depthChart.push(o.queue_totals);
  return o;
}

async function overviewView(root) {
  const o = await sampleOverview();
  const s = overviewState;
  const total = (label, v, id) => el("div", { class: "total" }, label, el("b", { id }, fmtNum(v)));
  const t = o.object_totals, q = o.queue_totals;
  fill(root, el("h2", {}, "Overview"),
    el("p", {}, o.product_name + " " + o.product_version + " on " + o.node + ", " + o.shards + " shards"),
    el("div", { class: "totals" },
      total("Ready", q.messages_ready, "total-ready"), total("Unacked", q.messages_unacknowledged),
      total("Queues", t.queues, "total-queues"), total("Connections", t.connections),
      total("Channels", t.channels), total("Consumers", t.consumers), total("Exchanges", t.exchanges)),
    el("div", { class: "charts" }, s.rateChart.node, s.depthChart.node));
}

/** Definitions: export (a download) and import (an upload). */
function adminView(root) {
  if (!Api.isAdmin()) {
    fill(root, el("p", {}, "Definitions need the administrator tag."));
    return;
  }
  if (root.dataset.page === "admin") return; // nothing here polls
  const download = el("button", { type: "button", id: "defs-download" }, "Download broker definitions");
  download.addEventListener("click", () => act(async () => {
    const defs = await Api.get("/api/definitions");
    const blob = new Blob([JSON.stringify(defs, null, 2)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "ringmq-definitions.json" });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, null));
  const file = el("input", { type: "file", id: "defs-file", accept: "application/json,.json" });
  const upload = el("button", { type: "button", id: "defs-upload" }, "Upload definitions");
  upload.addEventListener("click", () => act(async () => {
    const f = file.files[0];
    if (!f) throw new Error("choose a definitions file first");
    const text = await f.text();
    JSON.parse(text); // a file that is not JSON is refused here, before it is sent
    await Api.call("POST", "/api/definitions", text);
  }, "definitions imported"));
  fill(root, el("h2", {}, "Definitions"),
    el("div", { class: "card" }, el("h3", {}, "Export"),
      el("p", {}, "Users, virtual hosts, permissions, queues, exchanges, bindings and policies, " +
        "in RabbitMQ's definitions format (GET /api/definitions)."), download),
    el("div", { class: "card" }, el("h3", {}, "Import"),
      el("p", {}, "Adds the definitions of a file to the broker (POST /api/definitions)."), file, " ", upload));
}

/** Runs an action from a button: its error or `done` in the status line,
 *  then the page is drawn again. */
async function act(action, done) {
  try {
    await action();
    showStatus(done || "", false);
  } catch (e) {
    showStatus(e.message, true);
  }
  refresh();
}

function showStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "error" : "ok";
}

/** The page the hash names: [view, args]. */
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => {
    try { return decodeURIComponent(p); } catch (_) { return ""; }
  });
  switch (parts[0]) {
    case "queues": return ["queues", (r) => queuesView(r)];
    case "queue": return ["queue", (r) => queueView(r, parts[1] || "/", parts.slice(2).join("/"))];
    case "exchanges": return ["exchanges", (r) => exchangesView(r)];
    case "bindings": return ["bindings", (r) => bindingsView(r)];
    case "connections": return ["connections", (r) => connectionsView(r)];
    case "channels": return ["channels", (r) => channelsView(r)];
    case "admin": return ["admin", (r) => adminView(r)];
    default: return ["overview", (r) => overviewView(r)];
  }
}

let drawing = false;
let again = false;

/** Draws the current page from fresh API answers (once more after the
 *  drawing in progress, if one is). */
async function refresh() {
  if (!Api.me) return;
  if (drawing) { again = true; return; }
  drawing = true;
  const [name, draw] = route();
  const root = $("view");
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === name || (name === "queue" && a.dataset.view === "queues"));
  }
  try {
    if (name !== "overview") sampleOverview().catch(() => {});
    await draw(root);
    root.dataset.page = name;
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.status === 401) { logout("Your login is no longer valid."); return; }
    showStatus(e.message, true);
  } finally {
    drawing = false;
  }
  if (again) { again = false; refresh(); }
}

function showLoggedIn() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = Api.me.name;
  $("who-tags").textContent = (Api.me.tags || []).join(", ") || "no tags";
  $("nav-admin").hidden = !Api.isAdmin();
  $("view").dataset.page = "";
  refresh();
  clearInterval(pollTimer);
  pollTimer = setInterval(refresh, POLL_MS);
}

function logout(why) {
  Api.forget();
  clearInterval(pollTimer);
  fill($("view"));
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  showStatus("", false);
}

async function start() {
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await Api.login($("login-user").value, $("login-password").value);
      $("login-password").value = "";
      showLoggedIn();
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? "Wrong user name or password." : e.message;
    }
  });
  $("logout").addEventListener("click", () => logout(""));
  window.addEventListener("hashchange", () => { showStatus("", false); $("view").dataset.page = ""; refresh(); });
  try {
    if (await Api.resume()) { showLoggedIn(); return; }
  } catch (_) {
    Api.forget();
  }
  logout("");
}

document.addEventListener("DOMContentLoaded", start);
