//! Health and readiness against real brokers: RabbitMQ's health-check
//! endpoints (healthy and failing), `/api/aliveness-test`, the real
//! counts of `/api/overview`, and `READY=1` on `$NOTIFY_SOCKET` from a
//! `ringmq serve` child. `ctl status`, `ping` and `await-startup` are in
//! tests/ctl_health.rs.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Raw, TestBroker};
use ringmq::protocol::op;
use ringmq::protocol::{Cmd, Frame};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `guest:guest`, base64.
const GUEST: &str = "Z3Vlc3Q6Z3Vlc3Q=";

/// One HTTP/1.1 request over a fresh socket: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP listener");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = auth.map(|a| format!("Authorization: Basic {a}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n");
    write!(s, "{head}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("a whole response");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A GET as guest: (status, JSON body).
fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, Some(GUEST), "");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, v)
}

/// One `Admin` command on a fresh connection; its JSON answer.
fn admin(addr: SocketAddr, command: u8, arg: &str) -> Value {
    let (mut c, _) = Raw::hello(addr);
    let rid = c.send(Cmd::Admin { command, arg });
    match c.recv().frame() {
        Frame { request_id, cmd: Cmd::AdminOk { json } } if request_id == rid => serde_json::from_str(json).unwrap(),
        other => panic!("expected AdminOk, got {other:?}"),
    }
}

/// Polls `path` until its status is `want`; the last body.
fn until_status(addr: SocketAddr, path: &str, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = get(addr, path);
        if status == want {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}; last {status} {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port nothing listens on while the guard lives (bound, not listening).
fn unused_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, port)
}

#[test]
fn health_checks_pass_on_a_healthy_broker() {
    let b = TestBroker::start();
    for path in ["/api/health/checks/alarms", "/api/health/checks/local-alarms"] {
        let (status, v) = get(b.metrics, path);
        assert_eq!((status, &v), (200, &serde_json::json!({ "status": "ok" })), "{path}");
    }
    for addr in [b.native, b.shards[0], b.shards[1], b.amqp, b.metrics] {
        let (status, v) = get(b.metrics, &format!("/api/health/checks/port-listener/{}", addr.port()));
        assert_eq!(status, 200, "{addr}: {v}");
        assert_eq!((v["status"].as_str(), v["port"].as_u64()), (Some("ok"), Some(u64::from(addr.port()))));
    }
    // Without credentials, as every /api path: 401.
    let (status, _) = http(b.metrics, "GET", "/api/health/checks/alarms", None, "");
    assert_eq!(status, 401);
    let (status, _) = http(b.metrics, "POST", "/api/health/checks/alarms", Some(GUEST), "");
    assert_eq!(status, 405);
}

#[test]
fn port_listener_fails_for_a_port_not_listened_on_and_refuses_bad_ports() {
    let b = TestBroker::start();
    let (_guard, port) = unused_port();
    let (status, v) = get(b.metrics, &format!("/api/health/checks/port-listener/{port}"));
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["reason"], "No active listener");
    assert_eq!(v["missing"], port);
    let ports: Vec<u64> = v["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    for addr in [b.native, b.amqp, b.metrics] {
        assert!(ports.contains(&u64::from(addr.port())), "{addr} in {ports:?}");
    }
    // Attacker-written segments: never a panic, never a listener found.
    let long = "9".repeat(4000);
    for bad in ["0", "65536", "-1", "%2B80", "80x", "%20", "0x1f", long.as_str()] {
        let (status, body) =
            http(b.metrics, "GET", &format!("/api/health/checks/port-listener/{bad}"), Some(GUEST), "");
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = http(b.metrics, "GET", "/api/health/checks/port-listener", Some(GUEST), "");
    assert_eq!(status, 404);
    let (status, _) = http(b.metrics, "GET", "/api/health/checks/no-such-check", Some(GUEST), "");
    assert_eq!(status, 404);
}

#[test]
fn alarm_checks_fail_while_an_alarm_is_in_effect_and_pass_once_it_clears() {
    // A publish blocked by the alarm fails aliveness within this.
    let b = TestBroker::start_with(2, |c| c.http_request_timeout_ms = 1500);
    let (status, v) = get(b.metrics, "/api/aliveness-test/%2F");
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");

    admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, &(1u64 << 60).to_string());
    let v = until_status(b.metrics, "/api/health/checks/alarms", 503);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["reason"], "There are alarms in effect in the cluster");
    assert_eq!(v["alarms"], serde_json::json!([{ "node": "ringmq", "resource": "disk" }]));
    let (status, v) = get(b.metrics, "/api/health/checks/local-alarms");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["reason"], "There are alarms in effect on the node");
    assert_eq!(v["alarms"][0]["resource"], "disk");
    // Publishers are blocked: the round cannot finish.
    let (status, v) = get(b.metrics, "/api/aliveness-test/%2F");
    assert_eq!((status, v["status"].as_str()), (503, Some("failed")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("http_request_timeout_ms"), "{v}");

    admin(b.native, op::ADMIN_SET_DISK_FREE_LIMIT, "0");
    until_status(b.metrics, "/api/health/checks/alarms", 200);
    let (status, _) = get(b.metrics, "/api/health/checks/local-alarms");
    assert_eq!(status, 200);
    let v = until_status(b.metrics, "/api/aliveness-test/%2F", 200);
    assert_eq!(v, serde_json::json!({ "status": "ok" }));
}

