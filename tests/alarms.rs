//! Resource alarms against a real broker over real sockets: a memory
//! alarm raised by a fast native publisher whose consumer stopped reading
//! (the process RSS stays bounded, nothing confirmed is lost, the
//! publisher hears Blocked and then Unblocked), and a disk alarm raised
//! and cleared through `disk_free_limit_bytes`. Consumers keep working
//! during both.
//!
//! The tests of this file run one at a time: the memory test measures the
//! RSS of this process, which the other test's broker would distort.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::BytesMut;
use common::{deliveries, queue_on, NoFrame, Raw, TestBroker, STEP};
use ringmq::protocol::{op, BatchWriter, Cmd, Frame};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `VmRSS` of this process (the broker runs in it), in bytes.
fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

/// One `Admin` command on a fresh connection; its JSON answer.
fn admin(addr: SocketAddr, command: u8, arg: &str) -> Value {
    let (mut c, _) = Raw::hello(addr);
    let rid = c.send(Cmd::Admin { command, arg });
    let f = c.recv();
    match f.frame() {
        Frame { request_id, cmd: Cmd::AdminOk { json } } if request_id == rid => {
            serde_json::from_str(json).expect("admin JSON")
        }
        other => panic!("expected AdminOk, got {other:?}"),
    }
}

/// `ctl alarms`' row for `kind`.
fn alarm_row(addr: SocketAddr, kind: &str) -> Value {
    let rows = admin(addr, op::ADMIN_ALARMS, "");
    rows.as_array().and_then(|r| r.iter().find(|r| r["kind"] == kind)).cloned().expect("an alarm row")
}

