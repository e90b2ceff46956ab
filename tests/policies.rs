//! Queue policies over the native protocol, against a real 2-shard broker:
//! TTL (queue and per message, expiry at the head), x-expires, length
//! limits with each overflow mode, dead-lettering with x-death (across
//! shards), cycles, priorities, single active consumer, argument checks,
//! and durable queue arguments across a restart. AMQP clients: pika
//! scripts `tests/pika/policies_*.py` (run from tests/amqp_pika.rs).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::BytesMut;
use common::{queue_on, Raw, TestBroker};
use ringmq::protocol::field_table::{TableBuilder, Value};
use ringmq::protocol::props::{Props, PropsBuilder};
use ringmq::protocol::{op, BatchWriter, Cmd, ErrorCode, Frame};
use std::time::{Duration, Instant};

/// A delivered or got message with its properties.
#[derive(Debug, Clone)]
struct Msg {
    tag: u64,
    redelivered: bool,
    props: Vec<u8>,
    body: String,
}

impl Msg {
    fn header(&self, key: &str) -> Option<Value> {
        Props::parse(&self.props).ok()?.headers?.get(key).cloned()
    }

    /// `x-death` as (queue, reason, count, exchange, routing keys).
    fn deaths(&self) -> Vec<(String, String, i128, String, Vec<String>)> {
        let Some(Value::Array(a)) = self.header("x-death") else { return Vec::new() };
        a.iter()
            .map(|v| {
                let Value::Table(t) = v else { panic!("x-death entry is not a table: {v:?}") };
                let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("no {k}")).to_string();
                let keys = match t.get("routing-keys") {
                    Some(Value::Array(k)) => k.iter().filter_map(Value::as_str).map(String::from).collect(),
                    other => panic!("routing-keys: {other:?}"),
                };
                assert!(matches!(t.get("time"), Some(Value::Timestamp(_))), "time is a timestamp");
                (s("queue"), s("reason"), t.get("count").and_then(Value::as_int).unwrap(), s("exchange"), keys)
            })
            .collect()
    }
}

fn args(b: TableBuilder) -> Vec<u8> {
    b.build()
}

fn declare(r: &mut Raw, queue: &str, flags: u8, args: &[u8]) -> Result<u64, (ErrorCode, String)> {
    let rid = r.send(Cmd::Declare { flags, queue, args });
    let f = r.recv();
    match f.frame() {
        Frame { request_id, cmd: Cmd::Ok { value } } if request_id == rid => Ok(value),
        Frame { request_id, cmd: Cmd::Error { code, message, .. } } if request_id == rid => {
            Err((ErrorCode::from_u16(code).expect("known code"), message.to_string()))
        }
        other => panic!("expected the Declare's answer, got {other:?}"),
    }
}

fn ready(r: &mut Raw, queue: &str) -> u64 {
    declare(r, queue, op::DECLARE_PASSIVE, &[]).expect("queue exists")
}

/// One Publish frame with (props, body) messages; returns its request id.
fn publish(r: &mut Raw, queue: &str, msgs: &[(&[u8], &str)], confirm: bool) -> u64 {
    let rid = r.rid();
    let flags = if confirm { op::PUBLISH_CONFIRM } else { 0 };
    let mut b = BytesMut::new();
    let mut w = BatchWriter::begin_publish(&mut b, rid, flags, queue);
    for (props, body) in msgs {
        w.push(&mut b, 0, props, body.as_bytes());
    }
    w.finish(&mut b);
    r.write(&b);
    rid
}

fn publish_ok(r: &mut Raw, queue: &str, bodies: &[&str]) {
    let msgs: Vec<(&[u8], &str)> = bodies.iter().map(|b| (&[][..], *b)).collect();
    let rid = publish(r, queue, &msgs, true);
    r.expect_confirm(rid, bodies.len() as u32);
}

