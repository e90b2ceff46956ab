//! Exchanges and bindings over the native protocol, on a real 2-shard
//! broker: direct, fanout, topic and headers exchanges, exchange-to-exchange
//! bindings and their cycles, the alternate exchange, mandatory publishes,
//! the errors, bindings dropped with their queue, and durable definitions
//! across a restart.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{maybe_within, queue_on, run_local, within, Raw, TestBroker, QUIET, STEP, TEST_DEADLINE};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientError, ClientOptions, Consumer, ExchangeOptions, ProducerOptions};
use ringmq::protocol::{Cmd, ErrorCode};
use ringmq::server::config::Config;
use ringmq::server::Broker;

async fn connect(url: String) -> Client {
    Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap()
}

/// A field table (no length prefix) of string values.
fn table(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for (k, v) in pairs {
        t.push(k.len() as u8);
        t.extend_from_slice(k.as_bytes());
        t.push(b'S');
        t.extend_from_slice(&(v.len() as u32).to_be_bytes());
        t.extend_from_slice(v.as_bytes());
    }
    t
}

/// AMQP basic properties holding only `headers`.
fn props_with_headers(pairs: &[(&str, &str)]) -> Vec<u8> {
    let t = table(pairs);
    let mut p = vec![0x20, 0x00];
    p.extend_from_slice(&(t.len() as u32).to_be_bytes());
    p.extend_from_slice(&t);
    p
}

async fn publish(c: &Client, exchange: &str, key: &str, bodies: &[&str], mandatory: bool) -> Result<(), ClientError> {
    let o = ProducerOptions { mandatory, ..Default::default() };
    let p = c.exchange_producer(exchange, key, o).await?;
    let mut confs = Vec::new();
    for b in bodies {
        confs.push(p.publish(b.as_bytes()).await?);
    }
    p.flush()?;
    for conf in confs {
        within("confirm", STEP, conf).await?;
    }
    Ok(())
}

async fn publish_with(c: &Client, exchange: &str, key: &str, props: &[u8], body: &str) {
    let p = c.exchange_producer(exchange, key, ProducerOptions::default()).await.unwrap();
    let conf = p.publish_with(props, body.as_bytes()).await.unwrap();
    p.flush().unwrap();
    within("confirm", STEP, conf).await.unwrap();
}

/// Declares a queue per name and subscribes to it.
async fn queues(c: &Client, names: &[&str]) -> Vec<Consumer> {
    let mut out = Vec::new();
    for q in names {
        c.declare(q, false).await.unwrap();
        out.push(c.subscribe(q, 100).await.unwrap());
    }
    out
}

