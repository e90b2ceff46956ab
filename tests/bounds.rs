//! Hostile consumers and floods: every growth the broker allows has a
//! bound. Real brokers over real sockets.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

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
/// `outbox_bytes_max` in the outbox tests.
const OUTBOX: u64 = 1 << 20;
/// What an outbox may hold (`server/gate.rs`): its bound plus one message
/// for its one consumer, counted with the framing allowance.
const OUTBOX_PEAK: u64 = OUTBOX + MSG_BYTES as u64 + 128;

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
        assert!(largest <= OUTBOX_PEAK, "outbox holds {largest} bytes");
        assert!(ready > total / 2, "the messages stay in the queue: {ready} ready of {total}");
        assert_eq!(ready + unacked, total, "nothing lost");

        // It reads a little at a time until its owner resumes: however
        // much is ready, a resume hands it no more than its room.
        consumer.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        while metric(&b, "ringmq_messages_ready") == ready {
            got.extend(consumer.expect_at_least(cid, 500));
            std::thread::sleep(Duration::from_millis(100));
            let largest = metric(&b, "ringmq_outbox_bytes_largest");
            assert!(largest <= OUTBOX_PEAK, "after {} read, the outbox holds {largest} bytes", got.len());
        }

        // It reads on: everything, in order, then the queue is empty.
        got.extend(consumer.expect_deliveries(cid, total as usize - got.len()));
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

fn declare_exchange(r: &mut Raw, name: &str, durable: bool) -> u64 {
    let flags = if durable { op::EXCHANGE_DURABLE } else { 0 };
    r.send(Cmd::ExchangeDeclare { flags, exchange: name, kind: "direct", args: &[] })
}

fn bind(r: &mut Raw, source: &str, queue: &str, key: &str) -> u64 {
    r.send(Cmd::Bind { flags: 0, source, destination: queue, routing_key: key, args: &[] })
}

/// `exchanges_max` and `bindings_max`: past them a declare or a bind is
/// refused with `DefinitionLimit` (the connection stays); what adds
/// nothing (a redeclare, a rebind) passes, and a delete makes room.
#[test]
fn exchange_and_binding_caps_are_refused() {
    let b = TestBroker::start_with(2, |c| {
        c.exchanges_max = 3;
        c.bindings_max = 4;
    });
    let mut r = Raw::hello(b.shards[1]).0;
    for i in 0..3 {
        let rid = declare_exchange(&mut r, &format!("x{i}"), false);
        r.expect_ok(rid);
    }
    let rid = declare_exchange(&mut r, "x3", false);
    let (got, msg) = r.expect_error(ErrorCode::DefinitionLimit);
    assert_eq!(got, rid);
    assert!(msg.contains("exchanges_max (3)"), "{msg}");
    let rid = declare_exchange(&mut r, "x0", false);
    r.expect_ok(rid);

    let q = queue_on(0, 2, "capped");
    r.declare(&q);
    for k in 0..4 {
        let rid = bind(&mut r, "x0", &q, &format!("k{k}"));
        r.expect_ok(rid);
    }
    let rid = bind(&mut r, "x1", &q, "k");
    let (got, msg) = r.expect_error(ErrorCode::DefinitionLimit);
    assert_eq!(got, rid);
    assert!(msg.contains("bindings_max (4)"), "{msg}");
    let rid = bind(&mut r, "x0", &q, "k0");
    r.expect_ok(rid);
    // Deleting x0 takes its four bindings with it: room for both.
    let rid = r.send(Cmd::ExchangeDelete { flags: 0, exchange: "x0" });
    r.expect_ok(rid);
    let rid = declare_exchange(&mut r, "x3", false);
    r.expect_ok(rid);
    let rid = bind(&mut r, "x1", &q, "k");
    r.expect_ok(rid);
    r.ping();
}

/// The same limits through pika: channel closed with 406, as RabbitMQ's
/// vhost limits (the queue limit too).
#[test]
fn pika_caps_close_the_channel_with_406() {
    let b = TestBroker::start_with(1, |c| {
        c.exchanges_max = 2;
        c.bindings_max = 2;
        c.queues_per_shard_max = 2;
    });
    common::pika::run("caps.py", b.amqp, &[], Duration::from_secs(60)).assert_ok("caps.py");
}

