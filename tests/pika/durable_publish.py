"""Publishes COUNT persistent messages (with properties) and one transient
one to the durable QUEUE, with confirms: every persistent one is acked only
once it is on disk."""
import os

import pika

from util import connect

q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
conn = connect()
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(queue=q, durable=True)
for i in range(count):
    props = pika.BasicProperties(delivery_mode=2, message_id="id-%d" % i, headers={"i": i})
    ch.basic_publish(exchange="", routing_key=q, body=b"p%d" % i, properties=props)
ch.basic_publish(exchange="", routing_key=q, body=b"transient")
conn.close()
print("OK")
