//! Hostile consumers and floods: every growth the broker allows has a
//! bound. Real brokers over real sockets.

mod common;

use common::{body_seq, http_get, queue_on, seq_body, Raw, TestBroker};
use ringmq::protocol::{op, BatchWriter, Cmd, ErrorCode};
use std::time::{Duration, Instant};

/// The value of an unlabelled gauge in `/metrics`.
fn metric(b: &TestBroker, name: &str) -> u64 {
    let text = http_get(b.metrics, "/metrics");
    let line = text
        .lines()
        .find(|l| l.split_once(' ').is_some_and(|(n, _)| n == name))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).map(|v| v as u64).expect("a number")
}

const MSG_BYTES: usize = 1024;
const BATCH: u64 = 100;

/// Publishes `batches` confirmed batches of `BATCH` numbered messages,
/// numbering from `from`.
fn publish_numbered(p: &mut Raw, queue: &str, from: u64, batches: u64) {
    for b in 0..batches {
        let rid = p.rid();
        let mut buf = bytes::BytesMut::new();
        let mut w = BatchWriter::begin_publish(&mut buf, rid, op::PUBLISH_CONFIRM, queue);
        for i in 0..BATCH {
            w.push(&mut buf, 0, &[], &seq_body(from + b * BATCH + i, MSG_BYTES));
        }
        w.finish(&mut buf);
        p.write(&buf);
        p.expect_confirm(rid, BATCH as u32);
    }
}

/// A consumer that does not read stops being dispatched to: while a
/// publisher sends 20 MB its queue keeps the messages and the broker holds
/// about `outbox_bytes_max` for its socket, not the 20 MB; a client on the
/// same broker keeps working; once it reads, everything arrives in order.
/// Both paths: the consumer on the queue's shard, and on another shard.
#[test]
fn a_consumer_that_does_not_read_is_not_buffered_for() {
    const OUTBOX: u64 = 1 << 20;
    let b = TestBroker::start_with(2, |c| {
        c.outbox_bytes_max = OUTBOX as u32;
        c.frame_bytes_max = 1 << 20;
        c.message_bytes_max = 64 << 10;
    });
    for consumer_shard in [0usize, 1] {
        let queue = queue_on(0, 2, "stuck");
        let mut admin = Raw::hello(b.shards[0]).0;
        admin.declare(&queue);
        let mut consumer = Raw::connect_small_rcvbuf(b.shards[consumer_shard], 4096);
        assert_eq!(usize::from(consumer.handshake()), consumer_shard);
        let (cid, early) = consumer.subscribe(&queue, 65_535);
        assert!(early.is_empty());

        let batches = 200; // 20,000 messages of 1 KiB
        let mut publisher = Raw::hello(b.shards[0]).0;
        let mut witness = Raw::hello(b.shards[1]).0;
        for round in 0..4 {
            publish_numbered(&mut publisher, &queue, round * batches / 4 * BATCH, batches / 4);
            witness.round_trip(&queue_on(round as u32 % 2, 2, "witness"));
        }
        let total = batches * BATCH;
        // Settle: whatever was on its way has reached the outbox.
        std::thread::sleep(Duration::from_millis(200));
        let largest = metric(&b, "ringmq_outbox_bytes_largest");
        let ready = metric(&b, "ringmq_messages_ready");
        let unacked = metric(&b, "ringmq_messages_unacked");
        eprintln!("consumer on shard {consumer_shard}: outbox {largest} B, ready {ready}, unacked {unacked}");
        // The bound plus one dispatch (a publish batch) and what was on
        // its way over the mesh before the owner heard.
        assert!(largest <= OUTBOX + 4 * BATCH * (MSG_BYTES as u64 + 64), "outbox holds {largest} bytes");
        assert!(ready > total / 2, "the messages stay in the queue: {ready} ready of {total}");
        assert_eq!(ready + unacked, total, "nothing lost");

        // It reads again: everything, in order, then the queue is empty.
        consumer.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let got = consumer.expect_deliveries(cid, total as usize);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(body_seq(&d.body), i as u64, "delivery {i} out of order");
            assert_eq!(d.tag, i as u64 + 1);
        }
        consumer.ack(cid, &[(1, total)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&b, "ringmq_messages_unacked") > 0 {
            assert!(Instant::now() < deadline, "acks did not land");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(metric(&b, "ringmq_messages_ready"), 0);
        let rid = admin.send(Cmd::Delete { flags: 0, queue: &queue });
        admin.expect_ok(rid);
        drop(consumer);
        witness.ping();
        admin.ping();
    }
}

/// `consumer_timeout_ms`: a native consumer that leaves deliveries unacked
/// past it gets a `ConsumerCancelled` notice (code 67), its messages go to
/// another consumer, and its later ack is refused as for an unknown one.
#[test]
fn native_consumer_timeout_cancels_and_requeues() {
    let b = TestBroker::start_with(2, |c| c.consumer_timeout_ms = 300);
    let queue = queue_on(1, 2, "timeout");
    // The slow consumer on the other shard: the notice crosses the mesh.
    let mut slow = Raw::hello(b.shards[0]).0;
    slow.declare(&queue);
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| seq_body(i, 16)).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    slow.publish_confirmed(&queue, &refs);
    let (cid, mut got) = slow.subscribe(&queue, 10);
    let rest = 5 - got.len();
    got.extend(slow.expect_deliveries(cid, rest));
    let mut fast = Raw::hello(b.shards[1]).0;
    let (fid, early) = fast.subscribe(&queue, 10);
    assert!(early.is_empty(), "the slow consumer holds them all");

    let start = Instant::now();
    let f = slow.recv();
    match f.frame().cmd {
        Cmd::ConsumerCancelled { consumer_id, code, message } => {
            assert_eq!(consumer_id, cid);
            assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::ConsumerTimeout));
            assert!(message.contains("timed out") && message.contains("300 ms"), "{message}");
        }
        other => panic!("expected ConsumerCancelled, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(3), "cancelled after {waited:?}");

    let again = fast.expect_deliveries(fid, 5);
    for (i, d) in again.iter().enumerate() {
        assert_eq!(body_seq(&d.body), i as u64);
        assert!(d.redelivered);
    }
    fast.ack(fid, &[(1, 5)]);
    fast.ping();
    // The cancelled consumer is gone on its connection too.
    slow.ack(cid, &[(1, 5)]);
    slow.expect_error(ErrorCode::UnknownConsumer);
    slow.ping();
}

/// The same through pika: the channel is closed with 406 as RabbitMQ does.
#[test]
fn pika_consumer_timeout_closes_the_channel() {
    let b = TestBroker::start_with(2, |c| c.consumer_timeout_ms = 300);
    common::pika::run("consumer_timeout.py", b.amqp, &[], Duration::from_secs(60)).assert_ok("consumer_timeout.py");
}
