//! Backlogs larger than the memory budget: with a 1 MiB budget, 20 MiB of
//! persistent messages are published; most keep only their location in
//! the log and are read back when delivered. Everything is consumed in
//! order and intact, across a restart in the middle (recovery also leaves
//! the backlog past the budget on disk), through push and pull (`get`).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::body_seq;
use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use ringmq::server::config::Config;
use ringmq::server::Broker;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const SIZE: usize = 1024;
const TOTAL: u64 = 20_000;

fn start(dir: &Path) -> Broker {
    start_with(dir, |_| {})
}

fn start_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config {
        cores: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        pin_cores: false,
        memory_budget_bytes: 1 << 20,
        segment_bytes: 4 << 20,
        ..Default::default()
    };
    tweak(&mut config);
    Broker::start(config).expect("broker starts")
}

/// The Prometheus text of the broker.
fn metrics(b: &Broker) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(b.metrics_addr).expect("metrics listener");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, prefix: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in metrics"));
    line[prefix.len()..].trim().parse().expect("a number")
}

fn client(b: &Broker) -> Client {
    Client::connect(ClientOptions { url: format!("ringmq://{}", b.native_addr), ..Default::default() })
        .expect("connect")
}

/// Message `seq`: its number, then bytes that depend on it.
fn body(seq: u64) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..SIZE).map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8));
    v
}

/// Receives `n` messages on a connection of its own, checks each is the
/// next expected one, intact, acks it; then closes (what it had
/// prefetched goes back to the queue). Returns the next expected number.
fn consume(b: &Broker, q: &str, next: u64, n: u64) -> u64 {
    consume_of(b, q, next, n, TOTAL)
}

fn consume_of(b: &Broker, q: &str, next: u64, n: u64, total: u64) -> u64 {
    consume_with(b, q, &[], next, n, total)
}

/// `consume_of` for a queue declared with `args`.
fn consume_with(b: &Broker, q: &str, args: &[u8], mut next: u64, n: u64, total: u64) -> u64 {
    let mut c = client(b);
    let sub = c.subscribe(q, 300).unwrap();
    for _ in 0..n {
        let d = c.recv(&sub, WAIT).unwrap().unwrap_or_else(|| panic!("delivery of {next}"));
        assert_eq!(body_seq(&d.body), next, "in order");
        assert!(d.body == body(next), "message {next} intact");
        c.ack(&sub, d.tag).unwrap();
        next += 1;
    }
    // The acks reach the broker before the close.
    c.declare_with(q, true, args).unwrap();
    drop(c);
    let mut c = client(b);
    let t = std::time::Instant::now();
    while c.declare_with(q, true, args).unwrap() != total - next {
        assert!(t.elapsed() < WAIT, "prefetched messages requeued");
        std::thread::sleep(Duration::from_millis(20));
    }
    next
}

#[test]
fn backlog_over_the_budget_drains_in_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let q = "backlog";
    let mut next = 0;
    {
        let b = start(dir.path());
        let mut c = client(&b);
        c.declare(q, true).unwrap();
        for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(100) {
            let bodies: Vec<Vec<u8>> = chunk.iter().map(|&i| body(i)).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            c.publish(q, &refs, true).expect("persistent publish confirmed");
        }
        assert_eq!(c.declare(q, true).unwrap(), TOTAL);
        let m = metrics(&b);
        let spilled = metric(&m, "ringmq_messages_spilled ");
        assert!(spilled > TOTAL / 2, "most of 20 MiB is past a 1 MiB budget: {spilled} spilled");
        let resident = metric(&m, "ringmq_memory_ready_bytes{shard=\"0\"} ");
        assert!(resident <= 2 << 20, "in-memory entries stay near the budget: {resident}");
        next = consume(&b, q, next, 6_000);
        // Pull a few: the head may be on disk.
        for _ in 0..10 {
            let d = c.get(q, true).unwrap().expect("get");
            assert!(d.body == body(next), "get of {next}");
            next += 1;
        }
        // The acks reached the broker before it stops.
        assert_eq!(c.declare(q, true).unwrap(), TOTAL - next);
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path());
    let mut c = client(&b);
    assert_eq!(c.declare(q, true).unwrap(), TOTAL - next, "the backlog is back");
    let d = c.get(q, true).unwrap().expect("get after restart");
    assert!(d.body == body(next) && d.redelivered, "the first after restart, from disk");
    next += 1;
    next = consume(&b, q, next, TOTAL - next);
    assert_eq!(next, TOTAL);
    assert!(c.get(q, true).unwrap().is_none(), "drained");
    drop(c);
    b.stop().expect("the broker stops cleanly");
}

