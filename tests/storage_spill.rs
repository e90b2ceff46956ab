//! Backlogs larger than the memory budget: with a 1 MiB budget, 20 MiB of
//! persistent messages are published; most keep only their location in
//! the log and are read back when delivered. Everything is consumed in
//! order and intact, across a restart in the middle (recovery also leaves
//! the backlog past the budget on disk), through push and pull (`get`).

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

fn consume_of(b: &Broker, q: &str, mut next: u64, n: u64, total: u64) -> u64 {
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
    c.declare(q, true).unwrap();
    drop(c);
    let mut c = client(b);
    let t = std::time::Instant::now();
    while c.declare(q, true).unwrap() != total - next {
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
        b.stop();
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
    b.stop();
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
    // messages: compacted to the tail, the rest deleted.
    let t = std::time::Instant::now();
    while segments(dir.path()) > 4 {
        assert!(t.elapsed() < WAIT, "compaction and reclaim: {} segments left", segments(dir.path()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read back from where compaction put them.
    consume_of(&b, "keep", 0, 300, 300);
    drop(c);
    b.stop();
    let b = start_with(dir.path(), |c| c.segment_bytes = 256 << 10);
    let mut c = client(&b);
    assert_eq!(c.declare("keep", true).unwrap(), 0, "acked after the move: gone");
    drop(c);
    b.stop();
}
