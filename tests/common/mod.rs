//! Helpers shared by the integration tests: a real broker on 127.0.0.1:0
//! with a temporary data dir, a bounded glommio executor for client code,
//! and a raw protocol connection over std sockets for byte-exact tests.
//!
//! Everything here is bounded in time: a test that hits a broker bug fails
//! with a message instead of hanging.

#![allow(dead_code)]

pub mod lapin_thread;
pub mod pika;
pub mod process;
pub mod recovery;
pub mod scrape;
pub mod tls;

use bytes::BytesMut;
use ringmq::protocol::{self, BatchWriter, Cmd, Decoded, ErrorCode, Frame};
use ringmq::server::config::Config;
use ringmq::server::Broker;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options for a one-shard log in `dir` driven directly (no broker):
/// `segment_bytes` segments, fsync always, nothing kept past a budget.
pub fn log_options(dir: &std::path::Path, segment_bytes: u64) -> ringmq::storage::StorageOptions {
    ringmq::storage::StorageOptions {
        dir: dir.to_path_buf(),
        shard: 0,
        shard_count: 1,
        segment_bytes,
        fsync: ringmq::storage::FsyncPolicy::Always,
        fsync_interval_ms: 10,
        skip_corrupt: false,
        compact_live_ratio_pct: 25,
        segments_recycled_max: 2,
        resident_bytes_max: u64::MAX,
    }
}

/// How long one expected step (a reply, a delivery) may take.
pub const STEP: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that nothing more arrives.
pub const QUIET: Duration = Duration::from_millis(300);
/// The whole client body of one test.
pub const TEST_DEADLINE: Duration = Duration::from_secs(40);

/// A broker running in this process; stopped on drop (also when the test
/// fails), with its data dir removed after.
pub struct TestBroker {
    broker: Option<Broker>,
    pub native: SocketAddr,
    pub shards: Vec<SocketAddr>,
    /// The AMQP 0-9-1 listener.
    pub amqp: SocketAddr,
    /// Prometheus `/metrics` and the HTTP management API.
    pub metrics: SocketAddr,
    /// The TLS listeners, when the config turns them on: the native
    /// protocol (shared, and each shard's own), AMQPS, HTTPS.
    pub tls: Option<SocketAddr>,
    pub tls_shards: Vec<SocketAddr>,
    pub amqps: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    _dir: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts `cores` shards on 127.0.0.1:0; `tweak` adjusts the config.
    pub fn start_with(cores: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        Self::start_at(Some(dir), data, cores, tweak)
    }

    /// As `start_with`, on a data dir the caller keeps (for restarts).
    pub fn start_in(data: &std::path::Path, cores: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_at(None, data.to_path_buf(), cores, tweak)
    }

    fn start_at(dir: Option<tempfile::TempDir>, data: PathBuf, cores: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            cores,
            listen: "127.0.0.1:0".parse().unwrap(),
            amqp_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data,
            pin_cores: false,
            ..Default::default()
        };
        tweak(&mut config);
        let broker = Broker::start(config).expect("broker starts");
        assert_eq!(broker.shard_addrs.len(), cores, "one address per shard");
        let native = broker.native_addr;
        let shards = broker.shard_addrs.clone();
        let amqp = broker.amqp_addr;
        let metrics = broker.metrics_addr;
        let (tls, tls_shards) = (broker.tls_addr, broker.tls_shard_addrs.clone());
        let (amqps, https) = (broker.amqps_addr, broker.https_addr);
        Self { broker: Some(broker), native, shards, amqp, metrics, tls, tls_shards, amqps, https, _dir: dir }
    }

    /// Two shards, default limits.
    pub fn start() -> Self {
        Self::start_with(2, |_| {})
    }

    pub fn url(&self) -> String {
        format!("ringmq://{}", self.native)
    }

    pub fn shard_url(&self, shard: usize) -> String {
        format!("ringmq://{}", self.shards[shard])
    }
}

/// How long a test broker may take to stop (its shards bound their final
/// flush at 10 s; a stop slower than this is a hang).
pub const SHUTDOWN_MAX: Duration = Duration::from_secs(15);

/// Fails the test that owns a broker whose shard panicked or failed, or
/// whose stop hung: a panic, unless the test is already failing (a panic
/// while unwinding would abort every test in the binary).
fn fail_test(why: String) {
    if std::thread::panicking() {
        eprintln!("error (the test is already failing): {why}");
    } else {
        panic!("{why}");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let Some(b) = self.broker.take() else { return };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(b.stop());
        });
        match rx.recv_timeout(SHUTDOWN_MAX) {
            Ok(Ok(())) => {}
            Ok(Err(failed)) => fail_test(format!("the broker's shards failed: {failed}")),
            // The stuck threads are leaked.
            Err(_) => fail_test(format!("the broker did not stop within {SHUTDOWN_MAX:?}")),
        }
    }
}

