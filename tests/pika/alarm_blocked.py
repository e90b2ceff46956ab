"""Resource alarm seen by pika: a publisher with confirms publishes into a
queue (QUEUE) whose consumer (the Rust test) has stopped reading, until the
memory alarm blocks it. pika hears connection.blocked with the alarm's
reason; once the consumer drains the queue the alarm clears and pika hears
connection.unblocked. Every publish waited for its confirm; the script
prints how many there were, for the test to count them in."""
import os

from util import connect, done

q = os.environ["QUEUE"]
b = connect()
events = []
b.add_on_connection_blocked_callback(lambda c, m: events.append(("blocked", m.method.reason)))
b.add_on_connection_unblocked_callback(lambda c, m: events.append(("unblocked", "")))
ch = b.channel()
ch.confirm_delivery()
body = b"x" * 65536
n = 0
# basic_publish waits for its confirm: while the broker does not read this
# connection it waits, and returns once the alarm has cleared.
while not any(e[0] == "unblocked" for e in events) and n < 20000:
    ch.basic_publish(exchange="", routing_key=q, body=body)
    n += 1
    b.process_data_events(time_limit=0)
assert events, "never blocked after %d publishes" % n
kind, reason = events[0]
assert kind == "blocked" and "memory alarm" in reason, events
assert events[-1][0] == "unblocked", events
print("blocked: %s" % reason)
print("published %d" % n)
b.close()
done()