/// Admin flood: one native connection sends 50 `Admin` frames at once. One
/// runs; the others in flight with it are refused with `AdminBusy` (not
/// fatal), every one is answered, and the connection goes on.
#[test]
fn admin_requests_are_bounded_per_connection() {
    let b = TestBroker::start();
    let mut r = Raw::hello(b.shards[0]).0;
    let mut buf = bytes::BytesMut::new();
    for rid in 100..150u64 {
        ringmq::protocol::Frame { request_id: rid, cmd: Cmd::Admin { command: op::ADMIN_LIST_QUEUES, arg: "" } }
            .encode(&mut buf);
    }
    r.write(&buf);
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..50 {
        let f = r.recv();
        match f.frame().cmd {
            Cmd::AdminOk { .. } => ok += 1,
            Cmd::Error { fatal: false, code, .. } if ErrorCode::from_u16(code) == Some(ErrorCode::AdminBusy) => {
                busy += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    // Nothing was left running: the next one is served.
    let rid = r.send(Cmd::Admin { command: op::ADMIN_SHARDS, arg: "" });
    let f = r.recv();
    assert!(matches!(f.frame(), ringmq::protocol::Frame { request_id, cmd: Cmd::AdminOk { .. } } if request_id == rid));
    r.ping();
}

/// Durable declares pipelined on one connection share definitions writes
/// (off shard 0's thread); every one acknowledged is there after a restart.
#[test]
fn acknowledged_durable_declares_survive_a_restart() {
    use ringmq::server::{config::Config, Broker};
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Broker::start(Config {
            cores: 2,
            listen: "127.0.0.1:0".parse().unwrap(),
            amqp_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            pin_cores: false,
            ..Default::default()
        })
        .expect("broker starts")
    };
    let broker = start();
    // Through shard 1: each declare crosses the mesh to shard 0.
    let mut r = Raw::hello(broker.shard_addrs[1]).0;
    let mut buf = bytes::BytesMut::new();
    for i in 0..200u64 {
        let name = format!("dx{i}");
        let cmd = Cmd::ExchangeDeclare { flags: op::EXCHANGE_DURABLE, exchange: &name, kind: "fanout", args: &[] };
        ringmq::protocol::Frame { request_id: 1000 + i, cmd }.encode(&mut buf);
    }
    r.write(&buf);
    let mut answered: Vec<u64> = (0..200).map(|_| r.recv().request_id()).collect();
    let in_order = answered.windows(2).all(|w| w[0] < w[1]);
    answered.sort_unstable();
    assert_eq!(answered, (1000..1200).collect::<Vec<u64>>());
    assert!(in_order, "answers keep their order");
    drop(r);
    broker.stop().expect("the first broker stops cleanly");
    let broker = start();
    let mut r = Raw::hello(broker.shard_addrs[0]).0;
    for i in 0..200 {
        let name = format!("dx{i}");
        let rid = r.send(Cmd::ExchangeDeclare { flags: op::EXCHANGE_PASSIVE, exchange: &name, kind: "", args: &[] });
        r.expect_ok(rid);
    }
    drop(r);
    broker.stop().expect("the second broker stops cleanly");
}

/// `log_unwritten_bytes_max`'s wait: while a log holds more unwritten
/// bytes than the bound it does not return; the flush that writes them
/// releases it. (The broker waits on it between reads and mesh batches.)
#[test]
fn log_back_pressure_waits_for_the_disk() {
    use ringmq::storage::io::{DmaIo, LogIo};
    use ringmq::storage::Storage;
    use std::cell::Cell;
    use std::rc::Rc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    common::run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, common::log_options(&path, 1 << 20)).await.unwrap();
        let log = Rc::new(log);
        let q = log.declare("q", &[]).unwrap();
        for seq in 0..100 {
            log.publish(q, seq, &[b'x'; 1000]).unwrap();
        }
        log.defer(1);
        let pending = log.unwritten_bytes();
        assert!(pending >= 100_000, "{pending} bytes unwritten");
        let released = Rc::new(Cell::new(false));
        let (l, r) = (log.clone(), released.clone());
        let waiter = glommio::spawn_local(async move {
            l.wait_unwritten_below(4096).await;
            r.set(true);
        });
        glommio::timer::sleep(Duration::from_millis(50)).await;
        assert!(!released.get(), "returned with {} bytes unwritten", log.unwritten_bytes());
        let f = log.flush().await;
        assert!(f.result.is_ok());
        assert_eq!(f.waiters, vec![1]);
        common::within("the wait ends after the flush", Duration::from_secs(5), waiter).await;
        assert!(released.get());
        assert_eq!(log.unwritten_bytes(), 0);
    });
}