/// A queue name with `prefix` that `shard_for` puts on `shard` of `shards`.
pub fn queue_on(shard: u32, shards: u32, prefix: &str) -> String {
    static UNIQUE: AtomicU32 = AtomicU32::new(0);
    loop {
        let q = format!("{prefix}-{}", UNIQUE.fetch_add(1, Ordering::Relaxed));
        if protocol::shard_for(&q, shards) == shard {
            return q;
        }
    }
}

/// Runs `f` on a fresh glommio executor and returns its output; fails the
/// test if it does not finish within `deadline` or panics.
pub fn run_local<F, Fut, T>(deadline: Duration, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("test-client")
        .spawn(move || async move {
            let v = f().await;
            let _ = tx.send(v);
        })
        .expect("client executor starts");
    match rx.recv_timeout(deadline) {
        Ok(v) => {
            h.join().expect("client executor ends");
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test's client code did not finish within {deadline:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(p))) => {
                std::panic::resume_unwind(p)
            }
            other => panic!("client executor ended without a result: {other:?}"),
        },
    }
}

/// Awaits `fut`, failing the test after `d`.
pub async fn within<T>(what: &str, d: Duration, fut: impl Future<Output = T>) -> T {
    match glommio::timer::timeout(d, async { Ok(fut.await) }).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {d:?}"),
    }
}

/// Awaits `fut` for at most `d`; `None` if it did not finish.
pub async fn maybe_within<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    glommio::timer::timeout(d, async { Ok(fut.await) }).await.ok()
}

/// A message body carrying a sequence number (8 bytes LE) and padding.
pub fn seq_body(seq: u64, size: usize) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.resize(size.max(8), b'.');
    v
}

pub fn body_seq(body: &[u8]) -> u64 {
    u64::from_le_bytes(body[..8].try_into().expect("8-byte sequence number"))
}

// ---------------------------------------------------------------------
// Raw protocol connections over std sockets.
// ---------------------------------------------------------------------

/// One whole frame as received, decoded on demand.
#[derive(Clone)]
pub struct RawFrame(Vec<u8>);

impl RawFrame {
    pub fn frame(&self) -> Frame<'_> {
        match protocol::decode(&self.0, usize::MAX) {
            Ok(Decoded::Frame(f, n)) if n == self.0.len() => f,
            _ => unreachable!("a RawFrame holds exactly one valid frame"),
        }
    }

    pub fn request_id(&self) -> u64 {
        self.frame().request_id
    }
}

impl std::fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.frame())
    }
}

/// How a read ended without a frame.
#[derive(Debug)]
pub enum NoFrame {
    Timeout,
    /// Orderly close (read returned 0).
    Eof,
    /// Connection reset or another socket error: also a close.
    Broken(std::io::Error),
}

/// Bytes the broker sent that did not decode: always a test failure.
const RECV_FRAME_MAX: usize = 64 << 20;

