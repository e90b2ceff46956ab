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
pub mod raw;
pub mod recovery;
pub mod scrape;
pub mod tls;

#[allow(unused_imports)] // not every test binary uses the raw connections
pub use raw::*;

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