/// Polls `ctl alarms` until `check` holds on `kind`'s row (the monitor
/// decides every 100 ms), or fails.
fn wait_alarm(addr: SocketAddr, kind: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let row = alarm_row(addr, kind);
        if check(&row) {
            return row;
        }
        assert!(Instant::now() < end, "{what}: never happened; last {row}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP request with guest's basic auth: (status, body).
fn http(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, STEP).expect("connect to the metrics listener");
    s.set_read_timeout(Some(STEP)).unwrap();
    let auth = "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n";
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("a whole response");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw}"));
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Checks that `/metrics`, `/api/nodes` and the health check agree that
/// `kind`'s alarm is `on`.
fn check_reported(b: &TestBroker, kind: &str, on: bool) {
    let (_, metrics) = http(b.metrics, "/metrics");
    let line = format!("ringmq_alarm{{kind=\"{kind}\"}} {}", u8::from(on));
    assert!(metrics.lines().any(|l| l == line), "/metrics lacks {line:?}:\n{metrics}");
    let (status, nodes) = http(b.metrics, "/api/nodes");
    assert_eq!(status, 200, "{nodes}");
    let nodes: Value = serde_json::from_str(&nodes).unwrap();
    let field = if kind == "memory" { "mem_alarm" } else { "disk_free_alarm" };
    assert_eq!(nodes[0][field], on, "/api/nodes {field}: {nodes}");
    let (status, health) = http(b.metrics, "/api/health/checks/alarms");
    assert_eq!(status, if on { 503 } else { 200 }, "{health}");
    if on {
        assert!(health.contains(&format!("\"resource\":\"{kind}\"")), "{health}");
    }
}

/// What a publisher thread saw.
#[derive(Default)]
struct Seen {
    /// (sequence of the batch's first message, messages) per confirmed batch.
    confirmed: Vec<(u64, u32)>,
    /// `true` for Blocked (with its reason), `false` for Unblocked.
    events: Vec<(bool, String)>,
}

/// A native publisher at full speed: one thread writes Publish frames
/// (confirm on, `BATCH` messages of `BODY` bytes carrying sequence
/// numbers) until told to stop, another reads confirms and notices.
struct Publisher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    sent: Arc<AtomicU64>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

const BATCH: u64 = 16;
const BODY: usize = 4096;

impl Publisher {
    fn start(addr: SocketAddr, queue: String) -> Publisher {
        let (mut raw, _) = Raw::hello(addr);
        let mut w = raw.s.try_clone().unwrap();
        // Blocked means the broker stops reading: the write waits as long.
        w.set_write_timeout(None).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sent = Arc::new(AtomicU64::new(0));
        let batches: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
        let (st, bt, sn) = (stop.clone(), batches.clone(), sent.clone());
        let writer = std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut rid = 1_000;
            while !st.load(Ordering::SeqCst) {
                rid += 1;
                bt.lock().unwrap().insert(rid, seq);
                let mut b = BytesMut::new();
                let mut bw = BatchWriter::begin_publish(&mut b, rid, op::PUBLISH_CONFIRM, &queue);
                for i in 0..BATCH {
                    bw.push(&mut b, 0, &[], &common::seq_body(seq + i, BODY));
                }
                bw.finish(&mut b);
                w.write_all(&b).expect("publish write");
                seq += BATCH;
                sn.store(seq, Ordering::SeqCst);
            }
        });
        let (st, sv, sn) = (stop.clone(), seen.clone(), sent.clone());
        let reader = std::thread::spawn(move || loop {
            let done =
                |s: &Seen| st.load(Ordering::SeqCst) && s.confirmed.len() as u64 * BATCH == sn.load(Ordering::SeqCst);
            if done(&sv.lock().unwrap()) && batches.lock().unwrap().is_empty() {
                return;
            }
            let f = match raw.try_recv(Duration::from_millis(200)) {
                Ok(f) => f,
                Err(NoFrame::Timeout) => continue,
                Err(e) => panic!("publisher connection ended: {e:?}"),
            };
            let mut s = sv.lock().unwrap();
            match f.frame() {
                Frame { request_id, cmd: Cmd::Confirm { count } } => {
                    let first = batches.lock().unwrap().remove(&request_id).expect("a confirm for a sent batch");
                    assert_eq!(u64::from(count), BATCH, "whole batches are confirmed");
                    s.confirmed.push((first, count));
                }
                Frame { request_id: 0, cmd: Cmd::Blocked { reason } } => s.events.push((true, reason.to_string())),
                Frame { request_id: 0, cmd: Cmd::Unblocked } => s.events.push((false, String::new())),
                other => panic!("publisher got {other:?}"),
            }
        });
        Publisher { stop, seen, sent, writer, reader }
    }

    fn confirmed(&self) -> u64 {
        self.seen.lock().unwrap().confirmed.len() as u64 * BATCH
    }

    fn blocked_reason(&self) -> Option<String> {
        self.seen.lock().unwrap().events.first().filter(|e| e.0).map(|e| e.1.clone())
    }
}

/// Reads deliveries for `cid` and acks each frame's range, marking each
/// message's sequence number, until `enough(received)` holds.
fn drain(c: &mut Raw, cid: u32, got: &mut Vec<bool>, received: &mut u64, enough: impl Fn(u64) -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !enough(*received) {
        assert!(Instant::now() < end, "drained {received} messages, then nothing more");
        let f = match c.try_recv(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(NoFrame::Timeout) => continue,
            Err(e) => panic!("consumer connection ended: {e:?}"),
        };
        let ds = deliveries(&f);
        for d in &ds {
            assert_eq!(d.consumer_id, cid);
            let seq = common::body_seq(&d.body) as usize;
            if got.len() <= seq {
                got.resize(seq + 1, false);
            }
            assert!(!got[seq], "message {seq} delivered twice");
            got[seq] = true;
        }
        if let (Some(first), Some(last)) = (ds.first(), ds.last()) {
            c.ack(cid, &[(first.tag, last.tag)]);
        }
        *received += ds.len() as u64;
    }
}

/// A consumer on another queue works during an alarm: it subscribes,
/// gets what was published before, acks it (the queue then deletes as
/// empty).
fn other_consumer_works(addr: SocketAddr, queue: &str, n: usize) {
    let (mut c, _) = Raw::hello(addr);
    let (cid, mut got) = c.subscribe(queue, 1000);
    got.extend(c.expect_deliveries(cid, n - got.len()));
    c.ack(cid, &[(1, n as u64)]);
    let rid = c.send(Cmd::Unsubscribe { consumer_id: cid });
    c.expect_ok(rid);
    let rid = c.send(Cmd::Delete { flags: op::DELETE_IF_EMPTY, queue });
    assert_eq!(c.expect_ok(rid), 0, "acked during the alarm: the queue is empty");
}