fn publish_range(c: &mut Client, q: &str, r: std::ops::Range<u64>) {
    for chunk in r.collect::<Vec<_>>().chunks(100) {
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|&i| body(i)).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        c.publish(q, &refs, true).expect("persistent publish confirmed");
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("shard-0")).unwrap().count()
}

#[test]
fn compaction_moves_spilled_messages_and_they_are_still_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_with(dir.path(), |c| c.segment_bytes = 256 << 10);
    let mut c = client(&b);
    c.declare("churn", true).unwrap();
    c.declare("keep", true).unwrap();
    // Fills the budget, then `keep` and more `churn` are spilled.
    publish_range(&mut c, "churn", 0..1_200);
    publish_range(&mut c, "keep", 0..300);
    publish_range(&mut c, "churn", 1_200..3_200);
    let before = segments(dir.path());
    assert!(before >= 12, "{before} segments");
    consume_of(&b, "churn", 0, 3_200, 3_200);
    // What is left is `keep` (300 KiB) in segments of mostly acked
    // messages: compacted to the tail, the rest deleted but for the dead
    // segments kept for reuse.
    let kept = Config::default().segments_recycled_max as usize;
    let t = std::time::Instant::now();
    while segments(dir.path()) > 4 + kept {
        assert!(t.elapsed() < WAIT, "compaction and reclaim: {} segments left", segments(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read back from where compaction put them.
    consume_of(&b, "keep", 0, 300, 300);
    drop(c);
    b.stop().expect("the broker stops cleanly");
    let b = start_with(dir.path(), |c| c.segment_bytes = 256 << 10);
    let mut c = client(&b);
    assert_eq!(c.declare("keep", true).unwrap(), 0, "acked after the move: gone");
    drop(c);
    b.stop().expect("the broker stops cleanly");
}

fn ready_bytes_in_memory(b: &Broker) -> u64 {
    metric(&metrics(b), "ringmq_memory_ready_bytes{shard=\"0\"} ")
}

/// Waits until `q` holds `n` ready messages.
fn wait_ready(c: &mut Client, q: &str, args: &[u8], n: u64) {
    let t = std::time::Instant::now();
    loop {
        let got = c.declare_with(q, true, args).unwrap();
        if got == n {
            return;
        }
        assert!(t.elapsed() < WAIT, "{q}: {got} ready, want {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spilled heads dropped over `x-max-length` with a dead-letter exchange:
/// their entries are read back first, so the dead letters carry them (and
/// `x-death`), in order.
#[test]
fn spilled_heads_are_read_back_before_they_are_dead_lettered() {
    use ringmq::protocol::field_table::{TableBuilder, Value};
    use ringmq::protocol::props::Props;
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = client(&b);
    // Over the budget first: everything published after it is spilled.
    c.declare("filler", true).unwrap();
    publish_range(&mut c, "filler", 0..1_200);
    let (src, dlq) = ("maxlen-src", "maxlen-dlq");
    c.declare(dlq, true).unwrap();
    let args = TableBuilder::new()
        .int("x-max-length", 100)
        .str("x-dead-letter-exchange", "")
        .str("x-dead-letter-routing-key", dlq)
        .build();
    c.declare_with(src, true, &args).unwrap();
    publish_range(&mut c, src, 0..1_000);
    assert!(metric(&metrics(&b), "ringmq_messages_spilled ") > 0, "spilled");
    wait_ready(&mut c, dlq, &[], 900);
    wait_ready(&mut c, src, &args, 100);
    let sub = c.subscribe(dlq, 300).unwrap();
    for i in 0..900 {
        let d = c.recv(&sub, WAIT).unwrap().unwrap_or_else(|| panic!("dead letter {i}"));
        assert!(d.body == body(i), "dead letter {i} in order, intact");
        let p = Props::parse(&d.props).expect("x-death added to the properties");
        let death = match p.headers.as_ref().and_then(|h| h.get("x-death")) {
            Some(Value::Array(a)) => a[0].clone(),
            other => panic!("x-death: {other:?}"),
        };
        let Value::Table(t) = death else { panic!("x-death entry") };
        assert_eq!(t.get("reason").and_then(Value::as_str), Some("maxlen"));
        c.ack(&sub, d.tag).unwrap();
    }
    drop(c);
    assert_eq!(consume_with(&b, src, &args, 900, 100, 1_000), 1_000, "the last 100 stay, in order");
    b.stop().expect("the broker stops cleanly");
}

/// `x-max-length-bytes` counts spilled messages by their body, before and
/// after a restart (recovered on disk), and the in-memory byte count is
/// back to 0 once everything is consumed.
#[test]
fn the_byte_limit_counts_spilled_messages_across_a_restart() {
    use ringmq::protocol::field_table::TableBuilder;
    use ringmq::protocol::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let q = "bytes-limited";
    let n = 2_000u64;
    let args = TableBuilder::new()
        .int("x-max-length-bytes", (n * SIZE as u64) as i64)
        .str("x-overflow", "reject-publish")
        .build();
    let refused = |c: &mut Client, seq: u64| {
        let e = c.publish(q, &[&body(seq)], true).expect_err("the queue is full");
        assert_eq!(e.code(), Some(ErrorCode::QueueFull), "{e}");
    };
    {
        let b = start(dir.path());
        let mut c = client(&b);
        c.declare_with(q, true, &args).unwrap();
        publish_range(&mut c, q, 0..n);
        assert!(metric(&metrics(&b), "ringmq_messages_spilled ") > n / 3, "most are on disk");
        refused(&mut c, n);
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path());
    let mut c = client(&b);
    assert_eq!(c.declare_with(q, true, &args).unwrap(), n);
    assert!(metric(&metrics(&b), "ringmq_messages_spilled ") > 0, "recovered on disk");
    refused(&mut c, n);
    let d = c.get(q, true).unwrap().expect("the head");
    assert!(d.body == body(0));
    c.publish(q, &[&body(n)], true).expect("room for one");
    refused(&mut c, n + 1);
    drop(c);
    assert_eq!(consume_with(&b, q, &args, 1, n, n + 1), n + 1);
    assert_eq!(ready_bytes_in_memory(&b), 0, "the accounting is back to 0");
    b.stop().expect("the broker stops cleanly");
}

/// A priority queue never spills; a backlog past the budget that recovery
/// left on disk is read back at start, and delivered in order.
#[test]
fn a_priority_queue_past_the_budget_is_read_back_at_start() {
    use ringmq::protocol::field_table::TableBuilder;
    let dir = tempfile::tempdir().unwrap();
    let q = "prio";
    let n = 3_000u64;
    let args = TableBuilder::new().int("x-max-priority", 5).build();
    {
        let b = start(dir.path());
        let mut c = client(&b);
        c.declare_with(q, true, &args).unwrap();
        publish_range(&mut c, q, 0..n);
        assert_eq!(metric(&metrics(&b), "ringmq_messages_spilled "), 0, "priority queues keep their entries");
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path());
    let mut c = client(&b);
    assert_eq!(c.declare_with(q, true, &args).unwrap(), n);
    assert_eq!(metric(&metrics(&b), "ringmq_messages_spilled "), 0, "read back at start");
    drop(c);
    assert_eq!(consume_with(&b, q, &args, 0, n, n), n);
    b.stop().expect("the broker stops cleanly");
}

/// Spilled messages whose TTL runs out: the timer finds a spilled head,
/// the shard reads it back, and it is dead-lettered with its entry.
#[test]
fn spilled_messages_expire_into_a_dead_letter_queue() {
    use ringmq::protocol::field_table::TableBuilder;
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = client(&b);
    c.declare("filler", true).unwrap();
    publish_range(&mut c, "filler", 0..1_200);
    let (src, dlq) = ("ttl-src", "ttl-dlq");
    c.declare(dlq, true).unwrap();
    let args = TableBuilder::new()
        .int("x-message-ttl", 300)
        .str("x-dead-letter-exchange", "")
        .str("x-dead-letter-routing-key", dlq)
        .build();
    c.declare_with(src, true, &args).unwrap();
    publish_range(&mut c, src, 0..1_000);
    wait_ready(&mut c, src, &args, 0);
    wait_ready(&mut c, dlq, &[], 1_000);
    drop(c);
    assert_eq!(consume_of(&b, dlq, 0, 1_000, 1_000), 1_000, "every one, in order, intact");
    b.stop().expect("the broker stops cleanly");
}

/// Small message `seq` (its number, then bytes that depend on it).
fn small(seq: u64) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..64).map(|i| (seq.wrapping_mul(7).wrapping_add(i) % 251) as u8));
    v
}

fn publish_small(c: &mut Client, q: &str, r: std::ops::Range<u64>) {
    for chunk in r.collect::<Vec<_>>().chunks(500) {
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|&i| small(i)).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        c.publish(q, &refs, true).expect("persistent publish confirmed");
    }
}

/// Receives and acks `n` small messages in order from `next`.
fn consume_small(b: &Broker, q: &str, mut next: u64, n: u64) -> u64 {
    let mut c = client(b);
    let sub = c.subscribe(q, 1000).unwrap();
    for _ in 0..n {
        let d = c.recv(&sub, WAIT).unwrap().unwrap_or_else(|| panic!("delivery of {next}"));
        assert!(d.body == small(next), "message {next} in order and intact");
        c.ack(&sub, d.tag).unwrap();
        next += 1;
    }
    c.declare(q, true).unwrap();
    next
}

/// More spilled messages than a queue keeps whole (`HOT_HIGH`): the rest
/// are kept compact, and come back in order, across a restart and a purge.
#[test]
fn a_backlog_past_the_hot_part_drains_in_order_and_purges() {
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (q, p) = ("big", "purged");
    let mut next = 0;
    {
        let b = start(dir.path());
        let mut c = client(&b);
        c.declare(q, true).unwrap();
        c.declare(p, true).unwrap();
        publish_small(&mut c, q, 0..N);
        publish_small(&mut c, p, 0..N);
        assert!(metric(&metrics(&b), "ringmq_messages_spilled ") > N, "most are spilled");
        next = consume_small(&b, q, next, 20_000);
        assert_eq!(c.purge(p).unwrap(), N);
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path());
    let mut c = client(&b);
    assert_eq!(c.declare(p, true).unwrap(), 0, "the purge covered every message");
    let t = std::time::Instant::now();
    while c.declare(q, true).unwrap() != N - next {
        assert!(t.elapsed() < WAIT, "prefetched messages requeued");
        std::thread::sleep(Duration::from_millis(20));
    }
    next = consume_small(&b, q, next, N - next);
    assert!(next == N && c.get(q, true).unwrap().is_none(), "drained");
    drop(c);
    b.stop().expect("the broker stops cleanly");
}
