"""A broker whose disk is full, as pika sees it (queue `dq` is durable and
exists): a persistent publish under confirms is nacked; without confirms
the connection is closed with 506 RESOURCE_ERROR saying the disk is full;
transient messages still go through."""
import pika
from pika.exceptions import NackError

from util import connect, done, expect_connection_close

PERSISTENT = pika.BasicProperties(delivery_mode=2)

conn = connect()
ch = conn.channel()
ch.queue_declare(queue="dq", durable=True, passive=True)
ch.confirm_delivery()
try:
    ch.basic_publish(exchange="", routing_key="dq", body=b"p", properties=PERSISTENT)
    raise AssertionError("a persistent publish on a full disk was confirmed")
except NackError:
    print("nacked as expected")
# Transient messages into the same durable queue are kept in memory.
ch.basic_publish(exchange="", routing_key="dq", body=b"t")
conn.close()


def publish_persistent(ch):
    ch.basic_publish(exchange="", routing_key="dq", body=b"p", properties=PERSISTENT)
    ch.queue_declare(queue="dq", durable=True, passive=True)


text = expect_connection_close(506, publish_persistent)
assert "disk full" in text, text
done()