/// The memory watermark of the memory test, and the RSS bound: the peak
/// RSS may pass the RSS before publishing by at most the watermark plus
/// 10 % of it. The broker runs in this process, so the bound covers what
/// the broker holds (queues, outboxes, read buffers, allocator slack), the
/// test's own threads (a few small buffers), and what arrives between the
/// watermark being passed and the monitor's next check (100 ms).
const WATERMARK: u64 = 64 << 20;

#[test]
fn memory_alarm_blocks_a_fast_publisher_and_loses_nothing_confirmed() {
    let _serial = serial();
    let b = TestBroker::start_with(2, |c| {
        c.memory_high_watermark_bytes = Some(WATERMARK);
        // Only the alarm stops the publisher here, not the queue's pause.
        c.publish_pause_bytes = 1 << 40;
        c.publish_pause_messages = 1 << 40;
    });
    let q = queue_on(0, 2, "alarm-mem");
    let other = queue_on(1, 2, "alarm-other");
    let (mut setup, _) = Raw::hello(b.shards[0]);
    setup.declare(&q);
    setup.declare(&other);
    for i in 0..10u64 {
        let bodies: Vec<Vec<u8>> = (0..10).map(|j| common::seq_body(i * 10 + j, 512)).collect();
        setup.publish_confirmed(&other, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
    // The consumer takes its prefetch and then stops reading.
    let (mut consumer, _) = Raw::hello(b.shards[0]);
    let (cid, early) = consumer.subscribe(&q, 256);
    assert!(early.is_empty());
    let baseline = vm_rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let (pk, sa) = (peak.clone(), sampling.clone());
    let sampler = std::thread::spawn(move || {
        while sa.load(Ordering::SeqCst) {
            pk.fetch_max(vm_rss(), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let started = Instant::now();
    let p = Publisher::start(b.shards[0], q.clone());
    let end = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        if let Some(r) = p.blocked_reason() {
            break r;
        }
        assert!(Instant::now() < end, "no Blocked after {} confirmed messages", p.confirmed());
        std::thread::sleep(Duration::from_millis(10));
    };
    let to_block = started.elapsed();
    assert!(reason.contains("memory alarm"), "{reason}");
    let row = wait_alarm(b.native, "memory", "memory alarm reported", |r| r["alarm"] == true);
    assert!(row["blocked_connections"].as_u64() >= Some(1), "{row}");
    check_reported(&b, "memory", true);
    // Blocked: nothing more is read, so nothing more is confirmed.
    let confirmed_at_block = p.confirmed();
    other_consumer_works(b.shards[1], &other, 100);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.confirmed(), confirmed_at_block, "a blocked publisher is not read");
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "memory alarm: blocked after {to_block:?} and {confirmed_at_block} confirmed messages of {BODY} bytes; \
         RSS baseline {baseline}, peak {peak}, grown {grown} (watermark {WATERMARK}); accounted {}",
        row["bytes"]
    );
    assert!(grown <= WATERMARK + WATERMARK / 10, "RSS grew by {grown} bytes, over the watermark {WATERMARK} + 10 %");
    // The publisher stops once it can write again; the consumer resumes.
    p.stop.store(true, Ordering::SeqCst);
    let mut got = Vec::new();
    let mut received = 0;
    let sent = p.sent.clone();
    let writer = p.writer;
    drain(&mut consumer, cid, &mut got, &mut received, |n| writer.is_finished() && n == sent.load(Ordering::SeqCst));
    writer.join().unwrap();
    p.reader.join().unwrap();
    let seen = p.seen.lock().unwrap();
    for &(first, count) in &seen.confirmed {
        for seq in first..first + u64::from(count) {
            assert!(got.get(seq as usize) == Some(&true), "confirmed message {seq} was not delivered");
        }
    }
    assert_eq!(received, sent.load(Ordering::SeqCst), "every published message arrived, once");
    assert!(seen.events.len() >= 2, "Blocked, then Unblocked: {:?}", seen.events);
    for (i, (blocked, _)) in seen.events.iter().enumerate() {
        assert_eq!(*blocked, i % 2 == 0, "notices alternate: {:?}", seen.events);
    }
    assert!(!seen.events.last().unwrap().0, "it ends unblocked");
    wait_alarm(b.native, "memory", "memory alarm cleared", |r| r["alarm"] == false);
    check_reported(&b, "memory", false);
}

/// Publishes one confirmed batch and returns its request id.
fn publish(c: &mut Raw, q: &str, first: u64) -> u64 {
    let bodies: Vec<Vec<u8>> = (first..first + 4).map(|s| common::seq_body(s, 64)).collect();
    c.publish(q, &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>(), true)
}

fn expect_blocked(c: &mut Raw) -> String {
    match c.recv().frame() {
        Frame { request_id: 0, cmd: Cmd::Blocked { reason } } => reason.to_string(),
        other => panic!("expected Blocked, got {other:?}"),
    }
}

fn expect_unblocked(c: &mut Raw) {
    match c.recv().frame() {
        Frame { request_id: 0, cmd: Cmd::Unblocked } => {}
        other => panic!("expected Unblocked, got {other:?}"),
    }
}

#[test]
fn disk_alarm_blocks_publishers_until_the_limit_is_set_back() {
    let _serial = serial();
    // More free space than any disk has: the alarm is raised at start.
    let b = TestBroker::start_with(2, |c| c.disk_free_limit_bytes = 1 << 60);
    wait_alarm(b.native, "disk", "disk alarm at start", |r| r["alarm"] == true);
    check_reported(&b, "disk", true);
    let q = queue_on(1, 2, "alarm-disk");
    let (mut p, _) = Raw::hello(b.shards[1]);
    p.declare(&q);
    // The publish that is read is handled and confirmed; then the
    // connection is told, and no longer read.
    let rid = publish(&mut p, &q, 0);
    p.expect_confirm(rid, 4);
    let reason = expect_blocked(&mut p);
    assert!(reason.contains("disk alarm") && reason.contains("disk_free_limit_bytes"), "{reason}");
    let second = publish(&mut p, &q, 4);
    p.expect_silence();
    let row = wait_alarm(b.native, "disk", "blocked connection counted", |r| r["blocked_connections"] == 1);
    assert!(row["bytes"].as_u64() < row["limit_bytes"].as_u64(), "{row}");
    // A connection that does not publish is served, and a consumer gets
    // what was stored and acks it.
    let (mut c, _) = Raw::hello(b.shards[0]);
    c.ping();
    let (cid, mut got) = c.subscribe(&q, 100);
    got.extend(c.expect_deliveries(cid, 4 - got.len()));
    c.ack(cid, &[(1, 4)]);
    // Set back: the publisher is read again and its waiting batch goes in.
    let set = admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, "0");
    assert_eq!(set["bytes"], 0, "{set}");
    expect_unblocked(&mut p);
    p.expect_confirm(second, 4);
    let got = c.expect_deliveries(cid, 4);
    assert_eq!(common::body_seq(&got[0].body), 4);
    wait_alarm(b.native, "disk", "disk alarm cleared", |r| r["alarm"] == false);
    check_reported(&b, "disk", false);
    // Raised again at run time; a bad value is refused with a reason.
    let bad = admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, "lots");
    assert!(bad["error"].as_str().is_some_and(|e| e.contains("bytes")), "{bad}");
    admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, &(1u64 << 60).to_string());
    wait_alarm(b.native, "disk", "disk alarm raised again", |r| r["alarm"] == true);
    let third = publish(&mut p, &q, 8);
    p.expect_confirm(third, 4);
    expect_blocked(&mut p);
    admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, "0");
    expect_unblocked(&mut p);
    c.expect_deliveries(cid, 4);
    p.ping();
}

