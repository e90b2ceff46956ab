//! The `ringmq` tools as scripts use them, against a live broker: `sub
//! --format json`, `pub -` from standard input with properties and
//! headers, `RINGMQ_URL` / `RINGMQ_USER` / `RINGMQ_PASSWORD`, shell
//! completions and the manual page, and the ctl object commands
//! (declare-queue, declare-exchange, bind, unbind, get, list-consumers).
//! Every child is bounded in time and killed if the test fails.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Raw, TestBroker};
use ringmq::protocol::{op, Cmd, Frame};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");
const LIMIT: Duration = Duration::from_secs(30);

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Kills the child when dropped (a failed assertion must not leave it).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ringmq ARGS` with `env` set (and the `RINGMQ_*` variables of
/// the test's own environment removed), `stdin` as its input; at most
/// `LIMIT`.
fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for v in ["RINGMQ_URL", "RINGMQ_USER", "RINGMQ_PASSWORD"] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let mut g = Guard(cmd.spawn().unwrap());
    let mut input = g.0.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let (mut so, mut se) = (g.0.stdout.take().unwrap(), g.0.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = g.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "ringmq {args:?} ran over {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Out { ok: status.success(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn run(args: &[&str]) -> Out {
    run_env(args, &[], b"")
}

fn ok(o: Out) -> String {
    assert!(o.ok, "failed: {}\n{}", o.stderr, o.stdout);
    o.stdout
}

/// The JSON objects of `sub --format json`, one per line.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
}

#[test]
fn sub_json_shows_text_and_binary_bodies_properties_and_headers() {
    let b = TestBroker::start();
    let url = b.url();
    let u = url.as_str();
    let props = [
        "--header",
        "tenant=acme",
        "--header",
        "attempt=3",
        "--content-type",
        "application/octet-stream",
        "--priority",
        "4",
        "--ttl",
        "60000",
        "--correlation-id",
        "corr-1",
        "--reply-to",
        "replies",
    ];
    let mut args = vec!["pub", "--url", u, "--queue", "scr-json"];
    args.extend(props);
    args.push("héllo");
    assert!(ok(run(&args)).contains("published 1 confirmed 1"));
    // A body that is not UTF-8, through standard input.
    let binary = [0xff, 0xfe, 0x00, 0x01, b'\n'];
    let o = run_env(&["pub", "--url", u, "--queue", "scr-json", "--header", "kind=bin", "-"], &[], &binary);
    assert!(ok(o).contains("published 1 confirmed 1"));

    let o = run(&["sub", "--url", u, "--queue", "scr-json", "--count", "2", "--timeout", "10", "--format", "json"]);
    assert!(o.stderr.contains("received 2"), "the count goes to stderr: {}", o.stderr);
    let rows = json_lines(&ok(o));
    assert_eq!(rows.len(), 2, "only JSON on stdout");
    let text = &rows[0];
    assert_eq!(text["body"], "héllo");
    assert_eq!(text["body_encoding"], "utf8");
    assert_eq!(text["redelivered"], false);
    assert_eq!(text["exchange"], "", "published to the queue: the default exchange");
    assert_eq!(text["routing_key"], "scr-json");
    let p = &text["properties"];
    assert_eq!(p["content_type"], "application/octet-stream");
    assert_eq!(p["priority"], 4);
    assert_eq!(p["expiration"], "60000");
    assert_eq!(p["correlation_id"], "corr-1");
    assert_eq!(p["reply_to"], "replies");
    assert_eq!(text["headers"], serde_json::json!({ "tenant": "acme", "attempt": 3 }));
    let bin = &rows[1];
    assert_eq!(bin["body_encoding"], "base64");
    assert_eq!(bin["body"], "//4AAQ==", "0xff 0xfe 0x00 0x01");
    assert_eq!(bin["headers"], serde_json::json!({ "kind": "bin" }));
    assert_eq!(bin["properties"], serde_json::json!({}), "only the header was given");
}

#[test]
fn pub_from_stdin_publishes_each_line_in_order() {
    let b = TestBroker::start();
    let url = b.url();
    let input: String = (0..300).map(|i| format!("line-{i}\n")).collect::<String>() + "last-without-newline";
    let o = run_env(&["pub", "--url", &url, "--queue", "scr-stdin", "--batch", "16", "-"], &[], input.as_bytes());
    assert!(ok(o).contains("published 301 confirmed 301"));
    let o = run(&["sub", "--url", &url, "--queue", "scr-stdin", "--count", "301", "--timeout", "10"]);
    let out = ok(o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 302, "301 bodies and the count");
    for (i, l) in lines[..300].iter().enumerate() {
        assert_eq!(*l, format!("line-{i}"), "in order");
    }
    assert_eq!(lines[300], "last-without-newline");
    // Empty input publishes nothing, and says so.
    let o = run_env(&["pub", "--url", &url, "--queue", "scr-stdin", "-"], &[], b"");
    assert!(ok(o).contains("published 0 confirmed 0"));
}

#[test]
fn url_user_and_password_come_from_the_environment() {
    let b = TestBroker::start();
    let url = b.url();
    let env = [("RINGMQ_URL", url.as_str()), ("RINGMQ_USER", "guest"), ("RINGMQ_PASSWORD", "guest")];
    let o = run_env(&["pub", "--queue", "scr-env", "from-env"], &env, b"");
    assert!(ok(o).contains("published 1 confirmed 1"));
    let o = run_env(&["ctl", "--json", "list-queues", "--interval", "0.1"], &env, b"");
    let rows: Value = serde_json::from_str(&ok(o)).unwrap();
    assert!(rows.as_array().unwrap().iter().any(|q| q["name"] == "scr-env" && q["ready"] == 1), "{rows}");

    // A wrong password from the environment is used (and refused), and
    // the flag wins over the environment.
    let bad = [("RINGMQ_URL", url.as_str()), ("RINGMQ_PASSWORD", "wrong")];
    let o = run_env(&["pub", "--queue", "scr-env", "x"], &bad, b"");
    assert!(!o.ok, "a wrong password must fail: {}", o.stdout);
    let o = run_env(&["pub", "--queue", "scr-env", "--password", "guest", "x"], &bad, b"");
    assert!(ok(o).contains("published 1 confirmed 1"));
    let o =
        run_env(&["pub", "--queue", "scr-env", "x"], &[("RINGMQ_URL", url.as_str()), ("RINGMQ_USER", "nobody")], b"");
    assert!(!o.ok, "an unknown user from the environment must fail");
    // The password's value is not shown in --help.
    let help = ok(run_env(&["pub", "--help"], &[("RINGMQ_PASSWORD", "s3cr3t-value")], b""));
    assert!(help.contains("RINGMQ_PASSWORD") && !help.contains("s3cr3t-value"), "{help}");
}

#[test]
fn completions_and_man_pages_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(run(&["completions", shell]));
        for word in ["serve", "pub", "sub", "ctl", "list-consumers", "declare-queue"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert!(!run(&["completions", "no-such-shell"]).ok);
    let page = ok(run(&["man"]));
    assert!(page.starts_with(".ie") || page.contains(".TH ringmq"), "roff: {}", &page[..page.len().min(200)]);
    for word in ["serve", "ctl", "completions"] {
        assert!(page.contains(word), "man lacks {word}");
    }
    let ctl = ok(run(&["man", "ctl"]));
    assert!(ctl.contains(".TH ringmq\\-ctl") || ctl.contains(".TH ringmq-ctl"), "{}", &ctl[..ctl.len().min(300)]);
    assert!(ctl.contains("list\\-consumers") || ctl.contains("list-consumers"));
    let get = ok(run(&["man", "ctl", "get"]));
    assert!(get.contains("remove"), "the get page documents --remove");
    assert!(!run(&["man", "no-such"]).ok);
}

/// `ringmq ctl --url URL --json ARGS` as JSON.
fn ctl_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["ctl", "--url", url, "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(run(&all))).unwrap()
}

#[test]
fn ctl_declares_binds_peeks_unbinds_and_lists_consumers() {
    let b = TestBroker::start();
    let url = b.url();
    let u = url.as_str();
    let q = "scr-ctl-q";
    let d = ctl_json(u, &["declare-queue", q, "--queue-arg", "x-max-length=100"]);
    assert_eq!(d[0]["queue"], q);
    assert_eq!(d[0]["messages"], 0);
    // The queue exists with its argument: a redeclare without it is refused.
    assert!(!run(&["ctl", "--url", u, "declare-queue", q]).ok, "inequivalent arguments");
    let x = ctl_json(u, &["declare-exchange", "scr-ctl-x", "direct"]);
    assert_eq!(x[0]["declared"], true);
    ctl_json(u, &["bind", "scr-ctl-x", q, "--routing-key", "k1"]);
    let bindings = ctl_json(u, &["list-bindings"]);
    let bound = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "scr-ctl-x" && r["destination"] == q && r["routing_key"] == "k1")
    };
    assert!(bound(&bindings), "{bindings}");

    // Publish through the exchange: the binding routes it to the queue.
    let o = run(&["pub", "--url", u, "--exchange", "scr-ctl-x", "--routing-key", "k1", "--mandatory", "via-x"]);
    assert!(ok(o).contains("published 1 confirmed 1"));
    // get peeks: the message is shown and stays, marked redelivered.
    let first = ctl_json(u, &["get", q]);
    assert_eq!(first.as_array().unwrap().len(), 1, "{first}");
    assert_eq!((first[0]["body"].as_str(), first[0]["redelivered"].as_bool()), (Some("via-x"), Some(false)));
    let again = ctl_json(u, &["get", q, "--count", "5"]);
    assert_eq!(again.as_array().unwrap().len(), 1, "still one message: {again}");
    assert_eq!((again[0]["body"].as_str(), again[0]["redelivered"].as_bool()), (Some("via-x"), Some(true)));
    let table = ok(run(&["ctl", "--url", u, "get", q]));
    assert!(table.lines().next().unwrap().starts_with("body") && table.contains("via-x"), "{table}");
    // --remove takes it.
    assert_eq!(ctl_json(u, &["get", q, "--remove"]).as_array().unwrap().len(), 1);
    assert_eq!(ctl_json(u, &["get", q]), serde_json::json!([]), "empty after --remove");

    // Unbind: the binding is gone, and a mandatory publish finds no queue.
    ctl_json(u, &["unbind", "scr-ctl-x", q, "--routing-key", "k1"]);
    assert!(!bound(&ctl_json(u, &["list-bindings"])));
    let o = run(&["pub", "--url", u, "--exchange", "scr-ctl-x", "--routing-key", "k1", "--mandatory", "lost"]);
    assert!(!o.ok, "unroutable after unbind: {}", o.stdout);
    assert!(!run(&["ctl", "--url", u, "get", q, "--count", "0"]).ok, "count 0 is refused");

    // list-consumers shows a running `sub`.
    let mut sub = Guard(
        Command::new(BIN)
            .args(["sub", "--url", u, "--queue", q, "--prefetch", "7", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let row = loop {
        let rows = ctl_json(u, &["list-consumers"]);
        if let Some(r) = rows.as_array().unwrap().iter().find(|r| r["queue"] == q) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no consumer listed: {rows}");
        assert!(sub.0.try_wait().unwrap().is_none(), "sub exited");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(row["prefetch"], 7);
    assert_eq!(row["unacked"], 0);
    assert_eq!(row["vhost"], "/");
    let conns = ctl_json(u, &["list-connections"]);
    assert!(conns.as_array().unwrap().iter().any(|c| c["name"] == row["connection"]), "{row} in {conns}");
    let table = ok(run(&["ctl", "--url", u, "list-consumers"]));
    assert!(table.starts_with("queue") && table.contains(q), "{table}");
    drop(sub);
}

/// One `Admin` command on `raw`; its JSON answer.
fn admin(raw: &mut Raw, command: u8, arg: &str) -> Value {
    let rid = raw.send(Cmd::Admin { command, arg });
    let f = raw.recv();
    match f.frame() {
        Frame { request_id, cmd: Cmd::AdminOk { json } } if request_id == rid => serde_json::from_str(json).unwrap(),
        other => panic!("expected AdminOk, got {other:?}"),
    }
}

#[test]
fn list_consumers_shows_priority_and_unacked_and_refuses_an_argument() {
    let b = TestBroker::start();
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare("scr-raw");
    let rid = raw.send(Cmd::Subscribe { consumer_id: 41, prefetch: 3, queue: "scr-raw", priority: 5, origin: false });
    raw.expect_ok(rid);
    let (mut other, _) = Raw::hello(b.native);
    other.publish_confirmed("scr-raw", &[b"one", b"two"]);
    // Two deliveries, not acked: the listing counts them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = admin(&mut other, op::ADMIN_LIST_CONSUMERS, "");
        let row = rows.as_array().unwrap().iter().find(|r| r["queue"] == "scr-raw").cloned();
        if let Some(r) = row.filter(|r| r["unacked"] == 2) {
            break r;
        }
        assert!(Instant::now() < deadline, "{rows}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((row["consumer_id"].as_u64(), row["prefetch"].as_u64()), (Some(41), Some(3)), "{row}");
    assert_eq!((row["priority"].as_i64(), row["exclusive"].as_bool()), (Some(5), Some(false)), "{row}");
    // The request takes no argument: one is refused, and the connection
    // goes on (an operator's typo is not an attack).
    let refused = admin(&mut other, op::ADMIN_LIST_CONSUMERS, &"x".repeat(1000));
    assert_eq!(refused["error"], "list-consumers takes no argument", "{refused}");
    other.ping();
    drop(raw);
    // The consumer's connection is gone, and so is its row.
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin(&mut other, op::ADMIN_LIST_CONSUMERS, "").as_array().unwrap().iter().any(|r| r["queue"] == "scr-raw") {
        assert!(Instant::now() < deadline, "the closed consumer is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
