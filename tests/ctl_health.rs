//! `ringmq ctl status`, `ping` and `await-startup`: the binary against a
//! real broker, and against a port nothing serves. Every run is bounded.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::TestBroker;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

struct Ran {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `ringmq ctl --url ringmq://ADDR ARGS...`, killed after `limit`.
fn ctl(url: &str, args: &[&str], limit: Duration) -> Ran {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["ctl", "--url", url])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return Ran {
                ok: st.success(),
                code: st.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
                took: start.elapsed(),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringmq ctl {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 127.0.0.1 port nothing listens on while the guard lives.
fn dead_url() -> (socket2::Socket, String) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, format!("ringmq://127.0.0.1:{port}"))
}

#[test]
fn status_shows_a_ready_node_with_its_listeners() {
    let b = TestBroker::start();
    let url = b.url();
    let r = ctl(&url, &["--json", "status"], Duration::from_secs(30));
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["shards"], 2);
    assert_eq!(v["shards_answering"], 2);
    assert_eq!(v["alarms"], serde_json::json!([]));
    assert_eq!(v["exchanges"], 6, "the default and amq.* exchanges: {v}");
    let listeners = v["listeners"].as_array().unwrap();
    for (protocol, addr) in [("native", b.native), ("amqp", b.amqp), ("http", b.metrics), ("native-shard", b.shards[1])]
    {
        let row = serde_json::json!({ "protocol": protocol, "address": addr.to_string() });
        assert!(listeners.contains(&row), "{row} in {listeners:?}");
    }
    // The table: one row for the node, then the listeners.
    let r = ctl(&url, &["status"], Duration::from_secs(30));
    assert!(r.ok, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with("node") && head.contains("ready") && head.contains("alarms"), "{}", r.stdout);
    assert!(lines.next().unwrap().contains("true"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("native-shard  {}", b.shards[0])), "{}", r.stdout);
}

#[test]
fn ping_succeeds_on_a_broker_and_fails_without_one() {
    let b = TestBroker::start();
    let r = ctl(&b.url(), &["ping"], Duration::from_secs(30));
    assert!(r.ok && r.stdout.starts_with("Ping succeeded"), "{}{}", r.stdout, r.stderr);
    let r = ctl(&b.url(), &["--json", "ping"], Duration::from_secs(30));
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["status"], "ok");
    assert!(v["rtt_ms"].as_f64().unwrap() >= 0.0);

    let r = ctl(&b.url(), &["--password", "wrong", "ping"], Duration::from_secs(30));
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stderr.contains("broker error 6"), "{}", r.stderr);
    let (_guard, dead) = dead_url();
    let r = ctl(&dead, &["ping"], Duration::from_secs(30));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("ringmq ctl:"), "{}", r.stderr);
}

#[test]
fn await_startup_returns_on_a_ready_broker_and_times_out_without_one() {
    let b = TestBroker::start();
    let r = ctl(&b.url(), &["await-startup", "--timeout", "10"], Duration::from_secs(30));
    assert!(r.ok && r.stdout.contains("is ready"), "{}{}", r.stdout, r.stderr);

    let (_guard, dead) = dead_url();
    let r = ctl(&dead, &["await-startup", "--timeout", "1.5"], Duration::from_secs(30));
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.took >= Duration::from_millis(1400), "it waited the whole timeout: {:?}", r.took);
    assert!(r.stderr.contains("not ready within 1.5 s"), "{}", r.stderr);

    // A refused login is final: no waiting out the timeout.
    let r = ctl(&b.url(), &["--password", "wrong", "await-startup", "--timeout", "60"], Duration::from_secs(30));
    assert_eq!(r.code, Some(1));
    assert!(r.took < Duration::from_secs(20), "{:?}", r.took);
    for bad in ["0", "-1", "NaN", "1e9"] {
        let r = ctl(&b.url(), &["await-startup", "--timeout", bad], Duration::from_secs(30));
        assert!(!r.ok, "--timeout {bad}");
    }
}

/// await-startup started before the broker: it waits, and returns once
/// the broker has started on the port it was given.
#[test]
fn await_startup_waits_for_a_broker_that_starts_later() {
    let dir = tempfile::tempdir().unwrap();
    // A free port with the next two (the shards' own) free as well.
    let port = (0..50)
        .find_map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let p = l.local_addr().ok()?.port();
            let free = (1..=2)
                .all(|i| p.checked_add(i).is_some_and(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()));
            free.then_some(p)
        })
        .unwrap();
    let url = format!("ringmq://127.0.0.1:{port}");
    let waiter = std::thread::spawn(move || ctl(&url, &["await-startup", "--timeout", "60"], Duration::from_secs(90)));
    std::thread::sleep(Duration::from_millis(700));
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(BIN)
        .args(["serve", "--cores", "2", "--no-pin", "--listen", &listen, "--amqp-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let r = waiter.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(r.ok && r.stdout.contains("is ready"), "{}{}", r.stdout, r.stderr);
    assert!(r.took >= Duration::from_millis(600), "it waited for the start: {:?}", r.took);
}
