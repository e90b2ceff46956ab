"""A consumer's process dies holding an unacked message: the message is
redelivered, marked redelivered, to the next consumer."""
import os
import subprocess
import sys

from util import connect, done, unique

q = unique("redeliver")
conn = connect()
ch = conn.channel()
ch.queue_declare(queue=q)
ch.basic_publish(exchange="", routing_key=q, body=b"precious")
here = os.path.dirname(os.path.abspath(__file__))
child = subprocess.Popen([sys.executable, os.path.join(here, "redelivery_consumer.py"), q], stdout=subprocess.PIPE)
line = child.stdout.readline().decode()
assert line.startswith("GOT precious False"), line
child.kill()  # SIGKILL: the socket just goes away
child.wait()
for m, p, b in ch.consume(q, inactivity_timeout=5):
    assert m is not None, "not redelivered after the consumer died"
    assert b == b"precious" and m.redelivered, (m, b)
    ch.basic_ack(m.delivery_tag)
    break
print("redelivered with redelivered=True")
ch.cancel()
conn.close()
done()