/// Receives exactly `expect` bodies on `sub`, in order, then nothing.
async fn got(sub: &mut Consumer, expect: &[&str]) {
    for want in expect {
        let d = within("delivery", STEP, sub.next()).await.expect("stream open").expect("delivery");
        assert_eq!(std::str::from_utf8(&d.body).unwrap(), *want);
        sub.ack(d.tag);
    }
    if let Some(d) = maybe_within(QUIET, sub.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

fn code(r: Result<(), ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

fn durable() -> ExchangeOptions<'static> {
    ExchangeOptions { durable: true, ..Default::default() }
}

#[test]
fn direct_and_fanout_reach_queues_on_both_shards() {
    let b = TestBroker::start();
    let url = b.url();
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        let (qa, qb) = (queue_on(0, 2, "da"), queue_on(1, 2, "db"));
        let mut subs = queues(&c, &[&qa, &qb]).await;
        c.declare_exchange("dx", "direct", ExchangeOptions::default()).await.unwrap();
        c.bind_queue(&qa, "dx", "a", &[]).await.unwrap();
        c.bind_queue(&qb, "dx", "b", &[]).await.unwrap();
        c.bind_queue(&qb, "dx", "a", &[]).await.unwrap();
        publish(&c, "dx", "a", &["1", "2"], false).await.unwrap();
        publish(&c, "dx", "b", &["3"], false).await.unwrap();
        got(&mut subs[0], &["1", "2"]).await;
        got(&mut subs[1], &["1", "2", "3"]).await;

        // Fanout: four queues, two per shard, every message to each, in order.
        let names: Vec<String> = (0..4).map(|i| queue_on(i % 2, 2, "fq")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut subs = queues(&c, &refs).await;
        c.declare_exchange("fx", "fanout", ExchangeOptions::default()).await.unwrap();
        for q in &refs {
            c.bind_queue(q, "fx", "ignored", &[]).await.unwrap();
        }
        let bodies: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let brefs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        publish(&c, "fx", "", &brefs, false).await.unwrap();
        for s in &mut subs {
            got(s, &brefs).await;
        }
    });
}

#[test]
fn topic_patterns_and_headers_matching() {
    let b = TestBroker::start();
    let url = b.url();
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        let (errors, app, all) = (queue_on(0, 2, "te"), queue_on(1, 2, "ta"), queue_on(1, 2, "tall"));
        let mut subs = queues(&c, &[&errors, &app, &all]).await;
        c.declare_exchange("tx", "topic", ExchangeOptions::default()).await.unwrap();
        c.bind_queue(&errors, "tx", "*.error", &[]).await.unwrap();
        c.bind_queue(&app, "tx", "app.#", &[]).await.unwrap();
        c.bind_queue(&all, "tx", "#", &[]).await.unwrap();
        publish(&c, "tx", "db.error", &["e1"], false).await.unwrap();
        publish(&c, "tx", "app.error", &["e2"], false).await.unwrap();
        publish(&c, "tx", "app", &["a1"], false).await.unwrap();
        publish(&c, "tx", "app.web.info", &["a2"], false).await.unwrap();
        publish(&c, "tx", "db.disk.error", &["x"], false).await.unwrap();
        got(&mut subs[0], &["e1", "e2"]).await;
        got(&mut subs[1], &["e2", "a1", "a2"]).await;
        got(&mut subs[2], &["e1", "e2", "a1", "a2", "x"]).await;

        let (q_all, q_any) = (queue_on(0, 2, "hall"), queue_on(1, 2, "hany"));
        let mut subs = queues(&c, &[&q_all, &q_any]).await;
        c.declare_exchange("hx", "headers", ExchangeOptions::default()).await.unwrap();
        let all_args = table(&[("x-match", "all"), ("format", "pdf"), ("type", "report")]);
        let any_args = table(&[("x-match", "any"), ("format", "pdf"), ("type", "log")]);
        c.bind_queue(&q_all, "hx", "", &all_args).await.unwrap();
        c.bind_queue(&q_any, "hx", "", &any_args).await.unwrap();
        publish_with(&c, "hx", "", &props_with_headers(&[("format", "pdf"), ("type", "report")]), "both").await;
        publish_with(&c, "hx", "", &props_with_headers(&[("format", "pdf")]), "pdf").await;
        publish_with(&c, "hx", "", &props_with_headers(&[("type", "log")]), "log").await;
        publish_with(&c, "hx", "", &props_with_headers(&[("format", "zip")]), "none").await;
        publish_with(&c, "hx", "", &[], "no headers").await;
        got(&mut subs[0], &["both"]).await;
        got(&mut subs[1], &["both", "pdf", "log"]).await;
    });
}

#[test]
fn exchange_bindings_cycles_alternate_and_mandatory() {
    let b = TestBroker::start();
    let url = b.url();
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        let (q, lost) = (queue_on(0, 2, "eq"), queue_on(1, 2, "lost"));
        let mut subs = queues(&c, &[&q, &lost]).await;
        // x1 -> x2 -> x1: a cycle; q on x2 gets each message once.
        c.declare_exchange("x1", "fanout", ExchangeOptions::default()).await.unwrap();
        c.declare_exchange("x2", "fanout", ExchangeOptions::default()).await.unwrap();
        c.bind_exchange("x2", "x1", "", &[]).await.unwrap();
        c.bind_exchange("x1", "x2", "", &[]).await.unwrap();
        c.bind_queue(&q, "x2", "", &[]).await.unwrap();
        publish(&c, "x1", "k", &["once"], false).await.unwrap();
        got(&mut subs[0], &["once"]).await;

        // Unmatched messages go to the alternate exchange.
        c.declare_exchange("ae", "fanout", ExchangeOptions::default()).await.unwrap();
        c.bind_queue(&lost, "ae", "", &[]).await.unwrap();
        let args = table(&[("alternate-exchange", "ae")]);
        c.declare_exchange("withae", "direct", ExchangeOptions { args: &args, ..Default::default() }).await.unwrap();
        c.bind_queue(&q, "withae", "known", &[]).await.unwrap();
        publish(&c, "withae", "known", &["k"], false).await.unwrap();
        publish(&c, "withae", "other", &["u"], false).await.unwrap();
        got(&mut subs[0], &["k"]).await;
        got(&mut subs[1], &["u"]).await;

        // Unroutable: confirmed and dropped, or refused when mandatory.
        c.declare_exchange("empty", "topic", ExchangeOptions::default()).await.unwrap();
        publish(&c, "empty", "a.b", &["gone"], false).await.unwrap();
        assert_eq!(code(publish(&c, "empty", "a.b", &["gone"], true).await), Some(ErrorCode::NoRoute));
    });
}

