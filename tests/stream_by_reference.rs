//! A stream's deliveries sent by reference (docs/streams.md, "The native
//! stream consumer"): entries of `BY_REF_BYTES_MIN` bytes or more go from
//! where the stream stores them to the socket in one vectored write, and
//! a stream consumer's unacked deliveries hold no reference to them.
//! Against the real broker over real sockets: bodies arrive whole and in
//! order around the size threshold, over the direct and the forwarded
//! path; acks out of order and in the middle give back exactly their
//! credit; a consumer that disconnects mid-batch leaves the stream whole;
//! a redelivered large message carries its flag.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{body_seq, seq_body, Raw, TestBroker};
use ringmq::protocol::field_table::TableBuilder;
use ringmq::protocol::{op, Cmd, ErrorCode, StreamAt};

const N: u64 = 400;

/// Sizes around the by-reference threshold (512), and large ones.
fn size(i: u64) -> usize {
    [16, 500, 511, 512, 513, 1024, 9000, 70_000][(i % 8) as usize]
}

fn body(i: u64) -> Vec<u8> {
    seq_body(i, size(i))
}

fn declare_stream(r: &mut Raw, queue: &str) {
    let args = TableBuilder::new().str("x-queue-type", "stream").build();
    let rid = r.send(Cmd::Declare { flags: op::DECLARE_DURABLE | op::DECLARE_HAS_ARGS, queue, args: &args });
    r.expect_ok(rid);
}

fn stream_subscribe(r: &mut Raw, queue: &str, prefetch: u32, at: StreamAt) -> u32 {
    let cid = r.consumer_id();
    let rid = r.send(Cmd::StreamSubscribe { consumer_id: cid, prefetch, queue, at, origin: false });
    r.expect_ok(rid);
    cid
}

/// A stream of `N` messages on shard 0, published in batches of 40.
fn filled(b: &TestBroker, name: &str) -> String {
    let q = common::queue_on(0, 2, name);
    let (mut p, _) = Raw::hello(b.native);
    declare_stream(&mut p, &q);
    for batch in 0..N / 40 {
        let bodies: Vec<Vec<u8>> = (batch * 40..(batch + 1) * 40).map(body).collect();
        p.publish_confirmed(&q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
    q
}

fn check_in_order(got: &[common::Delivered], from: u64) {
    for (k, d) in got.iter().enumerate() {
        let i = from + k as u64;
        assert_eq!(body_seq(&d.body), i, "message {i} in order");
        assert!(d.body == body(i), "body of message {i} ({} bytes) whole", size(i));
        assert!(!d.redelivered);
    }
}

/// The whole stream read by consumers on the stream's shard (direct, sent
/// by reference) and on the other shard (forwarded over the mesh), one of
/// them acking each batch backwards, one tag at a time.
#[test]
fn large_and_small_entries_arrive_whole_in_order_with_acks_out_of_order() {
    let b = TestBroker::start();
    let q = filled(&b, "byref");
    for shard in [0, 1] {
        let (mut c, _) = Raw::hello(b.shards[shard]);
        let cid = stream_subscribe(&mut c, &q, 64, StreamAt::First);
        let mut next = 0;
        while next < N {
            let want = (N - next).min(64) as usize;
            let got = c.expect_deliveries(cid, want);
            check_in_order(&got, next);
            for d in got.iter().rev() {
                c.ack(cid, &[(d.tag, d.tag)]);
            }
            next += want as u64;
        }
        c.expect_silence();
        // Every tag is acked: another ack of one is refused.
        c.ack(cid, &[(1, 1)]);
        c.expect_error(ErrorCode::UnknownDeliveryTag);
    }
}

/// Prefetch credit with acks as ranges: an ack of tags in the middle gives
/// back as many deliveries as it names, no more, and the stream goes on
/// from where the consumer was.
#[test]
fn acks_in_the_middle_give_back_exactly_their_credit() {
    let b = TestBroker::start();
    let q = filled(&b, "credit");
    let (mut c, _) = Raw::hello(b.shards[0]);
    let cid = stream_subscribe(&mut c, &q, 10, StreamAt::Offset(5));
    let first = c.expect_deliveries(cid, 10);
    check_in_order(&first, 5);
    c.expect_silence();
    c.ack(cid, &[(first[2].tag, first[5].tag)]);
    let more = c.expect_deliveries(cid, 4);
    check_in_order(&more, 15);
    c.expect_silence();
    c.ack(cid, &[(first[0].tag, first[1].tag), (first[6].tag, first[9].tag)]);
    let more = c.expect_deliveries(cid, 6);
    check_in_order(&more, 19);
    c.expect_silence();
    // A range over tags already acked is refused, and changes nothing.
    c.ack(cid, &[(first[4].tag, first[7].tag)]);
    c.expect_error(ErrorCode::UnknownDeliveryTag);
}

/// Consumers that go away with deliveries unacked and half-written (their
/// socket closed mid-batch) leave the stream and its other readers whole.
#[test]
fn a_consumer_disconnecting_mid_batch_leaves_the_stream_whole() {
    let b = TestBroker::start();
    let q = filled(&b, "leave");
    for _ in 0..3 {
        let (mut gone, _) = Raw::hello(b.shards[0]);
        let cid = stream_subscribe(&mut gone, &q, 300, StreamAt::First);
        gone.expect_at_least(cid, 1);
        drop(gone);
    }
    let (mut c, _) = Raw::hello(b.shards[0]);
    let cid = stream_subscribe(&mut c, &q, 1000, StreamAt::First);
    check_in_order(&c.expect_deliveries(cid, N as usize), 0);
    c.ping();
}

/// A classic queue's large messages take the same path: requeued, they
/// come back with the redelivered flag set (written before the stored
/// bytes, which are sent as they are).
#[test]
fn redelivered_large_messages_carry_their_flag() {
    let b = TestBroker::start();
    let q = common::queue_on(0, 2, "byref-classic");
    let (mut c, _) = Raw::hello(b.shards[0]);
    c.declare(&q);
    let bodies: Vec<Vec<u8>> = (0..6).map(body).collect();
    c.publish_confirmed(&q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let (cid, mut got) = c.subscribe(&q, 6);
    let rest = 6 - got.len();
    got.extend(c.expect_deliveries(cid, rest));
    assert!(got.iter().all(|d| !d.redelivered));
    c.nack(cid, true, &[(got[0].tag, got[5].tag)]);
    let again = c.expect_deliveries(cid, 6);
    for (k, d) in again.iter().enumerate() {
        assert!(d.redelivered, "message {k} redelivered");
        assert!(d.body == body(k as u64), "body of message {k} whole");
    }
    c.ack(cid, &[(again[0].tag, again[5].tag)]);
    c.ping();
}

/// A reader slower than the socket (a small receive buffer, and a pause
/// before it reads): the vectored writes fill the socket, wait for room
/// and go on mid-slice; every byte arrives, in order.
#[test]
fn a_full_socket_resumes_vectored_writes_where_they_stopped() {
    let b = TestBroker::start();
    let q = filled(&b, "slow");
    let mut c = Raw::connect_small_rcvbuf(b.shards[0], 4096);
    c.handshake();
    let cid = stream_subscribe(&mut c, &q, 1000, StreamAt::First);
    std::thread::sleep(std::time::Duration::from_millis(300));
    check_in_order(&c.expect_deliveries(cid, N as usize), 0);
    c.ping();
}
