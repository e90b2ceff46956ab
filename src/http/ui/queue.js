// One queue's page: its figures, and (administrators) publish, get, purge
// and delete, with RabbitMQ's API calls.
"use strict";

/** Inputs of the publish and get forms, kept across polls. */
const queueForms = {};

/** The properties the publish form offers, with a hint each (RabbitMQ's
 *  form takes these as key=value rows). */
const PUBLISH_PROPS = [
  ["content_type", "e.g. text/plain"],
  ["correlation_id", ""],
  ["message_id", ""],
  ["reply_to", "a queue name"],
  ["priority", "0 to 255"],
  ["expiration", "milliseconds"],
  ["timestamp", "seconds since 1970"],
];
const NUMERIC_PROPS = ["priority", "timestamp"];

/** A header row: name, value and its type (as RabbitMQ's form). */
function headerRow() {
  return el("div", { class: "header-row" },
    el("input", { class: "header-name", placeholder: "Header name" }), " = ",
    el("input", { class: "header-value", placeholder: "Value" }), " ",
    el("select", { class: "header-type" },
      el("option", { value: "string" }, "String"),
      el("option", { value: "number" }, "Number"),
      el("option", { value: "boolean" }, "Boolean")));
}

/** The header rows' object; a row without a name is skipped. */
function headersOf(box) {
  const out = {};
  for (const r of box.querySelectorAll(".header-row")) {
    const name = r.querySelector(".header-name").value.trim();
    if (!name) continue;
    const raw = r.querySelector(".header-value").value;
    const type = r.querySelector(".header-type").value;
    if (type === "number") {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n)) throw new Error("header " + name + " is not a number");
      out[name] = n;
    } else if (type === "boolean") {
      if (raw !== "true" && raw !== "false") throw new Error("header " + name + " must be true or false");
      out[name] = raw === "true";
    } else {
      out[name] = raw;
    }
  }
  return out;
}

function queueForm(key) {
  if (!queueForms[key]) {
    queueForms[key] = {
      payload: el("textarea", { id: "publish-payload", placeholder: "Payload" }),
      deliveryMode: el("select", { id: "publish-delivery-mode" },
        el("option", { value: "1" }, "1 - Non-persistent"),
        el("option", { value: "2" }, "2 - Persistent")),
      headers: el("div", { id: "publish-headers", class: "kv" }),
      props: Object.fromEntries(PUBLISH_PROPS.map(([k, hint]) =>
        [k, el("input", { id: "publish-prop-" + k, placeholder: hint })])),
      count: el("input", { type: "number", id: "get-count", min: "1", max: "100", value: "1" }),
      ackmode: el("select", { id: "get-ackmode" },
        el("option", { value: "ack_requeue_true" }, "Nack, requeue (peek)"),
        el("option", { value: "reject_requeue_true" }, "Reject, requeue"),
        el("option", { value: "ack_requeue_false" }, "Ack (remove)"),
        el("option", { value: "reject_requeue_false" }, "Reject (remove, dead-letter)")),
      messages: el("div", { id: "get-messages" }),
    };
    queueForms[key].headers.appendChild(headerRow());
  }
  return queueForms[key];
}

async function queueView(root, vhost, name) {
  const path = Api.queuePath(vhost, name);
  let q;
  try {
    q = await Api.get(path);
  } catch (e) {
    if (e.status === 404) {
      fill(root, el("h2", {}, "Queue " + name), el("p", { class: "error" }, "No such queue (deleted?)."),
        el("a", { href: "#/queues" }, "All queues"));
      return;
    }
    throw e;
  }
  const figures = el("table", { class: "figures", id: "queue-figures" }, el("tbody", {},
    row("Virtual host", q.vhost), row("Shard", q.node), row("Durable", q.durable ? "yes" : "no"),
    row("Ready", fmtNum(q.messages_ready), "queue-ready"),
    row("Unacked", fmtNum(q.messages_unacknowledged), "queue-unacked"),
    row("Total", fmtNum(q.messages), "queue-total"),
    row("Bytes ready", fmtBytes(q.message_bytes_ready)),
    row("Consumers", fmtNum(q.consumers))));
  // While the user works in the page (a form, a button), only the figures
  // change: the cards (and the form's inputs, kept across polls) stay put.
  const here = vhost + "\u0000" + name;
  const focused = document.activeElement && root.contains(document.activeElement);
  const old = root.querySelector("#queue-figures");
  if (focused && old && root.dataset.queue === here) {
    old.replaceWith(figures);
    return;
  }
  const parts = [el("h2", {}, "Queue ", el("span", { id: "queue-name" }, q.name)), el("div", { class: "card" }, figures)];
  if (Api.isAdmin()) parts.push(publishCard(q), getCard(q), dangerCard(q));
  else parts.push(el("p", { class: "tags" }, "Publish, get, purge and delete need the administrator tag."));
  fill(root, parts);
  root.dataset.queue = here;
}

