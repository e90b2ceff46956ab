//! Every bad input of issue 2, point 8, and every configured limit, over
//! raw sockets: the exact error code, whether the connection is closed
//! (fatal) or still answers a Ping, and that connections opened before the
//! bad one (one per shard, each round-tripping through a queue of each
//! shard) still work afterwards.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::BytesMut;
use common::{queue_on, NoFrame, Raw, TestBroker, Witnesses, STEP};
use ringmq::protocol::{op, BatchWriter, Cmd, ErrorCode, VERSION};
use std::time::{Duration, Instant};

/// A 16-byte frame header, written out byte by byte as docs/protocol.md
/// lays it out.
fn header(opcode: u8, flags: u8, request_id: u64, body_len: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&body_len.to_le_bytes());
    h.push(opcode);
    h.push(flags);
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&request_id.to_le_bytes());
    h
}

/// A whole Publish frame (request id 9, CONFIRM) of `bodies` to `queue`.
fn publish_frame(queue: &str, bodies: &[&[u8]]) -> Vec<u8> {
    let mut b = BytesMut::new();
    let mut w = BatchWriter::begin_publish(&mut b, 9, op::PUBLISH_CONFIRM, queue);
    for body in bodies {
        w.push(&mut b, 0, &[], body);
    }
    w.finish(&mut b);
    b.to_vec()
}

fn hello_bytes(version: u16, user: &str, password: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    ringmq::protocol::Frame {
        request_id: 1,
        cmd: Cmd::Hello { version, user, password, heartbeat_ms: None, vhost: None },
    }
    .encode(&mut b);
    b.to_vec()
}

#[test]
fn garbage_bytes_are_fatal_bad_frame() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);

    // Before the handshake: an HTTP request (its "reserved" bytes are not 0).
    let mut r = Raw::connect(b.native);
    r.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (rid, _) = r.expect_error(ErrorCode::BadFrame);
    assert_eq!(rid, 0, "the request id of garbage cannot be trusted");
    r.expect_closed();

    // After the handshake: random-looking bytes.
    let (mut r, _) = Raw::hello(b.shards[0]);
    let junk: Vec<u8> = (0u32..64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1).collect();
    r.write(&junk);
    r.expect_error(ErrorCode::BadFrame);
    r.expect_closed();

    // A clean header with an unknown opcode.
    let (mut r, _) = Raw::hello(b.shards[1]);
    r.write(&header(0x7f, 0, 5, 0));
    r.expect_error(ErrorCode::BadFrame);
    r.expect_closed();

    // A known opcode with a flag it does not define.
    let (mut r, _) = Raw::hello(b.shards[0]);
    r.write(&header(op::PING, 0x80, 5, 0));
    r.expect_error(ErrorCode::BadFrame);
    r.expect_closed();

    // A Declare whose queue name is not UTF-8.
    let (mut r, _) = Raw::hello(b.shards[1]);
    let mut f = header(op::DECLARE, 0, 5, 3);
    f.extend_from_slice(&[2, 0xff, 0xfe]);
    r.write(&f);
    r.expect_error(ErrorCode::BadFrame);
    r.expect_closed();

    // A frame only the broker may send.
    let (mut r, _) = Raw::hello(b.shards[0]);
    r.send(Cmd::Confirm { count: 1 });
    r.expect_error(ErrorCode::BadFrame);
    r.expect_closed();

    w.check();
}