fn get(r: &mut Raw, queue: &str) -> Option<Msg> {
    let cid = r.consumer_id();
    let rid = r.send(Cmd::Get { no_ack: true, consumer_id: cid, queue });
    let f = r.recv();
    match f.frame() {
        Frame { request_id, cmd: Cmd::GetOk { tag, entry, .. } } if request_id == rid => Some(Msg {
            tag,
            redelivered: entry.redelivered(),
            props: entry.props.to_vec(),
            body: String::from_utf8_lossy(entry.body).into_owned(),
        }),
        Frame { request_id, cmd: Cmd::GetEmpty } if request_id == rid => None,
        other => panic!("expected GetOk or GetEmpty, got {other:?}"),
    }
}

/// Deliveries for `cid` until `n` have arrived.
fn delivered(r: &mut Raw, cid: u32, n: usize) -> Vec<Msg> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = r.recv();
        match f.frame().cmd {
            Cmd::Deliver { consumer_id, first_tag, entries, .. } if consumer_id == cid => {
                out.extend(entries.iter().enumerate().map(|(i, e)| Msg {
                    tag: first_tag + i as u64,
                    redelivered: e.redelivered(),
                    props: e.props.to_vec(),
                    body: String::from_utf8_lossy(e.body).into_owned(),
                }))
            }
            other => panic!("expected a Deliver for {cid}, got {other:?}"),
        }
    }
    out
}

fn subscribe(r: &mut Raw, queue: &str, prefetch: u32) -> u32 {
    let cid = r.consumer_id();
    let rid = r.send(Cmd::Subscribe { consumer_id: cid, prefetch, queue, priority: 0, origin: false });
    r.expect_ok(rid);
    cid
}

fn bodies(m: &[Msg]) -> Vec<&str> {
    m.iter().map(|m| m.body.as_str()).collect()
}

/// Polls `f` until it holds (deadlines are timer-driven), or fails.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < end, "{what}: not within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dlx_to(queue: &str) -> TableBuilder {
    TableBuilder::new().str("x-dead-letter-exchange", "").str("x-dead-letter-routing-key", queue)
}

#[test]
fn ttl_zero_expires_unless_a_consumer_is_waiting() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let q = queue_on(1, 2, "ttl0");
    declare(&mut r, &q, 0, &args(TableBuilder::new().int("x-message-ttl", 0))).unwrap();
    publish_ok(&mut r, &q, &["nobody"]);
    assert_eq!(ready(&mut r, &q), 0, "expired at once: no consumer was waiting");
    let (mut c, _) = Raw::hello(b.native);
    let cid = subscribe(&mut c, &q, 10);
    publish_ok(&mut r, &q, &["waited-for"]);
    assert_eq!(bodies(&delivered(&mut c, cid, 1)), ["waited-for"]);
}

#[test]
fn message_ttl_dead_letters_to_a_queue_on_another_shard_with_x_death() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (src, dlq) = (queue_on(0, 2, "ttl-src"), queue_on(1, 2, "ttl-dlq"));
    declare(&mut r, &dlq, 0, &[]).unwrap();
    declare(&mut r, &src, 0, &args(dlx_to(&dlq).int("x-message-ttl", 50))).unwrap();
    let props = PropsBuilder::new().content_type("text/plain").message_id("m-1").build();
    let rid = publish(&mut r, &src, &[(&props, "expiring")], true);
    r.expect_confirm(rid, 1);
    eventually("the message reaches the dead-letter queue", || ready(&mut r, &dlq) == 1);
    assert_eq!(ready(&mut r, &src), 0);
    let m = get(&mut r, &dlq).expect("dead-lettered message");
    assert_eq!(m.body, "expiring");
    assert_eq!(m.deaths(), vec![(src.clone(), "expired".into(), 1, String::new(), vec![src.clone()])]);
    assert_eq!(m.header("x-first-death-reason"), Some(Value::str("expired")));
    assert_eq!(m.header("x-first-death-queue"), Some(Value::str(&src)));
    assert_eq!(m.header("x-first-death-exchange"), Some(Value::str("")));
    let p = Props::parse(&m.props).unwrap();
    assert_eq!(p.short(ringmq::protocol::props::MESSAGE_ID), Some(&b"m-1"[..]), "other properties intact");
}

