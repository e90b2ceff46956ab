"""Volume through both hot paths: 5,000 messages into each of several
queues (so some are owned by the other shard than the connection's),
consumed with auto-ack on one channel and manual multiple-acks on another;
every message once, in order."""
from util import connect, done, unique

N = 5000
conn = connect()
pub = conn.channel()
queues = [unique("bulk%d" % i) for i in range(4)]
for q in queues:
    pub.queue_declare(queue=q)
    for i in range(N):
        pub.basic_publish(exchange="", routing_key=q, body=b"%d" % i)

auto = conn.channel()
manual = conn.channel()
manual.basic_qos(prefetch_count=100)
seen = {q: [] for q in queues}


def make_manual(q):
    def on_message(ch, m, p, b):
        seen[q].append(int(b))
        if m.delivery_tag % 50 == 0:
            ch.basic_ack(m.delivery_tag, multiple=True)
    return on_message


def make_auto(q):
    return lambda ch, m, p, b: seen[q].append(int(b))


for i, q in enumerate(queues):
    if i % 2 == 0:
        auto.basic_consume(q, make_auto(q), auto_ack=True)
    else:
        manual.basic_consume(q, make_manual(q))
for _ in range(200):
    conn.process_data_events(time_limit=0.1)
    if all(len(v) == N for v in seen.values()):
        break
for q, v in seen.items():
    assert v == list(range(N)), "%s: %d messages, first bad at %s" % (
        q, len(v), next((i for i, x in enumerate(v) if x != i), None))
print("all %d messages, in order" % (N * len(queues)))
conn.close()
done()