#[test]
fn frame_over_limit_is_refused_from_its_header() {
    let b = TestBroker::start_with(2, |c| {
        c.frame_bytes_max = 64 * 1024;
        c.message_bytes_max = 32 * 1024;
    });
    let mut w = Witnesses::open(&b);

    // A header claiming 1 GiB: the error comes before any body is sent.
    let (mut r, _) = Raw::hello(b.shards[0]);
    r.write(&header(op::PUBLISH, op::PUBLISH_CONFIRM, 3, 1 << 30));
    let (_, msg) = r.expect_error(ErrorCode::FrameTooLarge);
    assert!(msg.contains("65536"), "the error names the limit: {msg:?}");
    r.expect_closed();

    // One byte over the limit, header included.
    let (mut r, _) = Raw::hello(b.shards[1]);
    r.write(&header(op::PUBLISH, 0, 3, 64 * 1024 - 16 + 1));
    r.expect_error(ErrorCode::FrameTooLarge);
    r.expect_closed();

    // Before the handshake, too.
    let mut r = Raw::connect(b.native);
    r.write(&header(op::HELLO, 0, 1, u32::MAX));
    r.expect_error(ErrorCode::FrameTooLarge);
    r.expect_closed();

    // A frame of exactly frame_bytes_max is accepted, on both paths.
    for shard in 0..2 {
        let (mut r, _) = Raw::hello(b.shards[shard]);
        let q = queue_on(1 - shard as u32, 2, "limit-exact");
        r.declare(&q);
        // Body: str8 queue + u32 count + 2 entries of (1 + 4 + len).
        let fixed = 16 + 1 + q.len() + 4 + 2 * 5;
        let b1 = vec![b'a'; 32 * 1024];
        let b2 = vec![b'b'; 64 * 1024 - fixed - b1.len()];
        let f = publish_frame(&q, &[&b1, &b2]);
        assert_eq!(f.len(), 64 * 1024);
        r.write(&f);
        r.expect_confirm(9, 2);
        r.ping();
    }

    w.check();
}

#[test]
fn truncated_frame_then_eof_is_truncated_frame() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);

    for shard in 0..2 {
        let q = queue_on(1 - shard as u32, 2, "trunc");
        let (mut r, _) = Raw::hello(b.shards[shard]);
        r.declare(&q);
        let f = publish_frame(&q, &[b"one", b"two", b"three"]);
        r.write(&f[..f.len() - 4]);
        r.shutdown_write();
        let (rid, _) = r.expect_error(ErrorCode::TruncatedFrame);
        assert_eq!(rid, 0);
        r.expect_closed();

        // Nothing of the unfinished batch reached the queue.
        let (mut other, _) = Raw::hello(b.native);
        assert_eq!(other.declare(&q), 0, "a truncated publish stores nothing");
    }

    // A header cut short is truncated too.
    let (mut r, _) = Raw::hello(b.shards[0]);
    r.write(&header(op::PING, 0, 7, 0)[..7]);
    r.shutdown_write();
    r.expect_error(ErrorCode::TruncatedFrame);
    r.expect_closed();

    w.check();
}

#[test]
fn stalled_frame_times_out() {
    let b = TestBroker::start_with(2, |c| {
        c.frame_timeout_ms = 300;
        c.handshake_timeout_ms = 300;
    });
    let mut w = Witnesses::open(&b);

    // Part of a frame, then nothing.
    let (mut r, _) = Raw::hello(b.shards[1]);
    let q = queue_on(0, 2, "stall");
    r.declare(&q);
    let f = publish_frame(&q, &[b"never finished"]);
    let started = Instant::now();
    r.write(&f[..20]);
    let (rid, _) = r.expect_error(ErrorCode::FrameTimeout);
    let waited = started.elapsed();
    assert_eq!(rid, 0);
    assert!(waited >= Duration::from_millis(250), "timed out after {waited:?}, before frame_timeout_ms");
    r.expect_closed();

    // A handshaken connection that sends nothing at all is not timed out.
    let (mut idle, _) = Raw::hello(b.shards[0]);
    match idle.try_recv(Duration::from_millis(800)) {
        Err(NoFrame::Timeout) => {}
        other => panic!("an idle connection between frames must stay open, got {other:?}"),
    }
    idle.ping();

    // No Hello within handshake_timeout_ms.
    let mut r = Raw::connect(b.native);
    r.expect_error(ErrorCode::HandshakeTimeout);
    r.expect_closed();

    w.check();
}