#[test]
fn per_message_expiration_applies_at_the_head_only() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let q = queue_on(0, 2, "exp");
    declare(&mut r, &q, 0, &[]).unwrap();
    let short = PropsBuilder::new().expiration_ms(30).build();
    // Head expires; a short-lived message behind a long-lived head waits.
    let rid = publish(&mut r, &q, &[(&short, "gone"), (&[], "stays"), (&short, "behind")], true);
    r.expect_confirm(rid, 3);
    eventually("the expired head is removed by the timer", || ready(&mut r, &q) == 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ready(&mut r, &q), 2, "'behind' is not at the head: RabbitMQ keeps it too");
    assert_eq!(get(&mut r, &q).map(|m| m.body), Some("stays".into()));
    assert!(get(&mut r, &q).is_none(), "now at the head, 'behind' is expired, never delivered");
}

#[test]
fn x_expires_deletes_a_queue_only_while_unused() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (idle, used) = (queue_on(0, 2, "xexp"), queue_on(1, 2, "xexp"));
    let a = args(TableBuilder::new().int("x-expires", 200));
    declare(&mut r, &idle, 0, &a).unwrap();
    declare(&mut r, &used, 0, &a).unwrap();
    let cid = subscribe(&mut r, &used, 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(declare(&mut r, &idle, op::DECLARE_PASSIVE, &[]).unwrap_err().0, ErrorCode::QueueNotFound);
    assert_eq!(ready(&mut r, &used), 0, "a queue with a consumer is in use");
    let rid = r.send(Cmd::Unsubscribe { consumer_id: cid });
    r.expect_ok(rid);
    // Not polled: a passive declare is a use too (RabbitMQ's `stat`).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(declare(&mut r, &used, op::DECLARE_PASSIVE, &[]).unwrap_err().0, ErrorCode::QueueNotFound);
}

#[test]
fn drop_head_dead_letters_the_oldest_with_reason_maxlen() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (q, dl) = (queue_on(0, 2, "dh"), queue_on(1, 2, "dh-dl"));
    declare(&mut r, &dl, 0, &[]).unwrap();
    declare(&mut r, &q, 0, &args(dlx_to(&dl).int("x-max-length", 2))).unwrap();
    publish_ok(&mut r, &q, &["0", "1", "2"]);
    assert_eq!(ready(&mut r, &q), 2);
    eventually("the head is dead-lettered", || ready(&mut r, &dl) == 1);
    let m = get(&mut r, &dl).unwrap();
    assert_eq!(m.body, "0");
    assert_eq!(m.deaths()[0].1, "maxlen");
    assert_eq!(get(&mut r, &q).map(|m| m.body), Some("1".into()));
    // Bytes of bodies: 3 + 3 > 5 drops the first.
    let qb = queue_on(1, 2, "dh-bytes");
    declare(&mut r, &qb, 0, &args(TableBuilder::new().int("x-max-length-bytes", 5))).unwrap();
    publish_ok(&mut r, &qb, &["aaa", "bbb"]);
    assert_eq!(get(&mut r, &qb).map(|m| m.body), Some("bbb".into()));
}

#[test]
fn reject_publish_refuses_the_batch_and_reject_publish_dlx_dead_letters_it() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (q, qd, dl) = (queue_on(0, 2, "rp"), queue_on(1, 2, "rpd"), queue_on(0, 2, "rpd-dl"));
    declare(&mut r, &q, 0, &args(TableBuilder::new().int("x-max-length", 1).str("x-overflow", "reject-publish")))
        .unwrap();
    publish_ok(&mut r, &q, &["in"]);
    let rid = publish(&mut r, &q, &[(&[], "out")], true);
    let (erid, msg) = r.expect_error(ErrorCode::QueueFull);
    assert_eq!(erid, rid);
    assert!(msg.contains("x-max-length 1") && msg.contains("reject-publish"), "{msg}");
    assert_eq!(get(&mut r, &q).map(|m| m.body), Some("in".into()));
    declare(&mut r, &dl, 0, &[]).unwrap();
    let a = dlx_to(&dl).int("x-max-length", 1).str("x-overflow", "reject-publish-dlx");
    declare(&mut r, &qd, 0, &args(a)).unwrap();
    publish_ok(&mut r, &qd, &["kept"]);
    let rid = publish(&mut r, &qd, &[(&[], "refused")], true);
    assert_eq!(r.expect_error(ErrorCode::QueueFull).0, rid);
    eventually("the refused message is dead-lettered", || ready(&mut r, &dl) == 1);
    let m = get(&mut r, &dl).unwrap();
    assert_eq!((m.body.as_str(), m.deaths()[0].1.as_str()), ("refused", "maxlen"));
    assert_eq!(ready(&mut r, &qd), 1);
}