/// A minimal AMQP 0-9-1 client over a socket with a small receive buffer:
/// handshake as guest, open channel 1, `basic.consume` with `no_ack`.
struct AmqpReader {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl AmqpReader {
    fn put_method(&mut self, channel: u16, mid: (u16, u16), f: impl FnOnce(&mut bytes::BytesMut)) {
        use std::io::Write;
        let mut b = bytes::BytesMut::new();
        ringmq::protocol::amqp::method::put(&mut b, channel, mid, f);
        self.s.write_all(&b).unwrap();
    }

    /// The next frame: (kind, payload).
    fn frame(&mut self) -> (u8, Vec<u8>) {
        use ringmq::protocol::amqp::frame::{decode, Decoded};
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Decoded::Frame(f, n)) = decode(&self.buf, 1 << 20) {
                let got = (f.kind, f.payload.to_vec());
                self.buf.drain(..n);
                return got;
            }
            assert!(Instant::now() < deadline, "no AMQP frame within 5 s");
            let mut tmp = [0u8; 65536];
            let n = self.s.read(&mut tmp).expect("read");
            assert!(n > 0, "the broker closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn method(&mut self) -> (u16, u16) {
        loop {
            let (kind, p) = self.frame();
            if kind == ringmq::protocol::amqp::frame::METHOD {
                return (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
            }
        }
    }

    fn consume_no_ack(addr: std::net::SocketAddr, queue: &str) -> AmqpReader {
        use bytes::BufMut;
        use ringmq::protocol::amqp::method::id;
        use ringmq::protocol::amqp::wire::{put_longstr, put_shortstr};
        use std::io::Write;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let s: std::net::TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut c = AmqpReader { s, buf: Vec::new() };
        c.s.write_all(ringmq::protocol::amqp::frame::PROTOCOL_HEADER).unwrap();
        assert_eq!(c.method(), id::CONNECTION_START);
        c.put_method(0, id::CONNECTION_START_OK, |b| {
            b.put_u32(0);
            put_shortstr(b, "PLAIN");
            put_longstr(b, b"\0guest\0guest");
            put_shortstr(b, "en_US");
        });
        assert_eq!(c.method(), id::CONNECTION_TUNE);
        c.put_method(0, id::CONNECTION_TUNE_OK, |b| {
            b.put_u16(0);
            b.put_u32(131_072);
            b.put_u16(0);
        });
        c.put_method(0, id::CONNECTION_OPEN, |b| {
            put_shortstr(b, "/");
            put_shortstr(b, "");
            b.put_u8(0);
        });
        assert_eq!(c.method(), id::CONNECTION_OPEN_OK);
        c.put_method(1, id::CHANNEL_OPEN, |b| put_shortstr(b, ""));
        assert_eq!(c.method(), id::CHANNEL_OPEN_OK);
        c.put_method(1, id::BASIC_CONSUME, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, "stuck");
            b.put_u8(0b10); // no_ack
            b.put_u32(0);
        });
        assert_eq!(c.method(), id::BASIC_CONSUME_OK);
        c
    }
}