#[test]
fn unknown_queue_is_refused_and_connection_stays_usable() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);
    // On shard 0: one queue is local (direct), the other forwarded.
    let (mut r, shard) = Raw::hello(b.shards[0]);
    assert_eq!(shard, 0);
    for owner in 0..2 {
        let q = queue_on(owner, 2, "nope");
        let not_found = |r: &mut Raw, rid: u64| {
            let (got, msg) = r.expect_error(ErrorCode::QueueNotFound);
            assert_eq!(got, rid, "the error answers the request");
            assert!(msg.contains(&q), "the error names the queue: {msg:?}");
        };
        let rid = r.publish(&q, &[b"x"], true);
        not_found(&mut r, rid);
        let rid = r.publish(&q, &[b"x"], false);
        not_found(&mut r, rid);
        let rid = r.send(Cmd::Subscribe { consumer_id: 77, prefetch: 10, queue: &q, priority: 0, origin: false });
        not_found(&mut r, rid);
        let rid = r.send(Cmd::Get { no_ack: false, consumer_id: 78 + 10 * owner, queue: &q });
        not_found(&mut r, rid);
        let rid = r.send(Cmd::Get { no_ack: true, consumer_id: 79 + 10 * owner, queue: &q });
        not_found(&mut r, rid);
        let rid = r.send(Cmd::Purge { queue: &q });
        not_found(&mut r, rid);
        // Deleting a queue that is not there succeeds with 0, as RabbitMQ.
        let rid = r.send(Cmd::Delete { flags: 0, queue: &q });
        assert_eq!(r.expect_ok(rid), 0);
        let rid = r.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: &q, args: &[] });
        not_found(&mut r, rid);
        r.ping();

        // Still usable, and the refused Subscribe did not keep its id.
        assert_eq!(r.declare(&q), 0);
        r.publish_confirmed(&q, &[b"after"]);
        let rid = r.send(Cmd::Subscribe { consumer_id: 77, prefetch: 10, queue: &q, priority: 0, origin: false });
        let mut got = Vec::new();
        loop {
            let f = r.recv();
            match f.frame().cmd {
                Cmd::Ok { .. } if f.request_id() == rid => break,
                Cmd::Deliver { .. } => got.extend(common::deliveries(&f)),
                other => panic!("expected Ok for the Subscribe, got {other:?}"),
            }
        }
        if got.is_empty() {
            got = r.expect_deliveries(77, 1);
        }
        assert_eq!(got[0].body, b"after");
        r.ack(77, &[(1, 1)]);
        let rid = r.send(Cmd::Unsubscribe { consumer_id: 77 });
        r.expect_ok(rid);
        r.round_trip(&queue_on(owner, 2, "nope-rt"));
    }
    w.check();
}

/// A Get refused because its queue does not exist registers nothing: its
/// consumer id stays free for another queue (docs/protocol.md: only an id
/// that belongs to a subscription or to a pull consumer of another queue
/// is refused with 22), and it does not count against
/// consumers_per_connection_max.
#[test]
fn refused_get_keeps_no_consumer_id() {
    let b = TestBroker::start_with(2, |c| c.consumers_per_connection_max = 4);
    let mut w = Witnesses::open(&b);
    let (mut r, _) = Raw::hello(b.shards[0]);
    for owner in 0..2 {
        let missing = queue_on(owner, 2, "missing");
        let present = queue_on(owner, 2, "present");
        r.declare(&present);
        r.publish_confirmed(&present, &[b"p"]);
        // More refused Gets than the connection may hold consumers.
        let base = 100 * owner;
        for id in base + 1..=base + 8 {
            let rid = r.send(Cmd::Get { no_ack: false, consumer_id: id, queue: &missing });
            assert_eq!(r.expect_error(ErrorCode::QueueNotFound).0, rid);
        }
        // This id was refused above, so it is free for another queue.
        let rid = r.send(Cmd::Get { no_ack: false, consumer_id: base + 1, queue: &present });
        match r.recv().frame() {
            ringmq::protocol::Frame { request_id, cmd: Cmd::GetOk { tag, .. } } if request_id == rid => {
                assert_eq!(tag, 1)
            }
            other => panic!("expected GetOk, got {other:?}"),
        }
        r.ack(base + 1, &[(1, 1)]);
        let rid = r.send(Cmd::Delete { flags: op::DELETE_IF_EMPTY, queue: &present });
        assert_eq!(r.expect_ok(rid), 0);
    }
    r.ping();
    w.check();
}

