"""An RPC client with direct reply-to: consumes from amq.rabbitmq.reply-to
(no-ack), sends RPC_COUNT requests to RPC_QUEUE with reply_to set to the
pseudo-queue and a correlation id each, and waits for every reply
("re:" + the request's body, its correlation id)."""
import os
import time

import pika

from util import connect_on, done

queue = os.environ["RPC_QUEUE"]
count = int(os.environ["RPC_COUNT"])
# RPC_SHARD: the shard this side's connection must be on.
conn = connect_on(int(os.environ["RPC_SHARD"]) if os.environ.get("RPC_SHARD") else None)
ch = conn.channel()
ch.queue_declare(queue=queue)
replies = {}


def on_reply(c, m, p, body):
    assert m.routing_key.startswith("amq.rabbitmq.reply-to."), m.routing_key
    replies[p.correlation_id] = body


ch.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
for i in range(count):
    props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="corr-%d" % i)
    ch.basic_publish("", queue, b"req-%d" % i, props)
deadline = time.time() + 30
while len(replies) < count and time.time() < deadline:
    conn.process_data_events(time_limit=0.1)
assert len(replies) == count, "got %d of %d replies" % (len(replies), count)
for i in range(count):
    assert replies["corr-%d" % i] == b"re:req-%d" % i, replies["corr-%d" % i]
print("%d replies" % count)
conn.close()
done()
