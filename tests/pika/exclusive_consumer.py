"""Exclusive consumers, as RabbitMQ has them: basic.consume with
exclusive=True makes the consumer the queue's only one. Another consumer
(exclusive or not) is refused with 403 ACCESS_REFUSED "in exclusive use"
(its channel closes); an exclusive consumer is refused while the queue has
another; once the exclusive one is cancelled, others may consume."""
from util import connect, done, expect_channel_close, unique, wait_until

q = unique("excl-consumer")
owner = connect()
ch = owner.channel()
ch.queue_declare(q)
got = []
tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True, exclusive=True)

other = connect()
text = expect_channel_close(other, 403, lambda c: c.basic_consume(q, lambda *a: None))
assert "in exclusive use" in text, text
expect_channel_close(other, 403, lambda c: c.basic_consume(q, lambda *a: None, exclusive=True))

ch.basic_publish("", q, b"for-the-exclusive-one")
wait_until(owner, lambda: got == [b"for-the-exclusive-one"])
assert got == [b"for-the-exclusive-one"], got

# Cancelled: the queue is free again; an exclusive consumer is then
# refused while the ordinary one is there.
ch.basic_cancel(tag)
oc = other.channel()
oc.basic_consume(q, lambda *a: None, auto_ack=True)
text = expect_channel_close(owner, 403, lambda c: c.basic_consume(q, lambda *a: None, exclusive=True))
assert "in exclusive use" in text, text
print("exclusive consumers hold the queue alone")
owner.close()
other.close()
done()