#[test]
fn second_handshake_is_refused_but_not_fatal() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);
    for shard in 0..2 {
        let (mut r, _) = Raw::hello(b.shards[shard]);
        let rid =
            r.send(Cmd::Hello { version: VERSION, user: "guest", password: "guest", heartbeat_ms: None, vhost: None });
        let (got, _) = r.expect_error(ErrorCode::AlreadyHandshaken);
        assert_eq!(got, rid);
        // Even with credentials that would fail, a second Hello is only refused.
        let rid =
            r.send(Cmd::Hello { version: VERSION, user: "guest", password: "wrong", heartbeat_ms: None, vhost: None });
        let (got, _) = r.expect_error(ErrorCode::AlreadyHandshaken);
        assert_eq!(got, rid);
        r.ping();
        r.round_trip(&queue_on(0, 2, "rehello"));
        r.round_trip(&queue_on(1, 2, "rehello"));
    }
    w.check();
}

#[test]
fn unknown_delivery_tag_is_refused_and_changes_nothing() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);
    let (mut r, _) = Raw::hello(b.shards[1]);
    for owner in 0..2 {
        // Owner 1 is direct for this connection, owner 0 forwarded.
        let q = queue_on(owner, 2, "tags");
        r.declare(&q);
        r.publish_confirmed(&q, &[b"t1", b"t2"]);
        let (cid, mut got) = r.subscribe(&q, 10);
        let rest = 2 - got.len();
        got.extend(r.expect_deliveries(cid, rest));
        assert_eq!(got.iter().map(|d| d.tag).collect::<Vec<_>>(), [1, 2]);

        let refused = |r: &mut Raw, rid: u64| {
            let (got, _) = r.expect_error(ErrorCode::UnknownDeliveryTag);
            assert_eq!(got, rid);
        };
        // Never delivered.
        let rid = r.ack(cid, &[(5, 5)]);
        refused(&mut r, rid);
        // One good range and one bad: refused whole, tag 1 stays unacked.
        let rid = r.ack(cid, &[(1, 1), (9, 9)]);
        refused(&mut r, rid);
        let rid = r.nack(cid, true, &[(3, 3)]);
        refused(&mut r, rid);
        let rid = r.nack(cid, false, &[(1, 4)]);
        refused(&mut r, rid);
        // Tag 1 is still unacked: this ack works (no reply), twice does not.
        r.ack(cid, &[(1, 1)]);
        let rid = r.ack(cid, &[(1, 1)]);
        refused(&mut r, rid);
        // An unknown consumer id.
        let rid = r.ack(cid + 100, &[(1, 1)]);
        let (got, _) = r.expect_error(ErrorCode::UnknownConsumer);
        assert_eq!(got, rid);
        r.ping();

        r.ack(cid, &[(2, 2)]);
        let rid = r.send(Cmd::Unsubscribe { consumer_id: cid });
        r.expect_ok(rid);
        let rid = r.send(Cmd::Delete { flags: op::DELETE_IF_EMPTY, queue: &q });
        assert_eq!(r.expect_ok(rid), 0, "both messages were acked exactly once");
        r.round_trip(&queue_on(owner, 2, "tags-rt"));
    }
    w.check();
}

#[test]
fn request_before_handshake_is_fatal() {
    let b = TestBroker::start();
    let mut w = Witnesses::open(&b);

    let mut r = Raw::connect(b.native);
    r.send(Cmd::Ping);
    r.expect_error(ErrorCode::HandshakeRequired);
    r.expect_closed();

    let mut r = Raw::connect(b.shards[1]);
    r.send(Cmd::Declare { flags: 0, queue: "early", args: &[] });
    r.expect_error(ErrorCode::HandshakeRequired);
    r.expect_closed();

    let mut r = Raw::connect(b.shards[0]);
    let bodies: [&[u8]; 1] = [b"early"];
    r.publish("early", &bodies, true);
    r.expect_error(ErrorCode::HandshakeRequired);
    r.expect_closed();

    w.check();
}

