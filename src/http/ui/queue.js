// One queue's page: its figures, and (administrators) publish, get, purge
// and delete, with RabbitMQ's API calls.
"use strict";

/** Inputs of the publish and get forms, kept across polls. */
const queueForms = {};

function queueForm(key) {
  if (!queueForms[key]) {
    queueForms[key] = {
      payload: el("textarea", { id: "publish-payload", placeholder: "Payload" }),
      contentType: el("input", { id: "publish-content-type", placeholder: "e.g. text/plain" }),
      persistent: el("input", { type: "checkbox", id: "publish-persistent" }),
      count: el("input", { type: "number", id: "get-count", min: "1", max: "100", value: "1" }),
      ackmode: el("select", { id: "get-ackmode" },
        el("option", { value: "ack_requeue_true" }, "Nack, requeue (peek)"),
        el("option", { value: "reject_requeue_true" }, "Reject, requeue"),
        el("option", { value: "ack_requeue_false" }, "Ack (remove)"),
        el("option", { value: "reject_requeue_false" }, "Reject (remove, dead-letter)")),
      messages: el("div", { id: "get-messages" }),
    };
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
    const properties = {};
    if (f.contentType.value) properties.content_type = f.contentType.value;
    if (f.persistent.checked) properties.delivery_mode = 2;
    const body = { routing_key: q.name, payload: f.payload.value, payload_encoding: "string", properties };
    const r = await Api.call("POST", "/api/exchanges/" + Api.seg(q.vhost) + "/amq.default/publish", body);
    if (!r.routed) throw new Error("the message was not routed to a queue");
  }, "message published"));
  return el("div", { class: "card" }, el("h3", {}, "Publish message"),
    el("div", { class: "form" },
      el("span", {}, "Payload"), f.payload,
      el("span", {}, "Content type"), f.contentType,
      el("span", {}, "Persistent"), f.persistent,
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
  const props = Object.entries(m.properties || {}).map(([k, v]) => k + ": " + v).join(", ");
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
