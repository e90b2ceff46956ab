//! Definitions export and import in RabbitMQ's JSON format, against real
//! brokers over real sockets: `GET`/`POST /api/definitions`, `ringmq ctl
//! export-definitions` / `import-definitions`, `load_definitions` at boot,
//! a real RabbitMQ 3.10's export (started here, when installed) and the
//! one captured from it (tests/data/rabbitmq-definitions.json), and the
//! refusals (nothing applied).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{http_send, pika, TestBroker};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");
const GUEST: (&str, &str) = ("guest", "guest");
/// The RabbitMQ 3.10 export of tests/rabbitmq/declare.py's topology.
const FIXTURE: &str = "tests/data/rabbitmq-definitions.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The body of an HTTP response.
fn body(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn export(addr: SocketAddr) -> Value {
    let (status, raw) = http_send(addr, "GET", "/api/definitions", GUEST, "");
    assert_eq!(status, 200, "{raw}");
    serde_json::from_str(body(&raw)).unwrap()
}

fn import(addr: SocketAddr, doc: &str) -> (u16, String) {
    let (status, raw) = http_send(addr, "POST", "/api/definitions", GUEST, doc);
    (status, body(&raw).to_string())
}

fn put(addr: SocketAddr, path: &str, doc: Value) {
    let (status, raw) = http_send(addr, "PUT", path, GUEST, &doc.to_string());
    assert!(status == 201 || status == 204, "PUT {path}: {raw}");
}

/// Runs a pika script of tests/pika or tests/rabbitmq with AMQP_PORT set.
fn pika_ok(path: &Path, amqp: SocketAddr, args: &[String]) {
    let mut cmd = Command::new(pika::python());
    cmd.arg(path).args(args).env("AMQP_PORT", amqp.port().to_string()).env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd`, killed (and failing the test) after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} ran over {limit:?}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The topology of tests/rabbitmq/declare.py, declared on a ringmq broker
/// by pika, with alice and her permissions as the RabbitMQ script sets them.
fn declare_topology(b: &TestBroker) {
    put(b.metrics, "/api/vhosts/staging", json!({}));
    put(b.metrics, "/api/permissions/staging/guest", json!({"configure": ".*", "write": ".*", "read": ".*"}));
    put(b.metrics, "/api/users/alice", json!({"password": "wonderland", "tags": "monitoring"}));
    let alice_root = json!({"configure": "^alice\\..*", "write": ".*", "read": "^(alice\\..*|orders\\.eu)$"});
    put(b.metrics, "/api/permissions/%2F/alice", alice_root);
    put(b.metrics, "/api/permissions/staging/alice", json!({"configure": "", "write": "stage\\..*", "read": ".*"}));
    pika_ok(&root().join("tests/rabbitmq/declare.py"), b.amqp, &[b.amqp.port().to_string()]);
}

fn check_topology(b: &TestBroker) {
    pika_ok(&root().join("tests/pika/definitions_check.py"), b.amqp, &[]);
}

#[test]
fn an_export_imports_into_a_fresh_broker_and_exports_the_same() {
    let a = TestBroker::start();
    declare_topology(&a);
    let first = export(a.metrics);
    assert_eq!(first["queues"].as_array().unwrap().len(), 6, "{first}");
    let eu = first["queues"].as_array().unwrap().iter().find(|q| q["name"] == "orders.eu").unwrap();
    assert_eq!(eu["arguments"]["x-message-ttl"], 60000);
    assert_eq!(eu["arguments"]["x-dead-letter-exchange"], "dlx");
    let alice = first["users"].as_array().unwrap().iter().find(|u| u["name"] == "alice").unwrap();
    assert_eq!(alice["hashing_algorithm"], "rabbit_password_hashing_sha256");

    let b = TestBroker::start_with(3, |_| {});
    let (status, answer) = import(b.metrics, &first.to_string());
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["queues"], 6, "{answer}");
    same(&export(b.metrics), &first, "export, import into a fresh broker, export: the same definitions");
    check_topology(&b);
    // Importing the same again changes nothing and is not refused.
    let (status, again) = import(b.metrics, &first.to_string());
    assert_eq!(status, 200, "{again}");
    assert_eq!(export(b.metrics), first);
}

#[test]
fn the_captured_rabbitmq_export_imports_and_its_users_log_in() {
    let b = TestBroker::start();
    let doc = std::fs::read_to_string(root().join(FIXTURE)).unwrap();
    let (status, answer) = import(b.metrics, &doc);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (answer["vhosts"].as_u64(), answer["exchanges"].as_u64(), answer["bindings"].as_u64()),
        (Some(1), Some(7), Some(8))
    );
    assert!(
        answer["notes"].to_string().contains("Default virtual host")
            || answer["notes"].to_string().contains("description"),
        "{answer}"
    );
    check_topology(&b);
    check_rabbit_import(&export(b.metrics));
}

/// What tests/rabbitmq/declare.py made, as ringmq exports it.
fn check_rabbit_import(doc: &Value) {
    let names = |k: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}/{}", x["vhost"].as_str().unwrap(), x["name"].as_str().unwrap()))
            .collect()
    };
    let queues = names("queues");
    for q in ["//orders.eu", "//dead", "//prio", "//scratch", "//lost", "staging/stage.q"] {
        assert!(queues.contains(&q.to_string()), "{q} in {queues:?}");
    }
    let xs = names("exchanges");
    for x in ["//orders", "//events", "//unrouted", "//dlx", "//hdrs", "//inner", "staging/stage.topic"] {
        assert!(xs.contains(&x.to_string()), "{x} in {xs:?}");
    }
    let events = doc["exchanges"].as_array().unwrap().iter().find(|x| x["name"] == "events").unwrap();
    assert_eq!(events["arguments"]["alternate-exchange"], "unrouted");
    assert_eq!(doc["bindings"].as_array().unwrap().len(), 8);
    let prio = doc["queues"].as_array().unwrap().iter().find(|q| q["name"] == "prio").unwrap();
    assert_eq!(prio["arguments"]["x-max-priority"], 5);
}

/// A real RabbitMQ: started by tests/rabbitmq/export.sh (private ports and
/// dirs, stopped on every exit), the topology declared with pika, its
/// definitions exported and imported here with `ctl import-definitions`;
/// then RabbitMQ's `rabbitmqadmin export` reads ringmq's API.
#[test]
fn a_live_rabbitmq_export_imports() {
    let installed = Path::new("/usr/sbin/rabbitmq-server").exists();
    let skip = std::env::var("RINGMQ_SKIP_CLIENTS").unwrap_or_default();
    if !installed && skip.split([',', ' ']).any(|c| c.trim() == "rabbitmq") {
        eprintln!("SKIPPED the live RabbitMQ export: rabbitmq-server is not installed and RINGMQ_SKIP_CLIENTS={skip} asks for the skip");
        return;
    }
    assert!(installed, "rabbitmq-server is missing: run ./scripts/install-clients.sh, or RINGMQ_SKIP_CLIENTS=rabbitmq to skip on purpose");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rabbit.json");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", "170", "bash"]).arg(root().join("tests/rabbitmq/export.sh")).arg(&out).arg(pika::python());
    let run = run_bounded(cmd, Duration::from_secs(190));
    assert!(run.status.success(), "export.sh failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(doc["rabbit_version"].as_str().unwrap().starts_with("3."), "{doc}");

    let b = TestBroker::start();
    let imported = ctl(&b, &["import-definitions", out.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    check_topology(&b);
    check_rabbit_import(&export(b.metrics));

    // RabbitMQ's own HTTP tool (in the same package) against ringmq's API.
    let again = dir.path().join("again.json");
    let mut admin = Command::new("rabbitmqadmin");
    let port = b.metrics.port().to_string();
    admin.args(["-H", "127.0.0.1", "-P", &port, "-u", "guest", "-p", "guest", "export"]).arg(&again);
    let run = run_bounded(admin, Duration::from_secs(30));
    assert!(run.status.success(), "rabbitmqadmin export: {}", String::from_utf8_lossy(&run.stderr));
    let via_admin: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(via_admin, export(b.metrics));
}

/// `a == b`, or a failure naming the first field and item that differ
/// (a whole export is too long to print).
fn same(a: &Value, b: &Value, what: &str) {
    for k in a.as_object().unwrap().keys().chain(b.as_object().unwrap().keys()) {
        if a[k] == b[k] {
            continue;
        }
        let (xs, ys) = (a[k].as_array(), b[k].as_array());
        if let (Some(xs), Some(ys)) = (xs, ys) {
            let i = xs.iter().zip(ys).position(|(x, y)| x != y).unwrap_or(xs.len().min(ys.len()));
            panic!(
                "{what}: '{k}' differs at item {i} of {} and {}: {:?} / {:?}",
                xs.len(),
                ys.len(),
                xs.get(i),
                ys.get(i)
            );
        }
        panic!("{what}: '{k}' differs: {} / {}", a[k], b[k]);
    }
}

fn ctl(b: &TestBroker, args: &[&str]) -> Output {
    Command::new(BIN).args(["ctl", "--url", &b.url()]).args(args).output().unwrap()
}

#[test]
fn ctl_exports_and_imports_in_parts() {
    // Over 60000 bytes: the import goes in several Admin frames.
    let queues: Vec<Value> =
        (0..1500).map(|i| json!({"name": format!("bulk.{i:04}"), "vhost": "/", "durable": false, "auto_delete": false, "arguments": {"x-max-length": i}})).collect();
    let doc = json!({"queues": queues, "exchanges": [{"name": "bulk", "vhost": "/", "type": "direct", "durable": true}],
        "bindings": [{"source": "bulk", "vhost": "/", "destination": "bulk.0007", "destination_type": "queue", "routing_key": "seven"}]});
    let text = doc.to_string();
    assert!(text.len() > 120_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.json");
    std::fs::write(&file, &text).unwrap();
    let b = TestBroker::start();
    let out = ctl(&b, &["import-definitions", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 exchanges, 1500 queues, 1 bindings"), "{stdout}");

    let exported = dir.path().join("out.json");
    let out = ctl(&b, &["export-definitions", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_ctl: Value = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    same(&from_ctl, &export(b.metrics), "ctl and HTTP export the same");
    assert_eq!(from_ctl["queues"].as_array().unwrap().len(), 1500);
    assert_eq!(from_ctl["queues"][7]["arguments"]["x-max-length"], 7);

    // A refusal is ctl's failure, with the reason.
    std::fs::write(&file, r#"{"queues": [{"name": "q", "vhost": "/", "arguments": {"x-queue-type": "quorum"}}]}"#)
        .unwrap();
    let out = ctl(&b, &["import-definitions", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quorum"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn refusals_name_what_is_refused_and_apply_nothing() {
    let b = TestBroker::start_with(2, |c| c.definitions_bytes_max = 64 << 10);
    let before = export(b.metrics);
    let good_queue = json!({"name": "fine", "vhost": "/", "durable": true, "arguments": {}});
    let cases = [
        (
            json!({"queues": [good_queue, {"name": "qq", "vhost": "/", "durable": true, "arguments": {"x-queue-type": "quorum"}}]}),
            "quorum",
        ),
        (
            json!({"queues": [good_queue], "exchanges": [{"name": "delayed", "vhost": "/", "type": "x-delayed-message"}]}),
            "x-delayed-message",
        ),
        (json!({"queues": [good_queue, {"name": "odd", "vhost": "/", "arguments": {"x-bogus": 1}}]}), "x-bogus"),
        (
            json!({"queues": [good_queue], "policies": [{"name": "ttl-all", "vhost": "/", "pattern": ".*", "definition": {"message-ttl": 1}}]}),
            "ttl-all",
        ),
        (
            json!({"queues": [good_queue], "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "missing", "destination_type": "queue", "routing_key": ""}]}),
            "missing",
        ),
        (json!({"queues": [{"name": "fine", "vhost": "nowhere"}]}), "nowhere"),
        (
            json!({"vhosts": [{"name": "v1"}], "permissions": [{"user": "nobody", "vhost": "v1", "configure": "", "write": "", "read": ""}]}),
            "nobody",
        ),
    ];
    for (doc, name) in cases {
        let (status, answer) = import(b.metrics, &doc.to_string());
        assert_eq!(status, 400, "{doc}: {answer}");
        assert!(answer.contains(name), "the refusal names '{name}': {answer}");
        assert_eq!(export(b.metrics), before, "nothing of {doc} was applied");
    }
    // An existing queue with other arguments.
    let (status, answer) =
        import(b.metrics, &json!({"queues": [{"name": "fine", "vhost": "/", "durable": true}]}).to_string());
    assert_eq!(status, 200, "{answer}");
    let changed =
        json!({"queues": [{"name": "fine", "vhost": "/", "durable": true, "arguments": {"x-message-ttl": 5}}]});
    let (status, answer) = import(b.metrics, &changed.to_string());
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("x-message-ttl"), "{answer}");

    // Malformed JSON, a body over definitions_bytes_max: 400, 413.
    let (status, answer) = import(b.metrics, "{\"queues\": [");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("not JSON"), "{answer}");
    assert_eq!(claim_body(b.metrics, 100 << 10), 413, "a body over definitions_bytes_max");
    // A body that is not declared JSON (what a cross-site form sends): 415.
    assert_eq!(post_as_form(b.metrics, "{}"), 415, "a form POST");
    // Administrators only.
    put(b.metrics, "/api/users/watcher", json!({"password": "w", "tags": "monitoring"}));
    let (status, _) = http_send(b.metrics, "GET", "/api/definitions", ("watcher", "w"), "");
    assert_eq!(status, 403);
    let (status, _) = http_send(b.metrics, "POST", "/api/definitions", ("watcher", "w"), "{}");
    assert_eq!(status, 403);
    let url = b.url();
    let as_watcher = ["ctl", "--url", &url, "--user", "watcher", "--password", "w", "export-definitions", "-"];
    let out = Command::new(BIN).args(as_watcher).output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("administrator"), "{}", String::from_utf8_lossy(&out.stderr));
    // The broker is fine.
    let (status, _) = http_send(b.metrics, "GET", "/api/overview", GUEST, "");
    assert_eq!(status, 200);
    let (mut raw, _) = common::Raw::hello(b.native);
    raw.round_trip("after-refusals");
}

/// The status of a POST of `body` to /api/definitions as a browser's form
/// sends it (`Content-Type: application/x-www-form-urlencoded`).
fn post_as_form(addr: SocketAddr, body: &str) -> u16 {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let len = body.len();
    write!(
        s,
        "POST /api/definitions HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A POST announcing a `len`-byte body, of which nothing is sent: the
/// status of the answer (0 without one within 5 s).
fn claim_body(addr: SocketAddr, len: usize) -> u16 {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let head = format!(
        "POST /api/definitions HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn a_vhost_document_exports_and_imports_one_vhost() {
    let b = TestBroker::start();
    put(b.metrics, "/api/vhosts/v1", json!({}));
    let doc = json!({"queues": [{"name": "q", "durable": true}], "bindings": [
        {"source": "amq.direct", "destination": "q", "destination_type": "queue", "routing_key": "k", "arguments": {}}]});
    let (status, raw) = http_send(b.metrics, "POST", "/api/definitions/v1", GUEST, &doc.to_string());
    assert_eq!(status, 200, "{raw}");
    let (status, raw) = http_send(b.metrics, "GET", "/api/definitions/v1", GUEST, "");
    assert_eq!(status, 200, "{raw}");
    let got: Value = serde_json::from_str(body(&raw)).unwrap();
    assert_eq!(
        got["queues"],
        json!([{"name": "q", "type": "classic", "durable": true, "auto_delete": false, "arguments": {}}])
    );
    assert!(got.get("users").is_none());
    let (status, _) = http_send(b.metrics, "GET", "/api/definitions/nowhere", GUEST, "");
    assert_eq!(status, 404);
}

#[test]
fn load_definitions_applies_the_file_at_boot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defs.json");
    std::fs::copy(root().join(FIXTURE), &path).unwrap();
    let p = path.clone();
    let b = TestBroker::start_with(2, move |c| c.load_definitions = Some(p));
    check_rabbit_import(&export(b.metrics));
    check_topology(&b);
    drop(b);

    // A file ringmq cannot honour stops the start, naming the key and the item.
    std::fs::write(&path, r#"{"queues": [{"name": "q", "vhost": "/", "type": "quorum"}]}"#).unwrap();
    let config = ringmq::server::config::Config {
        cores: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        pin_cores: false,
        load_definitions: Some(path.clone()),
        ..Default::default()
    };
    let e = match ringmq::server::Broker::start(config.clone()) {
        Ok(_) => panic!("a broker started with a quorum queue to load"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("load_definitions") && e.contains("quorum"), "{e}");
    // A binding to a queue the broker lacks: refused at boot, after the shards started.
    std::fs::write(&path, r#"{"bindings": [{"source": "amq.direct", "vhost": "/", "destination": "absent", "destination_type": "queue", "routing_key": ""}]}"#).unwrap();
    let e = match ringmq::server::Broker::start(config) {
        Ok(_) => panic!("a broker started with a dangling binding to load"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("absent"), "{e}");
}