#[test]
fn bad_credentials_and_version_are_fatal() {
    let b = TestBroker::start_with(2, |c| {
        c.users = vec![ringmq::auth::UserSeed::new("alice", "s3cret", &[])];
    });
    // The witnesses need the configured user.
    let witness = |addr| {
        let mut r = Raw::connect(addr);
        r.write(&hello_bytes(VERSION, "alice", "s3cret"));
        match r.recv().frame().cmd {
            Cmd::HelloOk(_) => {}
            other => panic!("expected HelloOk, got {other:?}"),
        }
        r
    };
    let mut w0 = witness(b.shards[0]);
    let mut w1 = witness(b.shards[1]);

    for (user, password) in [("alice", "wrong"), ("guest", "guest"), ("", ""), ("alice", "")] {
        let mut r = Raw::connect(b.native);
        r.write(&hello_bytes(VERSION, user, password));
        let (rid, _) = r.expect_error(ErrorCode::AuthFailed);
        assert_eq!(rid, 0);
        r.expect_closed();
    }

    let mut r = Raw::connect(b.native);
    r.write(&hello_bytes(VERSION + 1, "alice", "s3cret"));
    r.expect_error(ErrorCode::VersionUnsupported);
    r.expect_closed();

    for w in [&mut w0, &mut w1] {
        w.ping();
        w.round_trip(&queue_on(0, 2, "creds"));
        w.round_trip(&queue_on(1, 2, "creds"));
    }
}

#[test]
fn message_over_limit_is_refused_whole_batch() {
    let b = TestBroker::start_with(2, |c| c.message_bytes_max = 1024);
    let mut w = Witnesses::open(&b);
    let (mut r, _) = Raw::hello(b.shards[0]);
    for owner in 0..2 {
        let q = queue_on(owner, 2, "big");
        r.declare(&q);
        let big = vec![b'x'; 1025];
        let exact = vec![b'y'; 1024];

        let rid = r.publish(&q, &[b"small", &big], true);
        let (got, msg) = r.expect_error(ErrorCode::MessageTooLarge);
        assert_eq!(got, rid);
        assert!(msg.contains("1024"), "the error names the limit: {msg:?}");
        // Without CONFIRM the refusal is still reported.
        let rid = r.publish(&q, &[&big], false);
        assert_eq!(r.expect_error(ErrorCode::MessageTooLarge).0, rid);
        // Properties count too: 24 + 1001 > 1024.
        let rid = r.rid();
        let mut buf = BytesMut::new();
        let mut bw = BatchWriter::begin_publish(&mut buf, rid, op::PUBLISH_CONFIRM, &q);
        bw.push(&mut buf, 0, &[b'p'; 24], &[b'b'; 1001]);
        bw.finish(&mut buf);
        r.write(&buf);
        assert_eq!(r.expect_error(ErrorCode::MessageTooLarge).0, rid);
        r.ping();

        // Exactly message_bytes_max is fine.
        r.publish_confirmed(&q, &[&exact]);
        assert_eq!(r.declare(&q), 1, "refused batches stored nothing");
        let rid = r.send(Cmd::Purge { queue: &q });
        assert_eq!(r.expect_ok(rid), 1);
        r.round_trip(&queue_on(owner, 2, "big-rt"));
    }
    w.check();
}

#[test]
fn prefetch_out_of_range_is_refused() {
    let b = TestBroker::start_with(2, |c| c.prefetch_max = 100);
    let mut w = Witnesses::open(&b);
    let (mut r, _) = Raw::hello(b.shards[1]);
    for owner in 0..2 {
        let q = queue_on(owner, 2, "pf");
        r.declare(&q);
        for prefetch in [0, 101, u32::MAX] {
            let rid = r.send(Cmd::Subscribe { consumer_id: 5, prefetch, queue: &q, priority: 0, origin: false });
            let (got, _) = r.expect_error(ErrorCode::PrefetchOutOfRange);
            assert_eq!(got, rid);
        }
        r.ping();
        // The refused id is free, and prefetch_max itself is allowed.
        let rid = r.send(Cmd::Subscribe { consumer_id: 5, prefetch: 100, queue: &q, priority: 0, origin: false });
        r.expect_ok(rid);
        let rid = r.send(Cmd::Unsubscribe { consumer_id: 5 });
        r.expect_ok(rid);
        r.round_trip(&queue_on(owner, 2, "pf-rt"));
    }
    w.check();
}