/// A raw connection: writes exact bytes, reads whole frames with timeouts.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    next_rid: u64,
    next_consumer: u32,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, STEP).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Wraps a socket connected some other way (e.g. with socket options).
    pub fn from_stream(s: TcpStream) -> Raw {
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Connects with a receive buffer of about `rcvbuf` bytes (set before
    /// connecting, so the advertised window is small too): a client that
    /// reads slowly, or not at all, backs up into the broker quickly.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Raw {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        sock.connect_timeout(&addr.into(), STEP).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let s: TcpStream = sock.into();
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Completes the handshake on a connected `Raw`; returns its shard.
    pub fn handshake(&mut self) -> u16 {
        let rid = self.send(Cmd::Hello {
            version: protocol::VERSION,
            user: "guest",
            password: "guest",
            heartbeat_ms: None,
            vhost: None,
        });
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::HelloOk(h) } if request_id == rid => h.shard_id,
            other => panic!("expected HelloOk, got {other:?}"),
        }
    }

    /// Connects and completes the handshake as guest/guest; returns the
    /// shard the connection landed on.
    pub fn hello(addr: SocketAddr) -> (Raw, u16) {
        let mut r = Raw::connect(addr);
        let rid = r.send(Cmd::Hello {
            version: protocol::VERSION,
            user: "guest",
            password: "guest",
            heartbeat_ms: None,
            vhost: None,
        });
        let f = r.recv();
        let shard = match f.frame() {
            Frame { request_id, cmd: Cmd::HelloOk(h) } => {
                assert_eq!(request_id, rid, "HelloOk echoes the Hello's request id");
                h.shard_id
            }
            other => panic!("expected HelloOk, got {other:?}"),
        };
        (r, shard)
    }

    pub fn rid(&mut self) -> u64 {
        let r = self.next_rid;
        self.next_rid += 1;
        r
    }

    pub fn consumer_id(&mut self) -> u32 {
        let c = self.next_consumer;
        self.next_consumer += 1;
        c
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Writes; returns the error instead of failing (the broker may have
    /// closed already).
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn shutdown_write(&mut self) {
        self.s.shutdown(Shutdown::Write).expect("shutdown write");
    }

    /// Encodes and sends `cmd` with a fresh request id, which it returns.
    pub fn send(&mut self, cmd: Cmd<'_>) -> u64 {
        let rid = self.rid();
        self.send_rid(rid, cmd);
        rid
    }

    pub fn send_rid(&mut self, request_id: u64, cmd: Cmd<'_>) {
        let mut b = BytesMut::new();
        Frame { request_id, cmd }.encode(&mut b);
        self.write(&b);
    }

    /// The next frame, or why there is none within `d`.
    pub fn try_recv(&mut self, d: Duration) -> Result<RawFrame, NoFrame> {
        let deadline = Instant::now() + d;
        loop {
            match protocol::decode(&self.buf, RECV_FRAME_MAX) {
                Ok(Decoded::Frame(_, n)) => {
                    let bytes: Vec<u8> = self.buf.drain(..n).collect();
                    return Ok(RawFrame(bytes));
                }
                Ok(Decoded::Incomplete) => {}
                Err(e) => panic!("the broker sent bytes that do not decode: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "the broker closed inside a frame ({} bytes)", self.buf.len());
                    return Err(NoFrame::Eof);
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NoFrame::Broken(e)),
            }
        }
    }

    /// The next frame; fails the test if none arrives within `STEP`.
    pub fn recv(&mut self) -> RawFrame {
        match self.try_recv(STEP) {
            Ok(f) => f,
            Err(e) => panic!("expected a frame from the broker, got {e:?}"),
        }
    }

    /// Asserts that nothing arrives for `QUIET` (and the connection stays open).
    pub fn expect_silence(&mut self) {
        match self.try_recv(QUIET) {
            Err(NoFrame::Timeout) => {}
            Ok(f) => panic!("expected nothing, got {f:?}"),
            Err(e) => panic!("expected nothing, the connection ended: {e:?}"),
        }
    }

    /// The next frame must be an Error with `code`, flagged fatal exactly
    /// when the code is fatal. Returns its request id and message.
    pub fn expect_error(&mut self, code: ErrorCode) -> (u64, String) {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Error { fatal, code: c, message } } => {
                assert_eq!(
                    ErrorCode::from_u16(c),
                    Some(code),
                    "expected error {code:?} ({}), got {c} {message:?}",
                    code.as_u16()
                );
                assert_eq!(fatal, code.is_fatal(), "FATAL flag of {code:?}");
                assert!(!message.is_empty(), "the error says why");
                (request_id, message.to_string())
            }
            other => panic!("expected Error {code:?}, got {other:?}"),
        }
    }

    /// The broker must close the connection (after any frames already
    /// checked): no more frames, then EOF or reset within `STEP`.
    pub fn expect_closed(&mut self) {
        match self.try_recv(STEP) {
            Err(NoFrame::Eof) | Err(NoFrame::Broken(_)) => {}
            Err(NoFrame::Timeout) => panic!("the broker did not close the connection within {STEP:?}"),
            Ok(f) => panic!("expected the connection to close, got {f:?}"),
        }
    }

    /// Ping must be answered by a Pong with the same request id.
    pub fn ping(&mut self) {
        let rid = self.send(Cmd::Ping);
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Pong } if request_id == rid => {}
            other => panic!("expected Pong {rid}, got {other:?}"),
        }
    }

    /// The next frame must be `Ok` answering `rid`; returns its value.
    pub fn expect_ok(&mut self, rid: u64) -> u64 {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Ok { value } } if request_id == rid => value,
            other => panic!("expected Ok for request {rid}, got {other:?}"),
        }
    }

    pub fn declare(&mut self, queue: &str) -> u64 {
        let rid = self.send(Cmd::Declare { flags: 0, queue, args: &[] });
        self.expect_ok(rid)
    }

    /// Sends one Publish frame carrying `bodies`; returns its request id.
    pub fn publish(&mut self, queue: &str, bodies: &[&[u8]], confirm: bool) -> u64 {
        let rid = self.rid();
        let flags = if confirm { protocol::op::PUBLISH_CONFIRM } else { 0 };
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish(&mut b, rid, flags, queue);
        for body in bodies {
            w.push(&mut b, 0, &[], body);
        }
        w.finish(&mut b);
        self.write(&b);
        rid
    }

    /// Publishes one message with the AMQP property list `props`, and
    /// waits for its confirm.
    pub fn publish_props_confirmed(&mut self, queue: &str, props: &[u8], body: &[u8]) {
        let rid = self.rid();
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish(&mut b, rid, protocol::op::PUBLISH_CONFIRM, queue);
        w.push(&mut b, 0, props, body);
        w.finish(&mut b);
        self.write(&b);
        self.expect_confirm(rid, 1);
    }

    /// Sends one PublishTo frame with CONFIRM carrying `n` small messages
    /// (`m0`, `m1`, ...) through `exchange`, routing key empty.
    pub fn publish_to(&mut self, exchange: &str, n: usize) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish_to(&mut b, rid, protocol::op::PUBLISH_CONFIRM, exchange, "");
        for i in 0..n {
            w.push(&mut b, 0, &[], format!("m{i}").as_bytes());
        }
        w.finish(&mut b);
        self.write(&b);
        rid
    }

    /// Binds `queue` to a new fanout `exchange` and checks that this
    /// publisher, routing through it, is paused by the queue's owner once
    /// the queue is deep (`publish_pause_messages` = 100, a consumer on
    /// `owner` taking one message and never acking), and goes on once a
    /// consumer drains it. The owner is on another shard or node: its
    /// `PublishPaused` comes back with the first batch's confirm, so the
    /// batch already on its way is read and the next one is not.
    pub fn expect_routed_pause(&mut self, exchange: &str, queue: &str, owner: SocketAddr) {
        let rid = self.send(Cmd::ExchangeDeclare { flags: 0, exchange, kind: "fanout", args: &[] });
        self.expect_ok(rid);
        let rid = self.send(Cmd::Bind { flags: 0, source: exchange, destination: queue, routing_key: "", args: &[] });
        self.expect_ok(rid);
        let (mut slow, _) = Raw::hello(owner);
        slow.subscribe(queue, 1);
        let first = self.publish_to(exchange, 300);
        self.expect_confirm(first, 300);
        let second = self.publish_to(exchange, 10);
        self.expect_confirm(second, 10);
        let third = self.publish_to(exchange, 10);
        self.expect_silence();
        let (mut fast, _) = Raw::hello(owner);
        let (cid, mut got) = fast.subscribe(queue, 1000);
        got.extend(fast.expect_deliveries(cid, 309 - got.len()));
        self.expect_confirm(third, 10);
    }

    pub fn expect_confirm(&mut self, rid: u64, count: u32) {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Confirm { count: c } } if request_id == rid && c == count => {}
            other => panic!("expected Confirm {{ count: {count} }} for request {rid}, got {other:?}"),
        }
    }

    pub fn publish_confirmed(&mut self, queue: &str, bodies: &[&[u8]]) {
        let rid = self.publish(queue, bodies, true);
        self.expect_confirm(rid, bodies.len() as u32);
    }

    /// Subscribes with a fresh consumer id and waits for the Ok; returns
    /// the consumer id and any deliveries that came with the reply.
    pub fn subscribe(&mut self, queue: &str, prefetch: u32) -> (u32, Vec<Delivered>) {
        let cid = self.consumer_id();
        let rid = self.send(Cmd::Subscribe { consumer_id: cid, prefetch, queue, priority: 0, origin: false });
        let mut early = Vec::new();
        loop {
            let f = self.recv();
            match f.frame() {
                Frame { request_id, cmd: Cmd::Ok { .. } } if request_id == rid => return (cid, early),
                Frame { cmd: Cmd::Deliver { consumer_id, .. }, .. } if consumer_id == cid => {
                    early.extend(deliveries(&f))
                }
                other => panic!("expected Ok for Subscribe {rid}, got {other:?}"),
            }
        }
    }

    /// Reads Deliver frames for `cid` until `n` messages have arrived.
    pub fn expect_deliveries(&mut self, cid: u32, n: usize) -> Vec<Delivered> {
        let out = self.expect_at_least(cid, n);
        assert_eq!(out.len(), n, "more deliveries than expected");
        out
    }

    /// Whole `Deliver` frames for consumer `cid` until `n` or more arrived.
    pub fn expect_at_least(&mut self, cid: u32, n: usize) -> Vec<Delivered> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = self.recv();
            match f.frame() {
                Frame { cmd: Cmd::Deliver { consumer_id, .. }, .. } if consumer_id == cid => out.extend(deliveries(&f)),
                other => panic!("expected a Deliver for consumer {cid}, got {other:?}"),
            }
        }
        out
    }

    pub fn ack(&mut self, cid: u32, ranges: &[(u64, u64)]) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        protocol::encode_ack(&mut b, rid, None, cid, ranges);
        self.write(&b);
        rid
    }

    pub fn nack(&mut self, cid: u32, requeue: bool, ranges: &[(u64, u64)]) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        protocol::encode_ack(&mut b, rid, Some(requeue), cid, ranges);
        self.write(&b);
        rid
    }

    /// A full publish/consume/ack round trip on a fresh queue named
    /// `queue`, then a Ping: proves the connection and the queue's owner
    /// work. Works over the direct and the forwarded path.
    pub fn round_trip(&mut self, queue: &str) {
        assert_eq!(self.declare(queue), 0, "{queue} is a new queue");
        let bodies: [&[u8]; 3] = [b"rt-0", b"rt-1", b"rt-2"];
        self.publish_confirmed(queue, &bodies);
        let (cid, mut got) = self.subscribe(queue, 10);
        let rest = 3 - got.len();
        got.extend(self.expect_deliveries(cid, rest));
        let bodies_got: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
        assert_eq!(bodies_got, bodies, "round trip delivers in order");
        assert_eq!(got[0].tag, 1);
        assert!(got.iter().all(|d| !d.redelivered));
        self.ack(cid, &[(1, 3)]);
        // Replies from the owner keep their order: an error for the ack
        // would arrive before this Ok.
        let rid = self.send(Cmd::Unsubscribe { consumer_id: cid });
        self.expect_ok(rid);
        let rid = self.send(Cmd::Delete { flags: protocol::op::DELETE_IF_EMPTY, queue });
        assert_eq!(self.expect_ok(rid), 0, "acked messages are gone, the queue is empty");
        self.ping();
    }
}

