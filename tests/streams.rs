//! Streams (`x-queue-type: stream`, docs/streams.md) against the real
//! broker: pika for RabbitMQ's AMQP side (tests/pika/streams.py), and a
//! `kill -9` restart of `ringmq serve` for durability.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use common::TestBroker;
use std::time::Duration;

const SCRIPT: Duration = Duration::from_secs(90);

fn mode(b: &TestBroker, mode: &str) {
    run("streams.py", b.amqp, &[("MODE", mode)], SCRIPT).assert_ok(mode);
}

#[test]
fn pika_stream_basics() {
    mode(&TestBroker::start(), "basics");
}

#[test]
fn pika_stream_retention() {
    mode(&TestBroker::start(), "retention");
}

/// Confirmed stream messages survive `kill -9` of `ringmq serve` (a
/// confirm means fdatasync'ed), on both shards, with their offsets; the
/// offsets go on from there after the restart.
#[test]
fn stream_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let queues = [common::queue_on(0, 2, "stream-crash"), common::queue_on(1, 2, "stream-crash")];
    let amqp = |line: &str| -> std::net::SocketAddr { common::process::field(line, "amqp").parse().unwrap() };
    let (mut child, line) = common::process::serve(&data, &[]);
    for q in &queues {
        let env = [("MODE", "publish"), ("QUEUE", q.as_str()), ("COUNT", "300")];
        run("streams.py", amqp(&line), &env, SCRIPT).assert_ok("publish");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, line) = common::process::serve(&data, &[]);
    for q in &queues {
        let env = [("MODE", "check"), ("QUEUE", q.as_str()), ("COUNT", "300")];
        run("streams.py", amqp(&line), &env, SCRIPT).assert_ok("check after kill -9");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What retention dropped stays dropped across a restart (it is logged as
/// a purge), and what it kept comes back whole.
#[test]
fn retention_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = common::queue_on(1, 2, "stream-retained");
    let amqp = |line: &str| -> std::net::SocketAddr { common::process::field(line, "amqp").parse().unwrap() };
    let (mut child, line) = common::process::serve(&data, &[]);
    let out = run("streams.py", amqp(&line), &[("MODE", "publish_retained"), ("QUEUE", q.as_str())], SCRIPT);
    out.assert_ok("publish with retention");
    let first = out.stdout.lines().find_map(|l| l.strip_prefix("FIRST=")).unwrap().to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, line) = common::process::serve(&data, &[]);
    let env = [("MODE", "check_retained"), ("QUEUE", q.as_str()), ("FIRST", first.as_str())];
    run("streams.py", amqp(&line), &env, SCRIPT).assert_ok("check after kill -9");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Declares a durable stream over the native protocol.
fn declare_stream(r: &mut common::Raw, queue: &str, args: ringmq::protocol::field_table::TableBuilder) {
    use ringmq::protocol::{op, Cmd};
    let args = args.str("x-queue-type", "stream").build();
    let rid = r.send(Cmd::Declare { flags: op::DECLARE_DURABLE | op::DECLARE_HAS_ARGS, queue, args: &args });
    r.expect_ok(rid);
}

fn stream_subscribe(r: &mut common::Raw, queue: &str, prefetch: u32, at: ringmq::protocol::StreamAt) -> u32 {
    let cid = r.consumer_id();
    let rid = r.send(ringmq::protocol::Cmd::StreamSubscribe { consumer_id: cid, prefetch, queue, at, origin: false });
    r.expect_ok(rid);
    cid
}

/// The native stream consumer (`StreamSubscribe`, opcode 0x35): from an
/// offset, in Deliver batches up to its credit; acks move the credit only;
/// a second consumer reads the same messages; hostile input is refused
/// with a clear error.
#[test]
fn native_stream_consumer() {
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::{op, Cmd, ErrorCode, StreamAt};
    let b = TestBroker::start();
    let (mut r, _) = common::Raw::hello(b.native);
    let q = common::queue_on(1, 2, "native-stream");
    declare_stream(&mut r, &q, TableBuilder::new());
    let bodies: Vec<Vec<u8>> = (0..100).map(|i| format!("n{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    r.publish_confirmed(&q, &refs[..60]);
    r.publish_confirmed(&q, &refs[60..]);

    let (mut c, _) = common::Raw::hello(b.native);
    let cid = stream_subscribe(&mut c, &q, 25, StreamAt::Offset(40));
    let got = c.expect_deliveries(cid, 25);
    assert_eq!(got.iter().map(|d| d.body.clone()).collect::<Vec<_>>(), bodies[40..65].to_vec());
    assert!(got.iter().all(|d| !d.redelivered));
    c.expect_silence();
    // An ack gives the credit back: the next 25.
    c.ack(cid, &[(got[0].tag, got[24].tag)]);
    let more = c.expect_deliveries(cid, 25);
    assert_eq!(more[0].body, b"n65");
    // A second consumer from the first: the same messages, all still there.
    let cid2 = stream_subscribe(&mut c, &q, 1000, StreamAt::First);
    let all = c.expect_at_least(cid2, 100);
    assert_eq!(all.iter().filter(|d| d.consumer_id == cid2).count(), 100);
    // Past the end: waits for what comes next.
    let (mut w, _) = common::Raw::hello(b.native);
    let cid3 = stream_subscribe(&mut w, &q, 10, StreamAt::Offset(u64::MAX));
    w.expect_silence();
    r.publish_confirmed(&q, &[b"late"]);
    assert_eq!(w.expect_deliveries(cid3, 1)[0].body, b"late");
    let cid4 = stream_subscribe(&mut w, &q, 10, StreamAt::Last);
    assert_eq!(w.expect_deliveries(cid4, 1)[0].body, b"late");

    // Get and purge: refused, the connection goes on.
    let rid = w.send(Cmd::Get { no_ack: false, consumer_id: 99, queue: &q });
    assert_eq!(w.expect_error(ErrorCode::StreamUnsupported).0, rid);
    let rid = w.send(Cmd::Purge { queue: &q });
    assert_eq!(w.expect_error(ErrorCode::StreamUnsupported).0, rid);
    // No prefetch, or a huge one: refused as for any consumer.
    let cid = w.consumer_id();
    w.send(Cmd::StreamSubscribe { consumer_id: cid, prefetch: 0, queue: &q, at: StreamAt::First, origin: false });
    w.expect_error(ErrorCode::PrefetchOutOfRange);
    let cid = w.consumer_id();
    w.send(Cmd::StreamSubscribe {
        consumer_id: cid,
        prefetch: u32::MAX,
        queue: &q,
        at: StreamAt::First,
        origin: false,
    });
    w.expect_error(ErrorCode::PrefetchOutOfRange);
    w.ping();
    // A position kind that does not exist: a malformed frame, fatal.
    let mut bytes = bytes::BytesMut::new();
    ringmq::protocol::Frame {
        request_id: 7,
        cmd: Cmd::StreamSubscribe { consumer_id: 1, prefetch: 1, queue: &q, at: StreamAt::First, origin: false },
    }
    .encode(&mut bytes);
    let n = bytes.len();
    bytes[n - 9] = 9;
    let (mut bad, _) = common::Raw::hello(b.native);
    bad.write(&bytes);
    bad.expect_error(ErrorCode::BadFrame);
    bad.expect_closed();
    assert_eq!(op::STREAM_SUBSCRIBE, 0x35);
}

fn store_offset(r: &mut common::Raw, queue: &str, reference: &str, offset: u64) -> u64 {
    r.send(ringmq::protocol::Cmd::StoreOffset { queue, reference, offset })
}

fn query_offset(r: &mut common::Raw, queue: &str, reference: &str) -> u64 {
    let rid = r.send(ringmq::protocol::Cmd::QueryOffset { queue, reference });
    r.expect_ok(rid)
}

/// Server-side offset tracking (`StoreOffset` 0x36, `QueryOffset` 0x37):
/// the latest offset per reference, stored before the Ok, kept across
/// `kill -9`; bad input refused with a clear, non-fatal error.
#[test]
fn offsets_are_tracked_server_side_across_kill_9() {
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = common::queue_on(1, 2, "tracked");
    let native = |line: &str| -> std::net::SocketAddr { common::process::field(line, "native").parse().unwrap() };
    let (mut child, line) = common::process::serve(&data, &[]);
    let (mut r, _) = common::Raw::hello(native(&line));
    declare_stream(&mut r, &q, TableBuilder::new());
    r.publish_confirmed(&q, &[b"a", b"b", b"c", b"d"]);
    for (reference, offset) in [("billing", 1), ("audit", 3), ("billing", 2)] {
        let rid = store_offset(&mut r, &q, reference, offset);
        assert_eq!(r.expect_ok(rid), offset);
    }
    assert_eq!(query_offset(&mut r, &q, "billing"), 2);
    r.send(ringmq::protocol::Cmd::QueryOffset { queue: &q, reference: "nobody" });
    r.expect_error(ErrorCode::OffsetNotFound);
    // Hostile or wrong: each refused, the connection goes on.
    store_offset(&mut r, &q, "", 1);
    r.expect_error(ErrorCode::InvalidArgument);
    store_offset(&mut r, &q, "x", u64::MAX);
    r.expect_error(ErrorCode::InvalidArgument);
    r.declare("classic-tracked");
    store_offset(&mut r, "classic-tracked", "x", 1);
    r.expect_error(ErrorCode::InvalidArgument);
    store_offset(&mut r, "missing", "x", 1);
    r.expect_error(ErrorCode::QueueNotFound);
    r.ping();
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, line) = common::process::serve(&data, &[]);
    let (mut r, _) = common::Raw::hello(native(&line));
    assert_eq!(query_offset(&mut r, &q, "billing"), 2);
    assert_eq!(query_offset(&mut r, &q, "audit"), 3);
    // A consumer resumes after its stored offset.
    let cid = stream_subscribe(&mut r, &q, 10, ringmq::protocol::StreamAt::Offset(3));
    assert_eq!(r.expect_deliveries(cid, 1)[0].body, b"d");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `stream_offset_refs_max` bounds the references one stream stores.
#[test]
fn offset_references_are_bounded() {
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::ErrorCode;
    let b = TestBroker::start_with(2, |c| c.stream_offset_refs_max = 2);
    let (mut r, _) = common::Raw::hello(b.native);
    let q = common::queue_on(0, 2, "bounded-refs");
    declare_stream(&mut r, &q, TableBuilder::new());
    for reference in ["a", "b", "a"] {
        let rid = store_offset(&mut r, &q, reference, 0);
        r.expect_ok(rid);
    }
    store_offset(&mut r, &q, "c", 0);
    let (_, why) = r.expect_error(ErrorCode::InvalidArgument);
    assert!(why.contains("stream_offset_refs_max"), "{why}");
}

/// The client library's stream consumer (`ConsumerOptions::stream_at`):
/// two consumers on one stream, each from its own position.
#[test]
fn client_reads_a_stream_from_its_own_position() {
    use futures_lite::StreamExt;
    use ringmq::client::{Client, ClientOptions, ConsumerOptions, ProducerOptions};
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::StreamAt;
    let b = TestBroker::start();
    let url = b.url();
    let q = common::queue_on(0, 2, "client-stream");
    common::run_local(Duration::from_secs(30), move || async move {
        let client = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        client.declare_with(&q, true, &TableBuilder::new().str("x-queue-type", "stream").build()).await.unwrap();
        let p = client.producer(&q, ProducerOptions::default()).await.unwrap();
        let mut pending = Vec::new();
        for i in 0..50u32 {
            pending.push(p.publish(format!("c{i}").as_bytes()).await.unwrap());
        }
        p.flush().unwrap();
        for c in pending {
            c.await.unwrap();
        }
        for (at, first) in [(StreamAt::First, 0), (StreamAt::Offset(30), 30)] {
            let mut c = client.subscribe_with(&q, ConsumerOptions::new(7).stream_at(at)).await.unwrap();
            for i in first..50u32 {
                let d = c.next().await.unwrap().unwrap();
                assert_eq!(d.body.as_ref(), format!("c{i}").as_bytes());
                c.ack(d.tag);
            }
        }
        client.close().await;
    });
}

/// Append times are logged per chunk (record type 16): after `kill -9` a
/// timestamp offset, `last` and `x-max-age` see the times the messages
/// were appended, not the restart. Batches: a (3) at t0, b (2) 4 s later,
/// then c (2) and d (2) 300 ms after that; `x-max-age` 5 s, one message
/// per retention segment; the restart comes once `a` is past 5 s old.
#[test]
fn append_times_survive_kill_9() {
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::StreamAt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = common::queue_on(1, 2, "timed");
    let native = |line: &str| -> std::net::SocketAddr { common::process::field(line, "native").parse().unwrap() };
    let wall_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let (mut child, line) = common::process::serve(&data, &[]);
    let (mut r, _) = common::Raw::hello(native(&line));
    let args = TableBuilder::new().str("x-max-age", "5s").int("x-stream-max-segment-size-bytes", 1);
    declare_stream(&mut r, &q, args);
    let t0 = std::time::Instant::now();
    r.publish_confirmed(&q, &[b"a0", b"a1", b"a2"]);
    std::thread::sleep(Duration::from_secs(4));
    r.publish_confirmed(&q, &[b"b0", b"b1"]);
    std::thread::sleep(Duration::from_millis(300));
    let at_c = wall_ms();
    std::thread::sleep(Duration::from_millis(20));
    r.publish_confirmed(&q, &[b"c0", b"c1"]);
    r.publish_confirmed(&q, &[b"d0", b"d1"]);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(6000).saturating_sub(t0.elapsed()));

    let (mut child, line) = common::process::serve(&data, &[]);
    let (mut r, _) = common::Raw::hello(native(&line));
    let first_body = |r: &mut common::Raw, at| {
        let cid = stream_subscribe(r, &q, 1, at);
        r.expect_deliveries(cid, 1)[0].body.clone()
    };
    // `a` aged out at the recovery; `b` is 2 s old and kept.
    assert_eq!(first_body(&mut r, StreamAt::First), b"b0");
    assert_eq!(first_body(&mut r, StreamAt::Timestamp(at_c)), b"c0");
    assert_eq!(first_body(&mut r, StreamAt::Last), b"d0");
    assert_eq!(first_body(&mut r, StreamAt::Offset(0)), b"b0");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The offset-tracking calls of the clients (`client::streams`): a
/// consumer reads, stores where it is, and a new one resumes after it.
fn stream_with_ten(b: &TestBroker, q: &str) {
    use ringmq::protocol::field_table::TableBuilder;
    let (mut r, _) = common::Raw::hello(b.native);
    declare_stream(&mut r, q, TableBuilder::new());
    let bodies: Vec<Vec<u8>> = (0..10).map(|i| format!("m{i}").into_bytes()).collect();
    r.publish_confirmed(q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn glommio_client_tracks_offsets() {
    use futures_lite::StreamExt;
    use ringmq::client::{Client, ClientError, ClientOptions};
    use ringmq::protocol::StreamAt;
    let b = TestBroker::start();
    let url = b.url();
    let q = common::queue_on(1, 2, "glommio-tracked");
    stream_with_ten(&b, &q);
    common::run_local(Duration::from_secs(30), move || async move {
        let client = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        let mut c = client.stream_subscribe(&q, StreamAt::First, 5).await.unwrap();
        for i in 0..5 {
            let d = c.next().await.unwrap().unwrap();
            assert_eq!(d.body.as_ref(), format!("m{i}").as_bytes());
            c.ack(d.tag);
        }
        assert_eq!(client.query_offset(&q, "reader").await.unwrap(), None);
        client.store_offset(&q, "reader", 4).await.unwrap();
        assert_eq!(client.query_offset(&q, "reader").await.unwrap(), Some(4));
        assert!(matches!(client.store_offset(&q, "", 1).await, Err(ClientError::Invalid(_))));
        assert!(matches!(client.store_offset(&q, &"r".repeat(256), 1).await, Err(ClientError::Invalid(_))));
        assert!(matches!(client.store_offset(&q, "reader", u64::MAX).await, Err(ClientError::Invalid(_))));
        let e = client.store_offset("no-such-stream", "reader", 1).await.unwrap_err();
        assert_eq!(e.code(), Some(ringmq::protocol::ErrorCode::QueueNotFound));
        let from = client.query_offset(&q, "reader").await.unwrap().unwrap() + 1;
        let mut c = client.stream_subscribe(&q, StreamAt::Offset(from), 5).await.unwrap();
        assert_eq!(c.next().await.unwrap().unwrap().body.as_ref(), b"m5");
        client.close().await;
    });
}

#[test]
fn tokio_client_tracks_offsets() {
    use futures_lite::StreamExt;
    use ringmq::client::tokio::Client;
    use ringmq::client::{ClientError, ClientOptions};
    use ringmq::protocol::StreamAt;
    let b = TestBroker::start();
    let url = b.url();
    let q = common::queue_on(0, 2, "tokio-tracked");
    stream_with_ten(&b, &q);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let work = async move {
            let client = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
            let mut c = client.stream_subscribe(&q, StreamAt::Offset(3), 5).await.unwrap();
            let d = c.next().await.unwrap().unwrap();
            assert_eq!(d.body.as_ref(), b"m3");
            assert_eq!(client.query_offset(&q, "t").await.unwrap(), None);
            client.store_offset(&q, "t", 3).await.unwrap();
            client.store_offset(&q, "t", 7).await.unwrap();
            assert_eq!(client.query_offset(&q, "t").await.unwrap(), Some(7));
            assert!(matches!(client.query_offset(&q, "").await, Err(ClientError::Invalid(_))));
            let mut c = client.stream_subscribe(&q, StreamAt::Last, 5).await.unwrap();
            assert_eq!(c.next().await.unwrap().unwrap().body.as_ref(), b"m0", "one batch, one chunk");
            client.close().await;
        };
        tokio::time::timeout(Duration::from_secs(30), tokio::spawn(work)).await.unwrap().unwrap();
    });
}

#[test]
fn blocking_client_tracks_offsets() {
    use ringmq::client::{blocking, ClientOptions};
    use ringmq::protocol::StreamAt;
    let b = TestBroker::start();
    let q = common::queue_on(1, 2, "blocking-tracked");
    stream_with_ten(&b, &q);
    let mut c = blocking::Client::connect(ClientOptions { url: b.url(), ..Default::default() }).unwrap();
    c.store_offset(&q, "b", 8).unwrap();
    assert_eq!(c.query_offset(&q, "b").unwrap(), Some(8));
    assert_eq!(c.query_offset(&q, "other").unwrap(), None);
    let from = c.query_offset(&q, "b").unwrap().unwrap() + 1;
    let sub = c.stream_subscribe(&q, StreamAt::Offset(from), 5).unwrap();
    let d = c.recv(&sub, Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(d.body.as_ref(), b"m9");
}

/// Reads `n` messages of `q` from `first` with the blocking client,
/// checking each body (`body(i)`) and offset (`i`), acking as it goes.
fn read_all(url: String, q: &str, n: u64, body: impl Fn(u64) -> Vec<u8>) {
    use ringmq::client::{blocking, ClientOptions};
    let mut c = blocking::Client::connect(ClientOptions { url, ..Default::default() }).unwrap();
    let sub = c.stream_subscribe(q, ringmq::protocol::StreamAt::First, 64).unwrap();
    for i in 0..n {
        let d = c.recv(&sub, Duration::from_secs(10)).unwrap().unwrap_or_else(|| panic!("message {i}"));
        assert_eq!(d.stream_offset(), Some(i));
        assert!(d.body == body(i), "body of {i}");
        c.ack(&sub, d.tag).unwrap();
    }
}

fn ready_bytes_in_memory(b: &TestBroker, shard: u16) -> u64 {
    ready_bytes_at(b.metrics, shard)
}

/// `ringmq_memory_ready_bytes` of `shard`, from the metrics listener at `metrics`.
fn ready_bytes_at(metrics: std::net::SocketAddr, shard: u16) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let prefix = format!("ringmq_memory_ready_bytes{{shard=\"{shard}\"}} ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
    line[prefix.len()..].trim().parse().unwrap()
}

/// A stream larger than its memory window (`stream_memory_bytes_max`,
/// 1 MiB here, of 16 MiB): only the window stays in memory; consumers
/// from `first` read every message in order from the log, with their
/// offsets, also after a restart; ten consumers stopped at different
/// offsets hold at most their read-ahead each.
#[test]
fn stream_larger_than_memory_is_read_from_the_log() {
    const N: u64 = 4000;
    let body = |i: u64| -> Vec<u8> {
        let mut b = format!("{i:08}").into_bytes();
        b.resize(4096, (i % 251) as u8);
        b
    };
    let tweak = |c: &mut ringmq::server::config::Config| {
        c.stream_memory_bytes_max = 1 << 20;
        c.stream_read_ahead_bytes = 256 << 10;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = common::queue_on(0, 2, "big-stream");
    {
        let b = TestBroker::start_in(&data, 2, tweak);
        let (mut r, _) = common::Raw::hello(b.native);
        declare_stream(&mut r, &q, ringmq::protocol::field_table::TableBuilder::new());
        for batch in 0..N / 100 {
            let bodies: Vec<Vec<u8>> = (batch * 100..(batch + 1) * 100).map(body).collect();
            r.publish_confirmed(&q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }
        let held = ready_bytes_in_memory(&b, 0);
        eprintln!("in memory after the publishes: {held}");
        assert!((1 << 19..=(1 << 20) + 8192).contains(&held), "the window, not 16 MiB: {held}");
        read_all(b.url(), &q, N, body);
        // Ten consumers that stop (no acks) at different offsets.
        let mut idle = Vec::new();
        for k in 0..10u64 {
            let (mut c, _) = common::Raw::hello(b.native);
            let cid = stream_subscribe(&mut c, &q, 50, ringmq::protocol::StreamAt::Offset(k * 300));
            let got = c.expect_deliveries(cid, 50);
            assert!(got[0].body == body(k * 300));
            idle.push(c);
        }
        // Each holds its prefetch (50 × 4 KiB, delivered, not counted here)
        // and at most about one and a half reads ahead.
        std::thread::sleep(Duration::from_millis(200));
        let held = ready_bytes_in_memory(&b, 0);
        eprintln!("in memory with ten idle consumers: {held}");
        assert!(held <= (1 << 20) + 10 * (3 * (256 << 10) / 2 + 8192), "bounded read-ahead: {held}");
    }
    let b = TestBroker::start_in(&data, 2, tweak);
    let held = ready_bytes_in_memory(&b, 0);
    eprintln!("in memory after the restart: {held}");
    assert!((1 << 19..=(1 << 20) + 8192).contains(&held), "the window after a restart: {held}");
    read_all(b.url(), &q, N, body);
}

/// The same across `kill -9` of `ringmq serve`: a stream ten times its
/// window comes back whole, read from the log in order, and only its
/// window is in memory after the recovery.
#[test]
fn stream_larger_than_memory_survives_kill_9() {
    const N: u64 = 2500;
    let body = |i: u64| -> Vec<u8> {
        let mut b = format!("k9-{i:08}").into_bytes();
        b.resize(4096, (i % 241) as u8);
        b
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ringmq.toml");
    std::fs::write(&config, "stream_memory_bytes_max = 1048576\nstream_read_ahead_bytes = 131072\n").unwrap();
    let extra = ["--config".as_ref(), config.as_os_str(), "--metrics-listen".as_ref(), "127.0.0.1:0".as_ref()];
    let native = |line: &str| -> std::net::SocketAddr { common::process::field(line, "native").parse().unwrap() };
    let q = common::queue_on(1, 2, "big-stream-k9");
    let (child, line) = common::process::serve(&data, &extra);
    let mut child = Killed(child);
    let (mut r, _) = common::Raw::hello(native(&line));
    declare_stream(&mut r, &q, ringmq::protocol::field_table::TableBuilder::new());
    for batch in 0..N / 250 {
        let bodies: Vec<Vec<u8>> = (batch * 250..(batch + 1) * 250).map(body).collect();
        r.publish_confirmed(&q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (restarted, line) = common::process::serve(&data, &extra);
    child.0 = restarted;
    let held = ready_bytes_at(common::process::field(&line, "metrics").parse().unwrap(), 1);
    assert!((1 << 19..=(1 << 20) + 8192).contains(&held), "the window after the recovery: {held}");
    read_all(format!("ringmq://{}", native(&line)), &q, N, body);
}

/// A `ringmq serve` child killed (-9) when the test ends, failed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
