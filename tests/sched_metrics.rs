//! The shard executor's scheduling figures (`server::sched`) in `/metrics`:
//! a real broker with two shards under a publish and consume load over real
//! sockets, scraped over HTTP. Every shard's task queues report a
//! scheduling-delay and a run-length histogram, with samples, whose
//! cumulative buckets never fall.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{http_get, queue_on, Raw, TestBroker};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// (shard, queue) -> the cumulative bucket counts in exposition order,
/// the `+Inf` one last; and the `_count` sample.
type Parsed = BTreeMap<(String, String), (Vec<(String, u64)>, u64)>;

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let end = labels[start..].find('"').unwrap() + start;
    &labels[start..end]
}

fn parse(text: &str, family: &str) -> Parsed {
    let mut out = Parsed::new();
    for line in text.lines().filter(|l| l.starts_with(family)) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap();
        let key = (label(labels, "shard").to_string(), label(labels, "queue").to_string());
        let entry = out.entry(key).or_default();
        let v: f64 = value.parse().unwrap();
        if name == format!("{family}_bucket") {
            entry.0.push((label(labels, "le").to_string(), v as u64));
        } else if name == format!("{family}_count") {
            entry.1 = v as u64;
        }
    }
    out
}

fn check(text: &str, family: &str, queues: &[&str]) -> Parsed {
    assert!(text.contains(&format!("# TYPE {family} histogram")), "{family} declared as a histogram");
    let parsed = parse(text, family);
    for shard in ["0", "1"] {
        for q in queues {
            let (buckets, count) = parsed
                .get(&(shard.to_string(), q.to_string()))
                .unwrap_or_else(|| panic!("{family} has no series for shard {shard}, queue {q}: {parsed:?}"));
            assert!(buckets.len() > 5, "{family} {shard}/{q}: buckets {buckets:?}");
            assert_eq!(buckets.last().unwrap().0, "+Inf", "{family} {shard}/{q}: +Inf last");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family} {shard}/{q} not monotone: {buckets:?}");
            assert_eq!(buckets.last().unwrap().1, *count, "{family} {shard}/{q}: +Inf equals _count");
            assert!(*count > 0, "{family} {shard}/{q}: no samples");
        }
    }
    parsed
}

#[test]
fn scheduling_histograms_under_load() {
    let b = TestBroker::start();
    // A queue on each shard, published to and consumed from, with confirms
    // (so the flusher runs on durable queues).
    let mut clients = Vec::new();
    for shard in 0..2u32 {
        let q = queue_on(shard, 2, "sched");
        let mut publisher = Raw::connect(b.shards[shard as usize]);
        publisher.handshake();
        publisher.declare(&q);
        let mut consumer = Raw::connect(b.shards[shard as usize]);
        consumer.handshake();
        let (cid, early) = consumer.subscribe(&q, 1000);
        assert!(early.is_empty());
        clients.push((publisher, consumer, q, cid));
    }
    let body = vec![7u8; 256];
    let until = Instant::now() + Duration::from_millis(1500);
    let mut sent = 0;
    while Instant::now() < until {
        for (publisher, consumer, q, cid) in &mut clients {
            let bodies: Vec<&[u8]> = (0..32).map(|_| body.as_slice()).collect();
            publisher.publish_confirmed(q, &bodies);
            let got = consumer.expect_deliveries(*cid, 32);
            let (first, last) = (got[0].tag, got[31].tag);
            consumer.ack(*cid, &[(first, last)]);
            sent += 32;
        }
    }
    assert!(sent > 0);
    let text = http_get(b.metrics, "/metrics");
    // Every queue's probe ran (an idle one too): delays for all four.
    let delay = check(&text, "ringmq_sched_delay_seconds", &["default", "latency", "flush", "bulk"]);
    // The connections ran on the latency queue, so it has runs to report.
    check(&text, "ringmq_sched_run_seconds", &["latency"]);
    let runs: u64 = text
        .lines()
        .filter(|l| l.starts_with("ringmq_sched_runs_total{") && l.contains("queue=\"latency\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap() as u64)
        .sum();
    assert!(runs > 0, "the latency queue ran");
    // A quiet test machine serves a 10 ms probe well within a second.
    for ((shard, q), (buckets, count)) in &delay {
        let below_half_second = buckets.iter().find(|(le, _)| le == "0.5").map(|b| b.1).unwrap();
        assert_eq!(below_half_second, *count, "shard {shard} queue {q}: a probe waited over 0.5 s: {buckets:?}");
    }
}