/// Waits until `f` holds, polling (the client's reader task updates the
/// state it reads).
async fn until(what: &str, f: impl Fn() -> bool) {
    common::within(what, STEP, async {
        while !f() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[test]
fn client_library_reports_blocked_and_unblocked() {
    use ringmq::client::{blocking, Client, ClientOptions, ProducerOptions};
    let _serial = serial();
    let b = TestBroker::start_with(2, |c| c.disk_free_limit_bytes = 1 << 60);
    wait_alarm(b.native, "disk", "disk alarm at start", |r| r["alarm"] == true);
    let opts = ClientOptions { url: b.url(), ..Default::default() };
    let native = b.native;
    let o = opts.clone();
    common::run_local(common::TEST_DEADLINE, move || async move {
        let c = Client::connect(o).await.unwrap();
        let q = "alarm-client";
        c.declare(q, false).await.unwrap();
        let p = c.producer(q, ProducerOptions::default()).await.unwrap();
        // Read and confirmed; then the connection is blocked.
        p.send(b"first").await.unwrap();
        until("Blocked", || p.blocked().is_some()).await;
        assert!(p.blocked().unwrap().contains("disk alarm"), "{:?}", p.blocked());
        let second = p.publish(b"second").await.unwrap();
        p.flush().unwrap();
        assert!(common::maybe_within(Duration::from_millis(300), second).await.is_none(), "not read while blocked");
        admin(native, op::ADMIN_SET_DISK_FREE_LIMIT, "0");
        common::within("Unblocked", STEP, p.conn().wait_unblocked()).await;
        assert_eq!(p.blocked(), None);
        p.send(b"third").await.unwrap();
        assert_eq!(c.declare_passive(q).await.unwrap(), 3, "all three are in");
    });
    admin(native, op::ADMIN_SET_DISK_FREE_LIMIT, &(1u64 << 60).to_string());
    wait_alarm(native, "disk", "disk alarm again", |r| r["alarm"] == true);
    let mut c = blocking::Client::connect(opts).unwrap();
    let q = "alarm-blocking";
    c.declare(q, false).unwrap();
    let sub = c.subscribe(q, 10).unwrap();
    c.publish(q, &[b"one"], false).unwrap();
    let end = Instant::now() + STEP;
    while c.blocked().is_none() {
        assert!(Instant::now() < end, "the blocking client never heard Blocked");
        c.recv(&sub, Duration::from_millis(50)).unwrap();
    }
    assert!(c.blocked().unwrap().contains("disk alarm"));
    admin(native, op::ADMIN_SET_DISK_FREE_LIMIT, "0");
    let end = Instant::now() + STEP;
    while c.blocked().is_some() {
        assert!(Instant::now() < end, "the blocking client never heard Unblocked");
        c.recv(&sub, Duration::from_millis(50)).unwrap();
    }
    c.publish(q, &[b"two"], false).unwrap();
}

/// Blocked and Unblocked are the broker's to send: from a client they
/// end the connection (the stream is not a client's).
#[test]
fn a_client_sending_blocked_loses_its_connection() {
    let _serial = serial();
    let b = TestBroker::start_with(1, |_| {});
    for cmd in [Cmd::Blocked { reason: "no" }, Cmd::Unblocked] {
        let (mut c, _) = Raw::hello(b.native);
        c.send(cmd);
        let (_, message) = c.expect_error(ringmq::protocol::ErrorCode::BadFrame);
        assert!(message.contains("sent by the server"), "{message}");
        c.expect_closed();
    }
}

/// `ringmq ctl alarms`, `set-disk-free-limit` and
/// `set-memory-high-watermark`, the binary against a live broker.
#[test]
fn ctl_shows_and_sets_the_alarms() {
    let _serial = serial();
    let b = TestBroker::start_with(1, |_| {});
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq"))
            .args(["ctl", "--url", &b.url()])
            .args(args)
            .output()
            .expect("run ringmq ctl");
        let stdout = String::from_utf8(out.stdout).unwrap();
        (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, table, _) = ctl(&["alarms"]);
    assert!(ok);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("kind") && header.contains("limit_bytes"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("memory") && l.contains("false")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("disk") && l.contains("50000000")), "{table}");
    let (ok, out, _) = ctl(&["set-disk-free-limit", "1152921504606846976"]);
    assert!(ok && out.contains("disk_free_limit_bytes"), "{out}");
    wait_alarm(b.native, "disk", "disk alarm set by ctl", |r| r["alarm"] == true);
    let (ok, json, _) = ctl(&["--json", "alarms"]);
    let rows: Value = serde_json::from_str(json.trim()).unwrap();
    assert!(ok && rows[1]["kind"] == "disk" && rows[1]["alarm"] == true, "{json}");
    let (ok, _, err) = ctl(&["set-memory-high-watermark", "1000"]);
    assert!(!ok && err.contains("at least 1048576"), "{err}");
    let (ok, _, _) = ctl(&["set-memory-high-watermark", "1048576"]);
    assert!(ok);
    assert_eq!(alarm_row(b.native, "memory")["limit_bytes"], 1 << 20);
    ctl(&["set-disk-free-limit", "0"]);
    wait_alarm(b.native, "disk", "disk alarm cleared by ctl", |r| r["alarm"] == false);
}

/// Messages spilled past `memory_budget_bytes` (entries on disk) count at
/// their in-memory cost, not their size: a durable backlog on disk does
/// not raise the memory alarm.
#[test]
fn spilled_messages_count_at_their_in_memory_cost() {
    use ringmq::client::{blocking, ClientOptions};
    let _serial = serial();
    let b = TestBroker::start_with(1, |c| c.memory_budget_bytes = 1 << 20);
    let mut c = blocking::Client::connect(ClientOptions { url: b.url(), ..Default::default() }).unwrap();
    let q = "alarm-spilled";
    c.declare(q, true).unwrap();
    let body = vec![5u8; BODY];
    for _ in 0..40 {
        c.publish(q, &[body.as_slice(); 50], true).unwrap();
    }
    let ready_bytes = 2000 * BODY as u64;
    let (_, metrics) = http(b.metrics, "/metrics");
    let spilled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringmq_messages_spilled ")?.parse().ok())
        .expect("ringmq_messages_spilled");
    assert!(spilled > 1000, "most of the backlog is on disk: {spilled}");
    let row = wait_alarm(b.native, "memory", "accounted bytes published", |r| r["bytes"].as_u64() > Some(0));
    let accounted = row["bytes"].as_u64().unwrap();
    eprintln!("{ready_bytes} bytes ready, {spilled} messages spilled, {accounted} bytes accounted");
    assert!(accounted < ready_bytes / 2, "accounted {accounted} for {ready_bytes} bytes mostly on disk");
}

/// A blocked connection can still be closed by an operator: it hears why
/// and goes, and no longer counts as blocked.
#[test]
fn a_blocked_connection_can_be_closed() {
    let _serial = serial();
    let b = TestBroker::start_with(1, |c| c.disk_free_limit_bytes = 1 << 60);
    wait_alarm(b.native, "disk", "disk alarm at start", |r| r["alarm"] == true);
    let (mut p, _) = Raw::hello(b.native);
    p.declare("alarm-close");
    let rid = publish(&mut p, "alarm-close", 0);
    p.expect_confirm(rid, 4);
    expect_blocked(&mut p);
    wait_alarm(b.native, "disk", "counted as blocked", |r| r["blocked_connections"] == 1);
    let me = p.s.local_addr().unwrap().to_string();
    let conns = admin(b.native, op::ADMIN_LIST_CONNECTIONS, "");
    let name = conns.as_array().unwrap().iter().find(|c| c["peer"] == me.as_str()).expect("listed")["name"].clone();
    let closed = admin(b.native, op::ADMIN_CLOSE_CONNECTION, name.as_str().unwrap());
    assert_eq!(closed["closed"], true, "{closed}");
    p.expect_error(ringmq::protocol::ErrorCode::ShuttingDown);
    p.expect_closed();
    wait_alarm(b.native, "disk", "no longer counted", |r| r["blocked_connections"] == 0);
}
