//! `ringmq ctl` against a live broker, and `ringmq serve --config` with a
//! bad key.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{queue_on, Raw, TestBroker};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

fn ctl(b: &TestBroker, args: &[&str]) -> Output {
    let url = b.url();
    Command::new(BIN).args(["ctl", "--url", &url]).args(args).output().expect("run ringmq ctl")
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "ctl failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn ctl_lists_purges_deletes_and_closes() {
    let b = TestBroker::start();
    let (q0, q1) = (queue_on(0, 2, "ops-ctl"), queue_on(1, 2, "ops-ctl"));
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(&q0);
    raw.declare(&q1);
    raw.publish_confirmed(&q0, &[b"1", b"2", b"3"]);
    raw.publish_confirmed(&q1, &[b"4"]);

    // The table: a header, one aligned row per queue.
    let table = ok(ctl(&b, &["list-queues", "--interval", "0.1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["name", "shard", "ready", "unacked", "consumers", "publish_rate", "deliver_rate", "ready_bytes", "durable"]
    );
    let row0: Vec<&str> = lines.iter().find(|l| l.starts_with(&q0)).unwrap().split_whitespace().collect();
    assert_eq!(&row0[..5], [q0.as_str(), "0", "3", "0", "0"], "{table}");
    let row1: Vec<&str> = lines.iter().find(|l| l.starts_with(&q1)).unwrap().split_whitespace().collect();
    assert_eq!(&row1[..5], [q1.as_str(), "1", "1", "0", "0"], "{table}");
    // Right-aligned numbers end in the same column.
    let ready_end = lines[0].find("ready").unwrap() + "ready".len();
    for l in &lines[1..] {
        assert!(l[..ready_end].ends_with(|c: char| c.is_ascii_digit()), "ready is right-aligned: {table}");
    }

    // Rates: 40 messages published between the two snapshots of a
    // 2-second interval show as 20 per second; nothing was delivered.
    let url = b.url();
    let sampler = std::thread::spawn(move || {
        Command::new(BIN).args(["ctl", "--url", &url, "--json", "list-queues", "--interval", "2"]).output().unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    let forty: Vec<&[u8]> = (0..40).map(|_| &b"r"[..]).collect();
    raw.publish_confirmed(&q0, &forty);
    let json = ok(sampler.join().unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let rates = v.as_array().unwrap().iter().find(|q| q["name"] == q0.as_str()).unwrap();
    assert_eq!(rates["publish_rate"], 20.0, "{json}");
    assert_eq!(rates["deliver_rate"], 0.0, "{json}");
    assert_eq!(rates["ready"], 43, "{json}");

    let shards: serde_json::Value = serde_json::from_str(&ok(ctl(&b, &["shards", "--json"]))).unwrap();
    assert_eq!(shards.as_array().unwrap().len(), 2);
    assert_eq!(shards[0]["queues"], 1);
    assert_eq!(shards[0]["ready"], 43);
    assert_eq!(shards[1]["ready"], 1);
    let shards_table = ok(ctl(&b, &["shards"]));
    assert_eq!(shards_table.lines().count(), 3, "{shards_table}");

    let purged = ok(ctl(&b, &["purge-queue", &q0]));
    assert!(purged.lines().nth(1).unwrap().split_whitespace().eq([q0.as_str(), "43"]), "{purged}");
    let deleted = ok(ctl(&b, &["delete-queue", &q1]));
    assert!(deleted.lines().nth(1).unwrap().split_whitespace().eq([q1.as_str(), "1"]), "{deleted}");
    let missing = ctl(&b, &["delete-queue", &q1]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains(&q1));
    let after = ok(ctl(&b, &["list-queues"]));
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(after.lines().nth(1).unwrap().split_whitespace().take(3).eq([q0.as_str(), "0", "0"]), "{after}");

    // Our raw connection and the ctl's own show up; close the raw one.
    let conns: serde_json::Value = serde_json::from_str(&ok(ctl(&b, &["list-connections", "--json"]))).unwrap();
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 2, "{conns:?}");
    let raw_addr = raw.s.local_addr().unwrap();
    let mine = conns.iter().find(|c| c["peer"] == raw_addr.to_string()).expect("the raw connection is listed");
    let name = mine["name"].as_str().unwrap();
    ok(ctl(&b, &["close-connection", name]));
    raw.expect_error(ringmq::protocol::ErrorCode::ShuttingDown);
    let bad = ctl(&b, &["close-connection", "7:7"]);
    assert!(!bad.status.success());

    // Bad credentials: the handshake fails, ctl says so.
    let url = b.url();
    let out = Command::new(BIN).args(["ctl", "--url", &url, "--password", "nope", "shards"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_with_a_bad_config_key_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringmq.toml");
    std::fs::write(&path, "cores = 1\nqueue_messages_maxx = 5\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue_messages_maxx"), "{err}");
    assert!(err.contains("ringmq.toml"), "{err}");

    std::fs::write(&path, "segment_bytes = 10\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("segment_bytes"), "{err}");
}

fn http_get(b: &TestBroker, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(b.metrics).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The tools follow routing: `sub --bind` declares and binds, `pub
/// --exchange` publishes through it, and `ctl list-exchanges` /
/// `list-bindings` and the HTTP API show what exists.
#[test]
fn tools_route_through_exchanges_and_ctl_lists_them() {
    let b = TestBroker::start();
    let url = b.url();
    let q = queue_on(1, 2, "ops-bound");
    let sub = Command::new(BIN)
        .args(["sub", "--url", &url, "--queue", &q, "--bind", "ops-logs:any", "--exchange-type", "fanout"])
        .args(["--count", "3", "--timeout", "20", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut bound = false;
    for _ in 0..100 {
        let json = ok(ctl(&b, &["--json", "list-bindings"]));
        if json.contains(&q) {
            bound = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(bound, "the binding never showed up");
    let out = Command::new(BIN)
        .args(["pub", "--url", &url, "--exchange", "ops-logs", "--count", "3", "--confirm"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("published 3 confirmed 3"), "{stdout}");
    let done = sub.wait_with_output().unwrap();
    assert!(done.status.success(), "sub failed");
    assert!(String::from_utf8_lossy(&done.stdout).contains("received 3"));

    let xs = ok(ctl(&b, &["list-exchanges"]));
    let row: Vec<&str> = xs.lines().find(|l| l.starts_with("ops-logs")).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["ops-logs", "fanout", "false", "false", "false"], "{xs}");
    assert!(xs.lines().any(|l| l.starts_with("amq.topic")), "{xs}");
    let bs = ok(ctl(&b, &["list-bindings"]));
    let row: Vec<&str> = bs.lines().find(|l| l.starts_with("ops-logs")).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["ops-logs", q.as_str(), "queue", "any"], "{bs}");

    let api: serde_json::Value = serde_json::from_str(&http_get(&b, "/api/exchanges/%2F/ops-logs")).unwrap();
    assert_eq!(api["type"], "fanout");
    let api: serde_json::Value = serde_json::from_str(&http_get(&b, "/api/bindings")).unwrap();
    assert!(api.as_array().unwrap().iter().any(|x| x["destination"] == q.as_str() && x["source"] == "ops-logs"));
}

/// `ctl add-user` (password from standard input, so not in `ps`),
/// `list-users`, `set-user-tags`, `change-password` and `delete-user`, as
/// an operator types them.
#[test]
fn ctl_manages_users() {
    use std::io::Write;
    let b = TestBroker::start();
    let url = b.url();
    let mut add = Command::new(BIN)
        .args(["ctl", "--url", &url, "add-user", "ops", "--tags", "monitoring,management"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"0ps-secret\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let listed = ok(ctl(&b, &["list-users"]));
    assert!(
        listed.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ops", "monitoring,management"]),
        "{listed}"
    );
    // ops logs in with the password it was given on stdin, and may read.
    let as_ops =
        |args: &[&str]| Command::new(BIN).args(["ctl", "--url", &url, "--user", "ops"]).args(args).output().unwrap();
    assert!(as_ops(&["--password", "0ps-secret", "shards"]).status.success());
    ok(ctl(&b, &["change-password", "ops", "n3w"]));
    assert!(!as_ops(&["--password", "0ps-secret", "shards"]).status.success());
    assert!(as_ops(&["--password", "n3w", "shards"]).status.success());
    ok(ctl(&b, &["set-user-tags", "ops"]));
    let refused = as_ops(&["--password", "n3w", "shards"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("tag"), "no management tag now: {refused:?}");
    let dup = ctl(&b, &["add-user", "ops", "x"]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    ok(ctl(&b, &["delete-user", "ops"]));
    assert!(!ok(ctl(&b, &["list-users"])).contains("ops"));
}

/// A second broker on a port the first one holds refuses to start, with
/// the address in its error: each listener, not silently sharing it
/// (the shards' SO_REUSEPORT joins only this process's own sockets).
#[test]
fn a_second_broker_on_taken_ports_refuses_to_start() {
    let b = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let free = "127.0.0.1:0".to_string();
    let taken = [
        ("--listen", b.native.to_string()),
        ("--amqp-listen", b.amqp.to_string()),
        ("--metrics-listen", b.metrics.to_string()),
    ];
    for (flag, addr) in &taken {
        let mut args = vec!["serve", "--cores", "1", "--no-pin", "--data-dir"];
        let data = dir.path().join(flag.trim_start_matches('-'));
        args.push(data.to_str().unwrap());
        for (f, _) in &taken {
            args.extend([*f, if f == flag { addr.as_str() } else { free.as_str() }]);
        }
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {addr}: started anyway");
        assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"), "{flag}: {err}");
    }
    // The first broker is untouched.
    let (mut raw, _) = Raw::hello(b.native);
    raw.ping();
}
