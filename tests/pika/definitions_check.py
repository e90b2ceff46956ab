"""The topology of tests/rabbitmq/declare.py, imported from definitions,
routes: as alice (her password from the export: RabbitMQ's hash), a
publish through the topic exchange `orders` reaches `orders.eu`; as
guest, a headers match reaches `prio` and, in vhost `staging`, a topic
match reaches `stage.q`. Prints "ok". Env: AMQP_PORT."""
import os
import sys
import time

import pika

PORT = int(os.environ["AMQP_PORT"])


def channel(user, password, vhost):
    params = pika.ConnectionParameters("127.0.0.1", PORT, vhost, pika.PlainCredentials(user, password),
                                       socket_timeout=10, blocked_connection_timeout=10)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def routed(ch, exchange, key, queue, body, headers=None):
    ch.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers), mandatory=True)
    deadline = time.time() + 5
    while time.time() < deadline:
        _, _, got = ch.basic_get(queue, auto_ack=True)
        if got is not None:
            if got != body:
                sys.exit(f"{queue}: got {got!r}, expected {body!r}")
            return
        time.sleep(0.05)
    sys.exit(f"nothing reached {queue} through {exchange} with key {key!r}")


conn, ch = channel("alice", "wonderland", "/")
routed(ch, "orders", "eu.check", "orders.eu", b"via-orders")
conn.close()

conn, ch = channel("guest", "guest", "/")
routed(ch, "hdrs", "", "prio", b"via-headers", headers={"kind": "urgent", "level": 3})
conn.close()

conn, ch = channel("guest", "guest", "staging")
routed(ch, "stage.topic", "a.b", "stage.q", b"via-staging")
conn.close()
print("ok")
