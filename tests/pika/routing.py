"""Exchanges as RabbitMQ's tutorials use them: fanout (publish/subscribe),
direct (routing), topic, headers; exchange-to-exchange bindings, the
alternate exchange, unbinding, mandatory returns naming the exchange, and
exchange deletion."""
import pika
from pika.exceptions import UnroutableError

from util import connect, done, unique

conn = connect()
ch = conn.channel()
ch.confirm_delivery()


def fresh_queue(prefix):
    return ch.queue_declare(queue="", exclusive=True).method.queue


def drain(q, n_expected):
    bodies = []
    while True:
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        bodies.append(b)
    assert len(bodies) == n_expected, "%s: expected %d messages, got %r" % (q, n_expected, bodies)
    return bodies


# Fanout: every bound queue gets every message.
logs = unique("logs")
ch.exchange_declare(exchange=logs, exchange_type="fanout")
fq = [fresh_queue("f") for _ in range(3)]
for q in fq:
    ch.queue_bind(exchange=logs, queue=q)
for i in range(5):
    ch.basic_publish(exchange=logs, routing_key="", body=b"log%d" % i)
for q in fq:
    assert drain(q, 5) == [b"log%d" % i for i in range(5)]
print("fanout ok")

# Direct: by routing key, a queue may have several keys.
direct = unique("direct_logs")
ch.exchange_declare(exchange=direct, exchange_type="direct")
errors, everything = fresh_queue("e"), fresh_queue("a")
ch.queue_bind(exchange=direct, queue=errors, routing_key="error")
for sev in ("info", "warning", "error"):
    ch.queue_bind(exchange=direct, queue=everything, routing_key=sev)
for sev in ("info", "error", "debug"):
    ch.basic_publish(exchange=direct, routing_key=sev, body=sev.encode())
assert drain(errors, 1) == [b"error"]
assert drain(everything, 2) == [b"info", b"error"]
ch.queue_unbind(exchange=direct, queue=everything, routing_key="info")
ch.basic_publish(exchange=direct, routing_key="info", body=b"info2")
drain(everything, 0)
print("direct ok")

# Topic: * is one word, # zero or more.
topic = unique("topic_logs")
ch.exchange_declare(exchange=topic, exchange_type="topic")
kern, crit, allq = fresh_queue("k"), fresh_queue("c"), fresh_queue("all")
ch.queue_bind(exchange=topic, queue=kern, routing_key="kern.*")
ch.queue_bind(exchange=topic, queue=crit, routing_key="*.critical")
ch.queue_bind(exchange=topic, queue=allq, routing_key="#")
for key in ("kern.critical", "kern.info", "app.critical", "app.web.info", "kern"):
    ch.basic_publish(exchange=topic, routing_key=key, body=key.encode())
m, p, b = ch.basic_get(kern, auto_ack=True)
assert (m.exchange, m.routing_key, b) == (topic, "kern.critical", b"kern.critical"), (m, b)
assert drain(kern, 1) == [b"kern.info"]
assert drain(crit, 2) == [b"kern.critical", b"app.critical"]
# Pushed deliveries carry the exchange and the routing key too (the
# tutorials' consumers print method.routing_key).
seen = []
ch.basic_consume(allq, lambda c, m, p, b: seen.append((m.exchange, m.routing_key, b)), auto_ack=True)
from util import wait_until
wait_until(conn, lambda: len(seen) == 5)
assert seen[4] == (topic, "kern", b"kern"), seen
assert [s[1] for s in seen] == ["kern.critical", "kern.info", "app.critical", "app.web.info", "kern"], seen
print("topic ok")

# Headers: x-match all / any.
hx = unique("headers")
ch.exchange_declare(exchange=hx, exchange_type="headers")
hall, hany = fresh_queue("hall"), fresh_queue("hany")
ch.queue_bind(exchange=hx, queue=hall, arguments={"x-match": "all", "format": "pdf", "type": "report"})
ch.queue_bind(exchange=hx, queue=hany, arguments={"x-match": "any", "format": "pdf", "type": "log"})
for name, headers in (("both", {"format": "pdf", "type": "report"}), ("pdf", {"format": "pdf"}),
                      ("log", {"type": "log"}), ("zip", {"format": "zip"})):
    ch.basic_publish(exchange=hx, routing_key="", body=name.encode(),
                     properties=pika.BasicProperties(headers=headers))
assert drain(hall, 1) == [b"both"]
assert drain(hany, 3) == [b"both", b"pdf", b"log"]
print("headers ok")

# Exchange-to-exchange, and the alternate exchange.
upstream, downstream = unique("up"), unique("down")
ch.exchange_declare(exchange=upstream, exchange_type="topic")
ch.exchange_declare(exchange=downstream, exchange_type="fanout")
ch.exchange_bind(destination=downstream, source=upstream, routing_key="a.#")
dq = fresh_queue("d")
ch.queue_bind(exchange=downstream, queue=dq)
ch.basic_publish(exchange=upstream, routing_key="a.b", body=b"through")
ch.basic_publish(exchange=upstream, routing_key="b.a", body=b"not")
assert drain(dq, 1) == [b"through"]
ch.exchange_unbind(destination=downstream, source=upstream, routing_key="a.#")
ch.basic_publish(exchange=upstream, routing_key="a.b", body=b"after unbind")
drain(dq, 0)

ae, main = unique("ae"), unique("main")
ch.exchange_declare(exchange=ae, exchange_type="fanout")
ch.exchange_declare(exchange=main, exchange_type="direct", arguments={"alternate-exchange": ae})
unrouted, routed = fresh_queue("u"), fresh_queue("r")
ch.queue_bind(exchange=ae, queue=unrouted)
ch.queue_bind(exchange=main, queue=routed, routing_key="yes")
ch.basic_publish(exchange=main, routing_key="yes", body=b"r")
ch.basic_publish(exchange=main, routing_key="no", body=b"u")
assert drain(routed, 1) == [b"r"] and drain(unrouted, 1) == [b"u"]
print("exchange bindings and alternate exchange ok")

# Mandatory and unroutable: returned with the exchange and key.
try:
    ch.basic_publish(exchange=direct, routing_key="nobody", body=b"lost", mandatory=True)
    raise AssertionError("mandatory unroutable publish was not returned")
except UnroutableError as e:
    m = e.messages[0].method
    assert m.reply_code == 312 and m.exchange == direct and m.routing_key == "nobody", m
print("mandatory return ok")

# Passive declare, delete, and then it is gone.
ch.exchange_declare(exchange=logs, passive=True)
ch.exchange_delete(exchange=logs)
try:
    conn.channel().exchange_declare(exchange=logs, passive=True)
    raise AssertionError("deleted exchange still there")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404, e
print("delete ok")
conn.close()
done()
