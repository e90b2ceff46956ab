"""Permissions over AMQP, as pika sees them. The user (USER_NAME /
USER_PASS) lacks the MODE permission (configure, write or read) and has the
other two: every operation that needs MODE is refused with 403
ACCESS_REFUSED (its channel closes, the connection stays), and the others
work. QUEUE exists (declared by an administrator) and holds messages."""
import os

import pika

from util import connect, expect_channel_close, unique

mode = os.environ["MODE"]
queue = os.environ["QUEUE"]
user = os.environ["USER_NAME"]
conn = connect(credentials=pika.PlainCredentials(user, os.environ["USER_PASS"]))


def declare(ch):
    ch.queue_declare(unique("perm"))


def delete(ch):
    ch.queue_delete(queue)


def publish(ch):
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"m")


def consume(ch):
    ch.basic_consume(queue, lambda *a: None)


def get(ch):
    ch.basic_get(queue, auto_ack=False)


def purge(ch):
    ch.queue_purge(queue)


needs = {"configure": [declare, delete], "write": [publish], "read": [consume, get, purge]}
for op in needs[mode]:
    text = expect_channel_close(conn, 403, op)
    assert text.startswith("ACCESS_REFUSED - access to ") and ("user '%s'" % user) in text, text
for other, ops in needs.items():
    if other == mode:
        continue
    for op in ops:
        if op in (delete, purge):
            continue  # they would empty the queue the next script uses
        ch = conn.channel()
        op(ch)
        ch.close()
assert conn.is_open, "a refusal closes the channel, not the connection"
conn.close()
print("permissions without %s: ok" % mode)
