//! `ringmq serve` as a child process (for the tests that kill it with
//! -9): started with two unpinned shards on ports 0 (or on given ports,
//! to be restarted on them), its ready line read.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `ringmq serve --data-dir dir` with `extra` flags; the child and
/// its ready line (`ringmq ready native=... amqp=...`).
pub fn serve(dir: &std::path::Path, extra: &[&OsStr]) -> (Child, String) {
    // Every listener on a port of its own: brokers of tests running side
    // by side must not meet on the default metrics port.
    let metrics: &[&str] =
        if extra.iter().any(|a| *a == "--metrics-listen") { &[] } else { &["--metrics-listen", "127.0.0.1:0"] };
    let mut flags: Vec<&OsStr> = ["--listen", "127.0.0.1:0"].map(OsStr::new).to_vec();
    flags.extend(metrics.iter().map(OsStr::new));
    flags.extend([OsStr::new("--data-dir"), dir.as_os_str()]);
    flags.extend(extra);
    ready(&flags)
}

/// Runs `ringmq serve` with two unpinned shards, AMQP on port 0 and
/// `flags`; the child and its ready line.
fn ready(flags: &[&OsStr]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["serve", "--cores", "2", "--no-pin", "--amqp-listen", "127.0.0.1:0"])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringmq serve starts");
    let mut line = String::new();
    let out = child.stdout.take().expect("piped stdout");
    BufReader::new(out).read_line(&mut line).expect("ready line");
    (child, line)
}

/// The `key=` field of a ready line.
pub fn field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} in the ready line {line:?}"))
        .to_string()
}

/// A port P with P + 1 and P + 2 free too (the broker's two shards listen
/// on P + 1 + i), so a restart gets the same addresses. Taken from 10,000
/// to 19,000: below the kernel's ephemeral range (32,768 up by default),
/// where no outgoing connection of any process on the machine is given
/// one of them while the broker is down between a kill and its restart,
/// and below the cluster tests' ports (20,000 up, `tests/cluster`).
pub fn free_ports() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SLOTS: u32 = 3_000;
    let base = std::process::id().wrapping_mul(7919) % SLOTS;
    for _ in 0..SLOTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + u16::try_from(((base + n) % SLOTS) * 3).unwrap();
        if (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
            return port;
        }
    }
    panic!("no three free ports in a row from 10,000 to 19,000");
}

/// Starts `ringmq serve` (two shards) on `port` (from [`free_ports`]) with
/// its data in `dir`: again after a kill, on the same ports and data. A
/// start refused because the port is still held is tried again for up to
/// 5 s: right after a `kill -9` the dead broker's io_uring may hold its
/// listening sockets a little longer (the ring is torn down after the
/// process is reaped).
pub fn serve_at(dir: &std::path::Path, port: u16) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let flags = ["--listen", &listen, "--metrics-listen", "127.0.0.1:0", "--data-dir"].map(OsStr::new);
    let flags = [&flags[..], &[dir.as_os_str()]].concat();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (mut child, line) = ready(&flags);
        if line.contains(&listen) {
            return child;
        }
        let _ = child.wait();
        assert!(std::time::Instant::now() < deadline, "ready on {listen} within 5 s: {line:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
