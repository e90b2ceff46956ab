"""An RPC server as RabbitMQ's tutorial 6 has it: consumes requests from
RPC_QUEUE and answers RPC_COUNT of them, each to the default exchange with
the request's reply_to as the key and its correlation_id, the body
prefixed with "re:". Whatever asks (pika, lapin, the native client) uses
direct reply-to, so reply_to is a generated name."""
import os

import pika

from util import connect_on, done

queue = os.environ["RPC_QUEUE"]
count = int(os.environ["RPC_COUNT"])
# RPC_SHARD: the shard this side's connection must be on.
conn = connect_on(int(os.environ["RPC_SHARD"]) if os.environ.get("RPC_SHARD") else None)
ch = conn.channel()
ch.queue_declare(queue=queue)
ch.basic_qos(prefetch_count=10)
served = []


def on_request(c, m, p, body):
    assert p.reply_to and p.reply_to.startswith("amq.rabbitmq.reply-to."), p.reply_to
    props = pika.BasicProperties(correlation_id=p.correlation_id)
    c.basic_publish("", p.reply_to, b"re:" + body, props)
    c.basic_ack(m.delivery_tag)
    served.append(p.reply_to)


ch.basic_consume(queue, on_request)
print("serving", queue, flush=True)
while len(served) < count:
    conn.process_data_events(time_limit=0.1)
print("served %d, reply_to %s" % (len(served), served[0]))
conn.close()
done()
