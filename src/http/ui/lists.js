// The list pages: a sortable, filterable table each, rebuilt from the API
// on every poll (sort and filter are kept per page).
"use strict";

/** A table's sort and filter, kept across polls. */
class TableState {
  constructor(key, desc) { this.key = key; this.desc = !!desc; this.filter = ""; }
}

const tableStates = {};
function stateOf(page, key) {
  if (!tableStates[page]) tableStates[page] = new TableState(key);
  return tableStates[page];
}

/** Renders `rows` as a table. `cols`: [{key, label, num, value(row),
 *  cell(row) -> node or text}]; `state`: the page's TableState;
 *  `redraw`: called after a header click changes the sort. */
function table(cols, rows, state, redraw) {
  const col = cols.find((c) => c.key === state.key) || cols[0];
  const val = (c, r) => (c.value ? c.value(r) : r[c.key]);
  const sorted = rows.slice().sort((a, b) => {
    const x = val(col, a), y = val(col, b);
    const o = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
    return state.desc ? -o : o;
  });
  const head = el("tr", {}, cols.map((c) => {
    const cls = [c.num ? "num" : "", c.key === col.key ? (state.desc ? "sorted-desc" : "sorted-asc") : ""].join(" ");
    return el("th", {
      class: cls, dataset: { key: c.key },
      onclick: () => {
        if (state.key === c.key) state.desc = !state.desc; else { state.key = c.key; state.desc = !!c.num; }
        redraw();
      },
    }, c.label);
  }));
  const body = sorted.map((r) => el("tr", {}, cols.map((c) => {
    const v = c.cell ? c.cell(r) : val(c, r);
    return el("td", { class: c.num ? "num" : "" }, c.num && typeof v === "number" ? fmtNum(v) : v);
  })));
  if (!body.length) body.push(el("tr", {}, el("td", { colSpan: cols.length }, "(none)")));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

/** A filter box bound to `state` (matches `text(row)`, case-blind). */
function filterBox(state, redraw) {
  const box = el("input", { type: "search", placeholder: "Filter", value: state.filter, id: "filter" });
  box.addEventListener("input", () => { state.filter = box.value; redraw(); });
  return el("label", {}, "Filter: ", box);
}

function filtered(rows, state, text) {
  const f = state.filter.trim().toLowerCase();
  return f ? rows.filter((r) => text(r).toLowerCase().includes(f)) : rows;
}

const queueRates = new Rates();

/** The queues page: depth, rates (from two polls), consumers. */
async function queuesView(root, redrawOnly) {
  const state = stateOf("queues", "name");
  if (!redrawOnly) {
    const now = Date.now();
    queuesView.rows = (await Api.get("/api/queues")).map((q) => {
      const ms = q.message_stats || {};
      const r = queueRates.of(q.vhost + "\u0000" + q.name, { publish: ms.publish, deliver: ms.deliver_get }, now);
      return Object.assign({}, q, { rate_in: r ? r.publish : null, rate_out: r ? r.deliver : null });
    });
  }
  const redraw = () => queuesView(root, true);
  const rows = filtered(queuesView.rows || [], state, (q) => q.vhost + " " + q.name);
  const link = (q) => el("a", { href: "#/queue/" + Api.seg(q.vhost) + "/" + Api.seg(q.name), class: "queue-link" }, q.name);
  const cols = [
    { key: "vhost", label: "Virtual host" },
    { key: "name", label: "Name", cell: link },
    { key: "durable", label: "Durable", cell: (q) => (q.durable ? "D" : "") },
    { key: "messages_ready", label: "Ready", num: true },
    { key: "messages_unacknowledged", label: "Unacked", num: true },
    { key: "messages", label: "Total", num: true },
    { key: "message_bytes_ready", label: "Bytes ready", num: true, cell: (q) => fmtBytes(q.message_bytes_ready) },
    { key: "rate_in", label: "Incoming", num: true, cell: (q) => fmtRate(q.rate_in) },
    { key: "rate_out", label: "Deliver / get", num: true, cell: (q) => fmtRate(q.rate_out) },
    { key: "consumers", label: "Consumers", num: true },
    { key: "node", label: "Shard" },
  ];
  keepFocus(root, () => fill(root, el("h2", {}, "Queues"),
    el("div", { class: "toolbar" }, filterBox(state, redraw), el("span", {}, rows.length + " shown")),
    table(cols, rows, state, redraw)));
}

/** Rebuilds a page without losing the caret in its filter box. */
function keepFocus(root, build) {
  const had = document.activeElement && document.activeElement.id === "filter";
  const pos = had ? document.activeElement.selectionStart : 0;
  build();
  if (had) {
    const f = root.querySelector("#filter");
    if (f) { f.focus(); f.setSelectionRange(pos, pos); }
  }
}

/** A simple list page: rows from `path`, columns, a filter over `text`. */
function listView(page, title, path, cols, text, firstKey) {
  const view = async (root, redrawOnly) => {
    const state = stateOf(page, firstKey);
    if (!redrawOnly) view.rows = await Api.get(path);
    const redraw = () => view(root, true);
    const rows = filtered(view.rows || [], state, text);
    keepFocus(root, () => fill(root, el("h2", {}, title),
      el("div", { class: "toolbar" }, filterBox(state, redraw), el("span", {}, rows.length + " shown")),
      table(typeof cols === "function" ? cols() : cols, rows, state, redraw)));
  };
  return view;
}

const yes = (k) => (r) => (r[k] ? "yes" : "");

const exchangesView = listView("exchanges", "Exchanges", "/api/exchanges", [
  { key: "vhost", label: "Virtual host" },
  { key: "name", label: "Name", cell: (x) => x.name || "(AMQP default)" },
  { key: "type", label: "Type" },
  { key: "durable", label: "Durable", cell: yes("durable") },
  { key: "auto_delete", label: "Auto-delete", cell: yes("auto_delete") },
  { key: "internal", label: "Internal", cell: yes("internal") },
  { key: "alternate_exchange", label: "Alternate exchange" },
], (x) => x.vhost + " " + x.name + " " + x.type, "name");

const bindingsView = listView("bindings", "Bindings", "/api/bindings", [
  { key: "vhost", label: "Virtual host" },
  { key: "source", label: "Source", cell: (b) => b.source || "(AMQP default)" },
  { key: "destination", label: "Destination" },
  { key: "destination_type", label: "Type" },
  { key: "routing_key", label: "Routing key" },
], (b) => [b.vhost, b.source, b.destination, b.routing_key].join(" "), "source");

/** Connections; an administrator may close one. */
const connectionsView = listView("connections", "Connections", "/api/connections", () => {
  const cols = [
    { key: "name", label: "Name" },
    { key: "protocol", label: "Protocol" },
    { key: "peer_host", label: "Client", cell: (c) => c.peer_host + ":" + c.peer_port },
    { key: "vhost", label: "Virtual host" },
    { key: "channels", label: "Channels", num: true },
    { key: "outbox_bytes", label: "Outbox", num: true, cell: (c) => fmtBytes(c.outbox_bytes) },
    { key: "node", label: "Shard" },
  ];
  if (Api.isAdmin()) {
    cols.push({ key: "close", label: "", cell: (c) => armedButton("Close", null, async () => {
      await act(() => Api.call("DELETE", "/api/connections/" + Api.seg(c.name)), "closed " + c.name);
    }) });
  }
  return cols;
}, (c) => [c.name, c.protocol, c.peer_host, c.vhost].join(" "), "name");

/** Channels (AMQP's; the native protocol has none): each with its
 *  connection, user, mode (C: confirms, T: transactional), prefetch,
 *  unacked and unconfirmed messages and consumers, from /api/channels. */
const channelsView = listView("channels", "Channels", "/api/channels", [
  { key: "name", label: "Channel" },
  { key: "connection", label: "Connection", value: (c) => c.connection_details.name },
  { key: "user", label: "User" },
  { key: "vhost", label: "Virtual host" },
  { key: "mode", label: "Mode", value: (c) => (c.confirm ? "C" : "") + (c.transactional ? "T" : "") },
  { key: "prefetch_count", label: "Prefetch", num: true },
  { key: "messages_unacknowledged", label: "Unacked", num: true },
  { key: "messages_unconfirmed", label: "Unconfirmed", num: true },
  { key: "consumer_count", label: "Consumers", num: true },
  { key: "state", label: "State", value: (c) => c.state + (c.flow ? "" : " (flow off)") },
  { key: "node", label: "Shard" },
], (c) => [c.name, c.user, c.vhost].join(" "), "name");