#[test]
fn refusals_have_their_codes_and_queue_deletion_drops_bindings() {
    let b = TestBroker::start();
    let url = b.url();
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        let e = |r: Result<(), ClientError>| code(r);
        assert_eq!(e(publish(&c, "nope", "k", &["m"], false).await), Some(ErrorCode::ExchangeNotFound));
        assert_eq!(e(c.declare_exchange_passive("nope").await), Some(ErrorCode::ExchangeNotFound));
        c.declare_exchange_passive("amq.topic").await.unwrap();
        c.declare_exchange("kx", "direct", ExchangeOptions::default()).await.unwrap();
        c.declare_exchange("kx", "direct", ExchangeOptions::default()).await.unwrap();
        assert_eq!(
            e(c.declare_exchange("kx", "fanout", ExchangeOptions::default()).await),
            Some(ErrorCode::ExchangeMismatch)
        );
        assert_eq!(
            e(c.declare_exchange("bad", "nonsense", ExchangeOptions::default()).await),
            Some(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            e(c.declare_exchange("amq.mine", "direct", ExchangeOptions::default()).await),
            Some(ErrorCode::AccessRefused)
        );
        assert_eq!(e(c.delete_exchange("amq.direct", false).await), Some(ErrorCode::AccessRefused));
        assert_eq!(e(c.bind_queue("no-such-queue", "kx", "k", &[]).await), Some(ErrorCode::QueueNotFound));

        let q = queue_on(1, 2, "gone");
        c.declare(&q, false).await.unwrap();
        assert_eq!(e(c.bind_queue(&q, "no-such-exchange", "k", &[]).await), Some(ErrorCode::ExchangeNotFound));
        c.bind_queue(&q, "kx", "k", &[]).await.unwrap();
        assert_eq!(e(c.delete_exchange("kx", true).await), Some(ErrorCode::ExchangeMismatch));
        // The queue goes, and its binding with it: a new queue of the same
        // name is not bound.
        c.delete(&q).await.unwrap();
        c.declare(&q, false).await.unwrap();
        assert_eq!(e(publish(&c, "kx", "k", &["m"], true).await), Some(ErrorCode::NoRoute));
        c.delete_exchange("kx", true).await.unwrap();
        assert_eq!(e(c.declare_exchange_passive("kx").await), Some(ErrorCode::ExchangeNotFound));
    });
}

fn start(dir: &std::path::Path) -> Broker {
    Broker::start(Config {
        cores: 2,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        pin_cores: false,
        ..Default::default()
    })
    .expect("broker starts")
}

#[test]
fn durable_exchanges_and_bindings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (dq, tq) = (queue_on(1, 2, "durq"), queue_on(0, 2, "tranq"));
    let b = start(dir.path());
    let (url, d1, t1) = (format!("ringmq://{}", b.native_addr), dq.clone(), tq.clone());
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        c.declare(&d1, true).await.unwrap();
        c.declare(&t1, false).await.unwrap();
        c.declare_exchange("keep", "topic", durable()).await.unwrap();
        c.declare_exchange("drop", "fanout", ExchangeOptions::default()).await.unwrap();
        c.bind_queue(&d1, "keep", "a.*", &[]).await.unwrap();
        c.bind_queue(&t1, "keep", "a.*", &[]).await.unwrap();
        c.bind_queue(&d1, "drop", "", &[]).await.unwrap();
        c.close().await;
    });
    b.stop().expect("the broker stops cleanly");
    let b = start(dir.path());
    let url = format!("ringmq://{}", b.native_addr);
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        c.declare_exchange_passive("keep").await.unwrap();
        assert_eq!(code(c.declare_exchange_passive("drop").await), Some(ErrorCode::ExchangeNotFound));
        // The transient queue is gone, and so is its binding: a new queue of
        // the same name gets nothing of a publish that reaches the durable one.
        assert_eq!(code(c.declare_passive(&tq).await.map(drop)), Some(ErrorCode::QueueNotFound));
        c.declare(&tq, false).await.unwrap();
        let mut sub = c.subscribe(&dq, 10).await.unwrap();
        let mut tsub = c.subscribe(&tq, 10).await.unwrap();
        publish(&c, "keep", "a.b", &["survived"], true).await.unwrap();
        got(&mut sub, &["survived"]).await;
        got(&mut tsub, &[]).await;
        c.close().await;
    });
    b.stop().expect("the broker stops cleanly");
}