#[test]
fn connection_limit_refuses_extra_connections() {
    let b = TestBroker::start_with(1, |c| c.connections_per_shard_max = 1);
    let mut w = Witnesses::open(&b);

    for addr in [b.native, b.shards[0]] {
        // The limit applies at login: connections before it count under
        // unauthenticated_connections_max instead.
        let mut r = Raw::connect(addr);
        r.send(Cmd::Hello { version: VERSION, user: "guest", password: "guest", heartbeat_ms: None, vhost: None });
        let (_, msg) = r.expect_error(ErrorCode::ConnectionLimit);
        assert!(msg.contains("connections_per_shard_max"), "{msg:?}");
        r.expect_closed();
    }
    w.check();

    // Once the first connection goes, its slot is free again.
    drop(w);
    let deadline = Instant::now() + STEP;
    loop {
        let mut r = Raw::connect(b.native);
        r.send(Cmd::Hello { version: VERSION, user: "guest", password: "guest", heartbeat_ms: None, vhost: None });
        match r.recv().frame().cmd {
            Cmd::HelloOk(_) => {
                r.round_trip("after-limit");
                break;
            }
            Cmd::Error { code: 30, .. } if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("expected the freed slot to be usable, got {other:?}"),
        }
    }
}

#[test]
fn other_limits_are_enforced() {
    let b = TestBroker::start_with(1, |c| {
        c.queues_per_shard_max = 2;
        c.consumers_per_connection_max = 2;
        c.queue_messages_max = 5;
    });
    let mut w = Witnesses::open(&b);
    let (mut r, _) = Raw::hello(b.native);

    // Queue names.
    for bad in ["", "a\nb", "tab\there"] {
        let rid = r.send(Cmd::Declare { flags: 0, queue: bad, args: &[] });
        assert_eq!(r.expect_error(ErrorCode::BadQueueName).0, rid);
    }

    // queue_messages_max: a batch that would pass it is refused whole.
    r.declare("full");
    let five: [&[u8]; 5] = [b"1", b"2", b"3", b"4", b"5"];
    let rid = r.publish("full", &[b"0", b"1", b"2", b"3", b"4", b"5"], true);
    assert_eq!(r.expect_error(ErrorCode::QueueFull).0, rid);
    r.publish_confirmed("full", &five);
    let rid = r.publish("full", &[b"6"], true);
    assert_eq!(r.expect_error(ErrorCode::QueueFull).0, rid);

    // consumers_per_connection_max (on an empty queue: no deliveries).
    r.declare("empty");
    for cid in [1, 2] {
        let rid = r.send(Cmd::Subscribe { consumer_id: cid, prefetch: 1, queue: "empty", priority: 0, origin: false });
        r.expect_ok(rid);
    }
    let rid = r.send(Cmd::Subscribe { consumer_id: 3, prefetch: 1, queue: "empty", priority: 0, origin: false });
    assert_eq!(r.expect_error(ErrorCode::ConsumerLimit).0, rid);
    let rid = r.send(Cmd::Unsubscribe { consumer_id: 2 });
    r.expect_ok(rid);
    let rid = r.send(Cmd::Subscribe { consumer_id: 1, prefetch: 1, queue: "empty", priority: 0, origin: false });
    assert_eq!(r.expect_error(ErrorCode::ConsumerExists).0, rid);
    let rid = r.send(Cmd::Unsubscribe { consumer_id: 9 });
    assert_eq!(r.expect_error(ErrorCode::UnknownConsumer).0, rid);

    // queues_per_shard_max: "full" and "empty" fill the shard.
    let rid = r.send(Cmd::Declare { flags: 0, queue: "third", args: &[] });
    assert_eq!(r.expect_error(ErrorCode::QueueLimit).0, rid);
    r.ping();
    // Make room for the witnesses' round trips (one queue at a time).
    let rid = r.send(Cmd::Delete { flags: 0, queue: "full" });
    assert_eq!(r.expect_ok(rid), 5);
    w.check();
}