#[test]
fn priorities_deliver_highest_first_fifo_within() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let q = queue_on(1, 2, "prio");
    declare(&mut r, &q, 0, &args(TableBuilder::new().int("x-max-priority", 5))).unwrap();
    let p = |n| PropsBuilder::new().priority(n).build();
    let (p0, p3, p5, p9) = (p(0), p(3), p(5), p(9));
    let msgs: Vec<(&[u8], &str)> =
        vec![(&p0, "p0-a"), (&p3, "p3-a"), (&p9, "p9-capped"), (&[], "none"), (&p5, "p5"), (&p3, "p3-b")];
    let rid = publish(&mut r, &q, &msgs, true);
    r.expect_confirm(rid, 6);
    let cid = subscribe(&mut r, &q, 100);
    assert_eq!(bodies(&delivered(&mut r, cid, 6)), ["p9-capped", "p5", "p3-a", "p3-b", "p0-a", "none"]);
}

#[test]
fn single_active_consumer_fails_over_with_unacked_redelivered() {
    let b = TestBroker::start();
    let q = queue_on(0, 2, "sac");
    let (mut first, _) = Raw::hello(b.native);
    let (mut second, _) = Raw::hello(b.native);
    declare(&mut first, &q, 0, &args(TableBuilder::new().bool("x-single-active-consumer", true))).unwrap();
    let c1 = subscribe(&mut first, &q, 2);
    let c2 = subscribe(&mut second, &q, 10);
    let (mut publisher, _) = Raw::hello(b.native);
    publish_ok(&mut publisher, &q, &["0", "1", "2", "3"]);
    assert_eq!(bodies(&delivered(&mut first, c1, 2)), ["0", "1"]);
    second.expect_silence();
    drop(first);
    let got = delivered(&mut second, c2, 4);
    assert_eq!(bodies(&got), ["0", "1", "2", "3"]);
    assert_eq!(got.iter().map(|m| m.redelivered).collect::<Vec<_>>(), [true, true, false, false]);
    assert_eq!(got[0].tag, 1);
}

#[test]
fn nack_without_requeue_dead_letters_with_reason_rejected() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (q, dl) = (queue_on(1, 2, "rej"), queue_on(0, 2, "rej-dl"));
    declare(&mut r, &dl, 0, &[]).unwrap();
    declare(&mut r, &q, 0, &args(dlx_to(&dl))).unwrap();
    publish_ok(&mut r, &q, &["bad", "good"]);
    let cid = subscribe(&mut r, &q, 10);
    let got = delivered(&mut r, cid, 2);
    r.nack(cid, false, &[(got[0].tag, got[0].tag)]);
    r.ack(cid, &[(got[1].tag, got[1].tag)]);
    eventually("the rejected message is dead-lettered", || ready(&mut r, &dl) == 1);
    let m = get(&mut r, &dl).unwrap();
    assert_eq!(m.body, "bad");
    assert_eq!(m.deaths(), vec![(q.clone(), "rejected".into(), 1, String::new(), vec![q.clone()])]);
}