/// The hazard without the gate: an AMQP consumer with `no_ack` is acked as
/// its deliveries are encoded, so its prefetch never holds anything back.
/// It reads nothing while 10 MB are published: the broker holds about
/// `outbox_bytes_max` for it, the rest stays in the queue, and once it
/// reads it gets every message in order.
#[test]
fn an_amqp_no_ack_consumer_that_does_not_read_is_not_buffered_for() {
    let b = TestBroker::start_with(2, |c| {
        c.outbox_bytes_max = OUTBOX as u32;
        c.frame_bytes_max = 1 << 20;
        c.message_bytes_max = 64 << 10;
    });
    let queue = queue_on(1, 2, "stuck-amqp");
    let mut publisher = Raw::hello(b.shards[1]).0;
    publisher.declare(&queue);
    // AMQP connections land on either shard: both paths are the same code.
    let mut consumer = AmqpReader::consume_no_ack(b.amqp, &queue);
    let batches = 100; // 10,000 messages of 1 KiB
    publish_numbered(&mut publisher, &queue, 0, batches);
    let total = batches * BATCH;
    std::thread::sleep(Duration::from_millis(200));
    let largest = metric(&b, "ringmq_outbox_bytes_largest");
    let ready = metric(&b, "ringmq_messages_ready");
    eprintln!("AMQP no-ack consumer: outbox {largest} B, ready {ready} of {total}");
    assert!(largest <= OUTBOX_PEAK, "outbox holds {largest} bytes");
    assert!(ready > total / 2, "the messages stay in the queue: {ready} ready of {total}");

    let (mut next, mut resumed) = (0u64, false);
    while next < total {
        let (kind, payload) = consumer.frame();
        if kind == ringmq::protocol::amqp::frame::BODY {
            assert_eq!(body_seq(&payload), next, "AMQP delivery out of order");
            next += 1;
            // Until its owner resumes, a pause every 500: however much is
            // ready, a resume hands it no more than its room.
            if next % 500 == 0 && !resumed {
                std::thread::sleep(Duration::from_millis(100));
                let largest = metric(&b, "ringmq_outbox_bytes_largest");
                assert!(largest <= OUTBOX_PEAK, "after {next} read, the outbox holds {largest} bytes");
                resumed = metric(&b, "ringmq_messages_ready") < ready;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&b, "ringmq_messages_ready") > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    publisher.ping();
}

/// `dead_letter_batch_max`: 20,000 messages expire at once from a queue
/// whose dead letters go to a queue on the other shard. They leave 500 at
/// a time, the timer coming back for the rest, and every one arrives.
#[test]
fn a_mass_expiry_is_dead_lettered_in_bounded_batches_and_nothing_is_lost() {
    use ringmq::protocol::field_table::TableBuilder;
    let b = TestBroker::start_with(2, |c| c.dead_letter_batch_max = 500);
    let (source, dlq) = (queue_on(0, 2, "expiring"), queue_on(1, 2, "dlq"));
    let mut r = Raw::hello(b.shards[0]).0;
    r.declare(&dlq);
    let args = TableBuilder::new()
        .int("x-message-ttl", 100)
        .str("x-dead-letter-exchange", "")
        .str("x-dead-letter-routing-key", &dlq)
        .build();
    let rid = r.send(Cmd::Declare { flags: op::DECLARE_HAS_ARGS, queue: &source, args: &args });
    r.expect_ok(rid);
    publish_numbered(&mut r, &source, 0, 200);
    let total = 200 * BATCH;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&b, "ringmq_messages_dead_lettered_total") < total {
        assert!(Instant::now() < deadline, "dead letters did not all arrive");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&b, "ringmq_messages_dead_lettered_total"), total);
    assert_eq!(metric(&b, "ringmq_messages_dead_lettered_dropped_total"), 0);
    let (cid, mut got) = r.subscribe(&dlq, 65_535);
    let rest = total as usize - got.len();
    got.extend(r.expect_deliveries(cid, rest));
    for (i, d) in got.iter().enumerate() {
        assert_eq!(body_seq(&d.body), i as u64, "dead letter {i} out of order");
    }
    r.ping();
}
