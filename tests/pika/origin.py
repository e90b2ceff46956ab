"""The exchange and routing key a message was published with, after a
restart (tests/origin_recovery.rs). MODE=publish: persistent messages
through a durable direct and a durable topic exchange (keys unlike the
queue's name) and straight to the durable QUEUE, with confirms.
MODE=check (after kill -9): basic.get-ok and basic.deliver report each
message's own exchange and routing key, as RabbitMQ does after a restart."""
import os

import pika

from util import connect, done

q, mode = os.environ["QUEUE"], os.environ["MODE"]
DIRECT, TOPIC = q + ".direct", q + ".topic"
# (body, exchange, routing key), in publish order.
WANT = (
    [(b"d%d" % i, DIRECT, "orders.new") for i in range(3)]
    + [(b"q%d" % i, "", q) for i in range(2)]
    + [(b"t%d" % i, TOPIC, "eu.de.berlin") for i in range(3)]
    + [(b"u%d" % i, TOPIC, "eu.fr") for i in range(2)]
)

conn = connect()
ch = conn.channel()
if mode == "publish":
    ch.confirm_delivery()
    ch.queue_declare(queue=q, durable=True)
    ch.exchange_declare(exchange=DIRECT, exchange_type="direct", durable=True)
    ch.exchange_declare(exchange=TOPIC, exchange_type="topic", durable=True)
    ch.queue_bind(queue=q, exchange=DIRECT, routing_key="orders.new")
    ch.queue_bind(queue=q, exchange=TOPIC, routing_key="eu.#")
    persistent = pika.BasicProperties(delivery_mode=2)
    for body, exchange, key in WANT:
        ch.basic_publish(exchange=exchange, routing_key=key, body=body, properties=persistent, mandatory=True)
    conn.close()
    done()

assert mode == "check", mode
# The first two by basic.get (acked), the rest by basic.consume.
for body, exchange, key in WANT[:2]:
    method, _, got = ch.basic_get(queue=q, auto_ack=False)
    assert method is not None, "queue empty before %r" % body
    assert got == body, (got, body)
    assert (method.exchange, method.routing_key) == (exchange, key), (body, method.exchange, method.routing_key)
    assert method.redelivered, "a recovered message is marked redelivered"
    ch.basic_ack(method.delivery_tag)
seen = []


def on_message(ch, method, _props, body):
    seen.append((body, method.exchange, method.routing_key))
    ch.basic_ack(method.delivery_tag)
    if len(seen) == len(WANT) - 2:
        ch.stop_consuming()


ch.basic_qos(prefetch_count=100)
ch.basic_consume(queue=q, on_message_callback=on_message)
conn.call_later(30, ch.stop_consuming)
ch.start_consuming()
assert seen == WANT[2:], seen
conn.close()
done()