#[test]
fn an_automatic_dead_letter_cycle_stops_on_the_second_pass() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let (a, bq) = (queue_on(0, 2, "cyc-a"), queue_on(1, 2, "cyc-b"));
    declare(&mut r, &a, 0, &args(dlx_to(&bq).int("x-message-ttl", 30))).unwrap();
    declare(&mut r, &bq, 0, &args(dlx_to(&a).int("x-message-ttl", 30))).unwrap();
    publish_ok(&mut r, &a, &["loop"]);
    // a -> b (dead-lettered), b -> a would close the cycle: dropped.
    let metrics = |n: &str| {
        let text = common::http_get(b.metrics, "/metrics");
        text.lines().find_map(|l| l.strip_prefix(n)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap()
    };
    eventually("the cycle is cut", || metrics("ringmq_messages_dead_lettered_dropped_total") == 1.0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(metrics("ringmq_messages_dead_lettered_total"), 1.0, "dead-lettered once, a to b");
    assert_eq!(metrics("ringmq_messages_dead_lettered_dropped_total"), 1.0, "not spinning");
    assert_eq!((ready(&mut r, &a), ready(&mut r, &bq)), (0, 0));
}

#[test]
fn bad_and_inequivalent_arguments_are_refused() {
    let b = TestBroker::start();
    let (mut r, _) = Raw::hello(b.native);
    let q = queue_on(0, 2, "bad-args");
    for (a, what) in [
        (TableBuilder::new().int("x-max-priority", 256), "x-max-priority"),
        (TableBuilder::new().int("x-message-ttl", -1), "x-message-ttl"),
        (TableBuilder::new().str("x-overflow", "drop-tail"), "x-overflow"),
        (TableBuilder::new().str("x-queue-type", "quorum"), "quorum"),
    ] {
        let (code, msg) = declare(&mut r, &q, 0, &args(a)).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidArgument);
        assert!(msg.contains(what), "{msg}");
    }
    // Unknown x- arguments are ignored, as RabbitMQ does.
    let ok = args(TableBuilder::new().int("x-max-length", 5).str("x-queue-mode", "lazy"));
    declare(&mut r, &q, 0, &ok).unwrap();
    declare(&mut r, &q, 0, &ok).unwrap();
    let (code, msg) = declare(&mut r, &q, 0, &args(TableBuilder::new().int("x-max-length", 6))).unwrap_err();
    assert_eq!(code, ErrorCode::QueueMismatch);
    assert!(msg.contains("inequivalent arg 'x-max-length'"), "{msg}");
    assert_eq!(declare(&mut r, &q, 0, &[]).unwrap_err().0, ErrorCode::QueueMismatch);
    assert_eq!(ready(&mut r, &q), 0, "a passive declare ignores arguments");
}

#[test]
fn durable_queue_arguments_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let q = queue_on(1, 2, "durable-args");
    let a = args(TableBuilder::new().int("x-max-length", 2).int("x-max-priority", 3));
    {
        let d = data.clone();
        let b = TestBroker::start_with(2, move |c| c.data_dir = d);
        let (mut r, _) = Raw::hello(b.native);
        declare(&mut r, &q, op::DECLARE_DURABLE, &a).unwrap();
    }
    // Segments roll at restart: the arguments are logged again with the
    // queue's declare in every new segment, so a second restart works too.
    for _ in 0..2 {
        let d = data.clone();
        let b = TestBroker::start_with(2, move |c| c.data_dir = d);
        let (mut r, _) = Raw::hello(b.native);
        let (code, msg) = declare(&mut r, &q, op::DECLARE_DURABLE, &[]).unwrap_err();
        assert_eq!(code, ErrorCode::QueueMismatch, "{msg}");
        declare(&mut r, &q, op::DECLARE_DURABLE, &a).unwrap();
        let p = PropsBuilder::new().priority(3).build();
        let rid = publish(&mut r, &q, &[(&[], "a"), (&p, "hi")], true);
        r.expect_confirm(rid, 2);
        assert_eq!(get(&mut r, &q).map(|m| m.body), Some("hi".into()), "x-max-priority still applies");
        publish_ok(&mut r, &q, &["b", "c"]);
        assert_eq!(ready(&mut r, &q), 2, "x-max-length still applies");
        assert_eq!(get(&mut r, &q).map(|m| m.body), Some("b".into()));
        assert_eq!(get(&mut r, &q).map(|m| m.body), Some("c".into()));
    }
}