/// A delivered message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub consumer_id: u32,
    pub tag: u64,
    pub redelivered: bool,
    pub body: Vec<u8>,
}

/// The messages of a Deliver frame.
pub fn deliveries(f: &RawFrame) -> Vec<Delivered> {
    match f.frame().cmd {
        Cmd::Deliver { consumer_id, first_tag, entries, .. } => entries
            .iter()
            .enumerate()
            .map(|(i, e)| Delivered {
                consumer_id,
                tag: first_tag + i as u64,
                redelivered: e.redelivered(),
                body: e.body.to_vec(),
            })
            .collect(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

/// Connections opened before a bad one, one per shard's own address, each
/// checked with a round trip on a queue of each shard (direct and
/// forwarded) once the bad input is done.
pub struct Witnesses {
    conns: Vec<Raw>,
    shards: u32,
}

impl Witnesses {
    pub fn open(b: &TestBroker) -> Self {
        let conns = b
            .shards
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (r, shard) = Raw::hello(*a);
                assert_eq!(usize::from(shard), i, "a shard's own address reaches that shard");
                r
            })
            .collect();
        Self { conns, shards: b.shards.len() as u32 }
    }

    pub fn check(&mut self) {
        let n = self.shards;
        for (i, c) in self.conns.iter_mut().enumerate() {
            c.ping();
            for owner in 0..n {
                c.round_trip(&queue_on(owner, n, &format!("witness-via{i}")));
            }
        }
    }
}

/// GET `path` over HTTP/1.1 from the metrics listener; the body (200 only).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, STEP).expect("connect to the metrics listener");
    s.set_read_timeout(Some(STEP)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("a whole response");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// An HTTP request with basic auth and a body; the status and the whole
/// response.
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    (user, password): (&str, &str),
    body: &str,
) -> (u16, String) {
    use base64::Engine;
    let mut s = TcpStream::connect_timeout(&addr, STEP).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    // The API takes JSON bodies only (a cross-site form cannot send this type).
    let head = format!(
        "Host: t\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    write!(s, "{method} {path} HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n{body}").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw)
}

/// The shard that owns `queue` on a 2-shard broker.
pub fn owner2(queue: &str) -> u32 {
    protocol::shard_for(queue, 2)
}