#[test]
fn aliveness_test_declares_publishes_and_gets_with_the_users_rights() {
    let b = TestBroker::start();
    for _ in 0..3 {
        let (status, v) = get(b.metrics, "/api/aliveness-test/%2F");
        assert_eq!((status, &v), (200, &serde_json::json!({ "status": "ok" })));
    }
    // The queue stays (as RabbitMQ's), and holds nothing after each round.
    let (status, q) = get(b.metrics, "/api/queues/%2F/aliveness-test");
    assert_eq!(status, 200, "{q}");
    assert_eq!((q["messages"].as_u64(), q["durable"].as_bool()), (Some(0), Some(false)), "{q}");

    // In another vhost, the user needs permissions there.
    let (status, _) = http(b.metrics, "PUT", "/api/vhosts/staging", Some(GUEST), "");
    assert_eq!(status, 201);
    let (status, v) = get(b.metrics, "/api/aliveness-test/staging");
    assert_eq!(status, 403, "guest has no permissions in staging: {v}");
    let perms = r#"{"configure":".*","write":".*","read":".*"}"#;
    let (status, body) = http(b.metrics, "PUT", "/api/permissions/staging/guest", Some(GUEST), perms);
    assert!(status == 201 || status == 204, "{status} {body}");
    let (status, v) = get(b.metrics, "/api/aliveness-test/staging");
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");

    // A user allowed everything but reading the queue fails the get.
    let user = r#"{"password":"pw","tags":"monitoring"}"#;
    assert_eq!(http(b.metrics, "PUT", "/api/users/mon", Some(GUEST), user).0, 201);
    let perms = r#"{"configure":".*","write":".*","read":"^nothing$"}"#;
    let (status, _) = http(b.metrics, "PUT", "/api/permissions/%2F/mon", Some(GUEST), perms);
    assert!(status == 201 || status == 204);
    let mon = "bW9uOnB3"; // mon:pw
    let (status, body) = http(b.metrics, "GET", "/api/aliveness-test/%2F", Some(mon), "");
    assert_eq!(status, 403, "{body}");

    let (status, _) = get(b.metrics, "/api/aliveness-test/no-such-vhost");
    assert_eq!(status, 404);
    let (status, _) = http(b.metrics, "GET", "/api/aliveness-test/%2F", None, "");
    assert_eq!(status, 401);
    let hostile = format!("/api/aliveness-test/{}", "%41".repeat(2000));
    assert_eq!(http(b.metrics, "GET", &hostile, Some(GUEST), "").0, 404);
    assert_eq!(http(b.metrics, "GET", "/api/aliveness-test/%ZZ", Some(GUEST), "").0, 400);
}

#[test]
fn overview_counts_exchanges_and_channels() {
    let b = TestBroker::start();
    let (_, xs) = get(b.metrics, "/api/exchanges");
    let (_, o) = get(b.metrics, "/api/overview");
    let defaults = xs.as_array().unwrap().len() as u64;
    assert_eq!(defaults, 6, "the default and amq.* exchanges: {xs}");
    assert_eq!(o["object_totals"]["exchanges"].as_u64(), Some(defaults), "{o}");
    assert_eq!(o["object_totals"]["channels"], 0, "{o}");

    // Two exchanges declared, and an AMQP connection with three channels.
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    let (conn, chans) = common::lapin_thread::on_thread(Duration::from_secs(20), async move {
        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
        let mut chans = Vec::new();
        for _ in 0..3 {
            chans.push(conn.create_channel().await?);
        }
        let opts = lapin::options::ExchangeDeclareOptions::default();
        for x in ["health-x1", "health-x2"] {
            chans[0].exchange_declare(x, lapin::ExchangeKind::Fanout, opts, Default::default()).await?;
        }
        Ok((conn, chans))
    });
    let (_, o) = get(b.metrics, "/api/overview");
    assert_eq!(o["object_totals"]["exchanges"].as_u64(), Some(defaults + 2), "{o}");
    assert_eq!(o["object_totals"]["channels"], 3, "{o}");
    assert_eq!(o["object_totals"]["connections"], 1, "{o}");
    let (_, conns) = get(b.metrics, "/api/connections");
    assert_eq!(conns[0]["channels"], 3, "{conns}");

    // lapin closes a channel when its last handle drops: keep the others.
    let chans = common::lapin_thread::on_thread(Duration::from_secs(20), async move {
        chans[2].close(200, "bye").await?;
        Ok(chans)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = get(b.metrics, "/api/overview").1;
        if o["object_totals"]["channels"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "a closed channel is no longer counted: {o}");
        std::thread::sleep(Duration::from_millis(50));
    }
    common::lapin_thread::on_thread(Duration::from_secs(20), async move {
        let closed = conn.close(200, "bye").await;
        drop(chans);
        closed
    });
}

/// `ringmq serve` tells `$NOTIFY_SOCKET` READY=1 once it serves, then
/// STOPPING=1 on SIGTERM.
#[test]
fn serve_notifies_ready_after_the_native_port_serves() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["serve", "--cores", "2", "--no-pin", "--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let killer = KillOnDrop(child.id());
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("a notification within 30 s");
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.lines().any(|l| l == "READY=1"), "the first notification is READY=1: {first:?}");
    // By now the ready line is out and the native port serves at once.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let native = common::process::field(&line, "native").parse::<SocketAddr>().unwrap();
    let mut raw = Raw::connect(native);
    raw.handshake();
    raw.ping();
    let metrics = common::process::field(&line, "metrics").parse::<SocketAddr>().unwrap();
    assert_eq!(get(metrics, "/api/health/checks/alarms").0, 200);

    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let n = notify.recv(&mut buf).expect("STOPPING=1 within 30 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::mem::forget(killer);
    assert!(status.success(), "{status:?}");
}

/// Kills the child by pid if the test fails before it stops.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}
