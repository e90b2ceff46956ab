"""Declares a topology on a RabbitMQ node with pika (tests/definitions.rs,
through tests/rabbitmq/export.sh): exchanges of each type, queues with
arguments, bindings with and without arguments, in `/` and `staging`.
Usage: declare.py AMQP_PORT"""
import sys

import pika

port = int(sys.argv[1])


def channel(vhost):
    params = pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials("guest", "guest"),
                                       socket_timeout=10, blocked_connection_timeout=10)
    conn = pika.BlockingConnection(params)
    return conn, conn.channel()


conn, ch = channel("/")
ch.exchange_declare("orders", "topic", durable=True)
ch.exchange_declare("unrouted", "fanout", durable=True)
ch.exchange_declare("events", "fanout", durable=True, arguments={"alternate-exchange": "unrouted"})
ch.exchange_declare("dlx", "direct", durable=True)
ch.exchange_declare("hdrs", "headers", durable=True)
# Not internal: RabbitMQ 3.10 leaves internal exchanges out of its export
# (their bindings stay in), which ringmq refuses as a dangling binding.
ch.exchange_declare("inner", "direct", durable=True)
ch.queue_declare("orders.eu", durable=True,
                 arguments={"x-message-ttl": 60000, "x-max-length": 1000, "x-dead-letter-exchange": "dlx",
                            "x-dead-letter-routing-key": "dead", "x-overflow": "reject-publish"})
ch.queue_declare("dead", durable=True)
ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
ch.queue_declare("scratch", durable=False, auto_delete=True, arguments={"x-expires": 3600000})
ch.queue_declare("lost", durable=True)
ch.queue_bind("orders.eu", "orders", "eu.#")
ch.queue_bind("dead", "dlx", "dead")
ch.queue_bind("prio", "hdrs", "", arguments={"x-match": "all", "kind": "urgent", "level": 3})
ch.queue_bind("lost", "unrouted", "")
ch.exchange_bind("inner", "events", "")
ch.queue_bind("scratch", "inner", "x")
conn.close()

conn, ch = channel("staging")
ch.exchange_declare("stage.topic", "topic", durable=True)
ch.queue_declare("stage.q", durable=True, arguments={"x-single-active-consumer": True})
ch.queue_bind("stage.q", "stage.topic", "a.*")
ch.queue_bind("stage.q", "amq.direct", "direct-key")
conn.close()