/// A rejected message goes through its queue's dead-letter exchange (a
/// topic exchange here) with the dead-letter routing key, to a queue on
/// the other shard, with an `x-death` that names the exchange and routing
/// key it was first published with.
#[test]
fn dead_letters_route_through_an_exchange() {
    use ringmq::protocol::field_table::{TableBuilder, Value};
    use ringmq::protocol::props::Props;
    let b = TestBroker::start();
    let url = b.url();
    run_local(TEST_DEADLINE, move || async move {
        let c = connect(url).await;
        let (work, dead) = (queue_on(0, 2, "work"), queue_on(1, 2, "dead"));
        c.declare_exchange("dlx", "topic", ExchangeOptions::default()).await.unwrap();
        c.declare_exchange("in", "direct", ExchangeOptions::default()).await.unwrap();
        c.declare(&dead, false).await.unwrap();
        c.bind_queue(&dead, "dlx", "failed.#", &[]).await.unwrap();
        let args =
            TableBuilder::new().str("x-dead-letter-exchange", "dlx").str("x-dead-letter-routing-key", "failed.jobs");
        c.declare_with(&work, false, &args.build()).await.unwrap();
        c.bind_queue(&work, "in", "job", &[]).await.unwrap();
        publish(&c, "in", "job", &["j1"], false).await.unwrap();
        let mut sub = c.subscribe(&work, 10).await.unwrap();
        let d = within("delivery", STEP, sub.next()).await.unwrap().unwrap();
        sub.nack(d.tag, false);
        let mut dsub = c.subscribe(&dead, 10).await.unwrap();
        let d = within("dead letter", STEP, dsub.next()).await.unwrap().unwrap();
        assert_eq!(&d.body[..], b"j1");
        let props = Props::parse(&d.props).unwrap();
        let Some(Value::Array(deaths)) = props.headers.and_then(|h| h.get("x-death").cloned()) else {
            panic!("no x-death")
        };
        let Value::Table(t) = &deaths[0] else { panic!("x-death entry is not a table") };
        assert_eq!(t.get("reason").and_then(Value::as_str), Some("rejected"));
        assert_eq!(t.get("queue").and_then(Value::as_str), Some(work.as_str()));
        assert_eq!(t.get("exchange").and_then(Value::as_str), Some("in"));
        dsub.ack(d.tag);
    });
}

/// A routed publisher pauses, like a direct one, while a queue of its shard
/// that it routes to is over `publish_pause_messages` and has a consumer,
/// and resumes once the queue has drained to half.
#[test]
fn routed_publisher_pauses_on_a_deep_local_queue() {
    let b = TestBroker::start_with(2, |c| c.publish_pause_messages = 100);
    let (local, remote) = (queue_on(0, 2, "pause-l"), queue_on(1, 2, "pause-r"));
    let (mut p, shard) = Raw::hello(b.shards[0]);
    assert_eq!(shard, 0);
    for q in [&local, &remote] {
        p.declare(q);
    }
    let rid = p.send(Cmd::ExchangeDeclare { flags: 0, exchange: "pause-x", kind: "fanout", args: &[] });
    p.expect_ok(rid);
    for q in [&local, &remote] {
        let rid = p.send(Cmd::Bind { flags: 0, source: "pause-x", destination: q, routing_key: "", args: &[] });
        p.expect_ok(rid);
    }
    // A consumer that takes one message and never acks: the queue stays deep.
    let (mut slow, _) = Raw::hello(b.shards[0]);
    slow.subscribe(&local, 1);
    let first = p.publish_to("pause-x", 300);
    p.expect_confirm(first, 300);
    // Over the limit: the next batch is not even read.
    let second = p.publish_to("pause-x", 10);
    p.expect_silence();
    // A consumer that drains the queue lets the publisher go on.
    let (mut fast, _) = Raw::hello(b.shards[0]);
    let (cid, mut got) = fast.subscribe(&local, 1000);
    got.extend(fast.expect_deliveries(cid, 299 - got.len()));
    p.expect_confirm(second, 10);
}

/// A routed publisher pauses on a deep queue of another shard too: the
/// owner tells it (`PublishPaused`), as it tells a direct publisher, and
/// it resumes once the queue has drained to half. (A publisher on another
/// node goes the same way: `tests/cluster_queues.rs`.)
#[test]
fn routed_publisher_pauses_on_a_deep_queue_of_another_shard() {
    let b = TestBroker::start_with(2, |c| c.publish_pause_messages = 100);
    let remote = queue_on(1, 2, "rpause-r");
    let (mut p, shard) = Raw::hello(b.shards[0]);
    assert_eq!(shard, 0);
    p.declare(&remote);
    p.expect_routed_pause("rpause-x", &remote, b.shards[1]);
}