function row(label, value, id) {
  return el("tr", {}, el("th", {}, label), el("td", { id }, value));
}

/** Publishes through the default exchange, to this queue by name. */
function publishCard(q) {
  const f = queueForm(q.vhost + "\u0000" + q.name);
  const send = el("button", { type: "button", id: "publish" }, "Publish message");
  send.addEventListener("click", () => act(async () => {
    const properties = { delivery_mode: Number(f.deliveryMode.value) };
    for (const [k] of PUBLISH_PROPS) {
      const v = f.props[k].value.trim();
      if (!v) continue;
      if (NUMERIC_PROPS.includes(k) && !/^[0-9]+$/.test(v)) throw new Error(k + " must be a whole number");
      properties[k] = NUMERIC_PROPS.includes(k) ? Number(v) : v;
    }
    const headers = headersOf(f.headers);
    if (Object.keys(headers).length) properties.headers = headers;
    const body = { routing_key: q.name, payload: f.payload.value, payload_encoding: "string", properties };
    const r = await Api.call("POST", "/api/exchanges/" + Api.seg(q.vhost) + "/amq.default/publish", body);
    if (!r.routed) throw new Error("the message was not routed to a queue");
  }, "message published"));
  const more = el("button", { type: "button", id: "publish-add-header" }, "Add header");
  more.addEventListener("click", () => f.headers.appendChild(headerRow()));
  return el("div", { class: "card" }, el("h3", {}, "Publish message"),
    el("div", { class: "form" },
      el("span", {}, "Delivery mode"), f.deliveryMode,
      el("span", {}, "Headers"), el("div", {}, f.headers, more),
      PUBLISH_PROPS.flatMap(([k]) => [el("span", {}, k), f.props[k]]),
      el("span", {}, "Payload"), f.payload,
      el("span", {}), send));
}

/** Gets messages; by default a peek (they go back into the queue). */
function getCard(q) {
  const f = queueForm(q.vhost + "\u0000" + q.name);
  const go = el("button", { type: "button", id: "get" }, "Get messages");
  go.addEventListener("click", () => act(async () => {
    const body = { count: Number(f.count.value) || 1, ackmode: f.ackmode.value, encoding: "auto", truncate: 50000 };
    const got = await Api.call("POST", Api.queuePath(q.vhost, q.name) + "/get", body);
    fill(f.messages, got.length ? got.map(messageCard) : el("p", {}, "The queue is empty."));
  }, null));
  return el("div", { class: "card" }, el("h3", {}, "Get messages"),
    el("div", { class: "form" }, el("span", {}, "Messages"), f.count, el("span", {}, "Ack mode"), f.ackmode,
      el("span", {}), go), f.messages);
}

function messageCard(m, i) {
  const show = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v);
  const props = Object.entries(m.properties || {}).map(([k, v]) => k + ": " + show(v)).join(", ");
  return el("div", { class: "message" },
    el("b", {}, "Message " + (i + 1)), " ",
    el("span", { class: "tags" }, fmtNum(m.payload_bytes) + " bytes, " + m.payload_encoding +
      (m.redelivered ? ", redelivered" : "") + (props ? "; " + props : "")),
    el("pre", { class: "payload" }, m.payload));
}

function dangerCard(q) {
  const purge = armedButton("Purge messages", "purge", () => act(
    () => Api.call("DELETE", Api.queuePath(q.vhost, q.name) + "/contents"), "queue purged"));
  const del = armedButton("Delete queue", "delete", () => act(async () => {
    await Api.call("DELETE", Api.queuePath(q.vhost, q.name));
    location.hash = "#/queues";
  }, "queue deleted"));
  return el("div", { class: "card toolbar" }, purge, del);
}
