//! Routing decisions per second: a topic exchange with 10,000 bindings and
//! keys of depth 4-5, a direct exchange with 10,000 bindings, and a headers
//! exchange with 100 bindings. Counted in routing decisions (one message
//! routed to all of its queues).
//!
//! `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringmq::protocol::amqp::wire::TableWriter;
use ringmq::routing::{BindingDef, Change, Dest, ExchangeDef, ExchangeKind, RoutingTable};

const REGIONS: usize = 50;
const SERVICES: usize = 200;
const KEYS: usize = 1024;

/// A small deterministic generator, so every run routes the same keys.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn bind(t: &mut RoutingTable, source: &str, queue: String, key: String, args: Bytes) {
    let b = BindingDef { source: source.into(), dest: Dest::Queue(queue), key, args };
    t.apply(&Change::Bind(b)).expect("bind");
}

fn declare(t: &mut RoutingTable, name: &str, kind: ExchangeKind) {
    t.apply(&Change::DeclareExchange(ExchangeDef::new(name, kind))).expect("declare");
}

/// A raw field table (no length prefix) of string pairs.
fn table(pairs: &[(&str, &str)]) -> Bytes {
    let mut b = BytesMut::new();
    let w = TableWriter::begin(&mut b);
    for (k, v) in pairs {
        w.str(&mut b, k, v);
    }
    w.finish(&mut b);
    b.freeze().slice(4..)
}

/// 10,000 topic bindings: `region.<r>.service.<s>.*` mostly, one in ten
/// `...<s>.#`, and one in twenty-five a `region.*.service.<s>.#.audit`.
fn topic_table() -> RoutingTable {
    let mut t = RoutingTable::new();
    declare(&mut t, "events", ExchangeKind::Topic);
    for i in 0..REGIONS * SERVICES {
        let (r, s) = (i % REGIONS, i / REGIONS);
        let key = match i % 50 {
            0 | 25 => format!("region.*.service.s{s}.#.audit"),
            n if n % 10 == 1 => format!("region.r{r}.service.s{s}.#"),
            _ => format!("region.r{r}.service.s{s}.*"),
        };
        bind(&mut t, "events", format!("q{}", i % 1000), key, Bytes::new());
    }
    t
}

fn topic_keys() -> Vec<String> {
    let mut g = Lcg(7);
    let events = ["created", "updated", "deleted", "audit"];
    (0..KEYS)
        .map(|i| {
            let (r, s) = (g.below(REGIONS + 5), g.below(SERVICES));
            match i % 4 {
                0 => format!("region.r{r}.service.s{s}"),
                1 => format!("region.r{r}.service.s{s}.{}.audit", events[g.below(3)]),
                _ => format!("region.r{r}.service.s{s}.{}", events[g.below(4)]),
            }
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(KEYS as u64));

    let topic = topic_table();
    let keys = topic_keys();
    let mut out = Vec::new();
    let matched: usize = keys.iter().map(|k| topic.route("events", k, None, &mut out).map_or(0, |_| out.len())).sum();
    println!("topic: 10000 bindings, {KEYS} keys, {matched} queue hits");
    g.bench_function("topic_10k_bindings", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            let mut n = 0;
            for k in &keys {
                let _ = topic.route("events", black_box(k), None, &mut out);
                n += out.len();
            }
            black_box(n)
        })
    });

    let mut direct = RoutingTable::new();
    declare(&mut direct, "orders", ExchangeKind::Direct);
    for i in 0..10_000 {
        bind(&mut direct, "orders", format!("q{}", i % 1000), format!("orders.customer{i}"), Bytes::new());
    }
    let mut gen = Lcg(11);
    let direct_keys: Vec<String> = (0..KEYS).map(|_| format!("orders.customer{}", gen.below(11_000))).collect();
    g.bench_function("direct_10k_bindings", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            let mut n = 0;
            for k in &direct_keys {
                let _ = direct.route("orders", black_box(k), None, &mut out);
                n += out.len();
            }
            black_box(n)
        })
    });

    // 100 bindings, `all` on region and service (some `any`); messages carry
    // region, service and two more headers.
    let mut headers = RoutingTable::new();
    declare(&mut headers, "by-headers", ExchangeKind::Headers);
    for i in 0..100 {
        let (r, s) = (format!("r{}", i % 10), format!("s{}", i / 10));
        let mode = if i % 5 == 0 { "any" } else { "all" };
        let args = table(&[("x-match", mode), ("region", &r), ("service", &s)]);
        bind(&mut headers, "by-headers", format!("q{i}"), String::new(), args);
    }
    let mut gen = Lcg(13);
    let messages: Vec<Bytes> = (0..KEYS)
        .map(|_| {
            let (r, s) = (format!("r{}", gen.below(12)), format!("s{}", gen.below(12)));
            table(&[("trace-id", "abc123"), ("region", &r), ("service", &s), ("content", "json")])
        })
        .collect();
    g.bench_function("headers_100_bindings", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            let mut n = 0;
            for m in &messages {
                let _ = headers.route("by-headers", "", Some(black_box(m)), &mut out);
                n += out.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
