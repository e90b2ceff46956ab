"""Declares QUEUE and publishes COUNT messages with confirms, one with
AMQP properties, then a native consumer takes them."""
import os

import pika

from util import connect

q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
conn = connect()
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(queue=q)
for i in range(count):
    props = pika.BasicProperties(content_type="text/plain") if i == 0 else None
    ch.basic_publish(exchange="", routing_key=q, body=("m%d" % i).encode(), properties=props)
conn.close()
print("OK")
