//! The management web UI (src/http/ui.rs) and the API calls it makes that
//! RabbitMQ's UI makes (publish, get, purge, whoami), against a real
//! broker; and the UI itself in a real headless Chromium, driven over the
//! DevTools protocol by `tests/webui/cdp.py` (standard library Python):
//! with mouse clicks and typed text it is refused a wrong password, logs
//! in, finds the queue the test filled (and a queue named like markup,
//! shown as text), sorts and filters the queues, opens the queue's page,
//! publishes, peeks and purges there; logged in again as a `monitoring`
//! user it is offered none of those. A console error or exception on the
//! page (a CSP violation is one) fails the run. It also publishes with
//! headers and properties and finds them in the message it gets, lists a
//! real AMQP client's channel on the channels page, finds the exchange and
//! binding and the AMQP connection on theirs, reads the queue's rates on
//! the queues page, downloads and uploads definitions, and sees the
//! overview's charts take samples. Screenshots (the overview, and the queue page with
//! its forms) go to `$CARGO_TARGET_TMPDIR/webui-screenshot.png` and
//! `webui-screenshot-queue.png` (the paths are printed).
//!
//! Chromium comes from Debian's `chromium` package
//! (`./scripts/install-clients.sh`). Without it the browser test fails,
//! unless a person asked to skip it with `RINGMQ_SKIP_CLIENTS=chromium`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::{finish, python};
use common::{Raw, TestBroker};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `guest:guest`, base64.
const GUEST: &str = "Z3Vlc3Q6Z3Vlc3Q=";

/// One HTTP/1.1 request: (status, head, body).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let len =
        if body.is_empty() && method == "GET" { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}{len}Connection: close\r\n\r\n{body}").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw}"));
    (status, head, body)
}

/// A request as guest (an administrator) with a JSON body.
fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Basic {GUEST}");
    let json = ("Content-Type", "application/json");
    let (status, _, body) = http(addr, method, path, &[("Authorization", &auth), json], body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The header's value in a response head, case-blind.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A path segment with every byte but letters, digits and `-` escaped.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn ready(addr: SocketAddr, queue: &str) -> u64 {
    let (status, q) = admin(addr, "GET", &format!("/api/queues/%2F/{}", seg(queue)), "");
    assert_eq!(status, 200, "{q}");
    q["messages_ready"].as_u64().unwrap()
}

#[test]
fn ui_files_are_served_with_their_policy() {
    let b = TestBroker::start();
    let (status, head, body) = http(b.metrics, "GET", "/", &[], "");
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("<form id=\"login\""), "{body}");
    assert_eq!(header(&head, "content-type"), Some("text/html; charset=utf-8"));
    let csp = header(&head, "content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let (status, head_only, nothing) = http(b.metrics, "HEAD", "/", &[], "");
    assert_eq!((status, nothing.as_str()), (200, ""));
    assert_eq!(header(&head_only, "content-length"), Some(body.len().to_string().as_str()));
    let etag = header(&head, "etag").unwrap().to_string();
    let (status, _, _) = http(b.metrics, "GET", "/", &[("If-None-Match", &etag)], "");
    assert_eq!(status, 304);

    for (path, ty) in
        [("/ui/app.js", "text/javascript"), ("/ui/api.js", "text/javascript"), ("/ui/app.css", "text/css")]
    {
        let (status, head, body) = http(b.metrics, "GET", path, &[], "");
        assert_eq!(status, 200, "{path}");
        assert!(header(&head, "content-type").unwrap().starts_with(ty), "{path}: {head}");
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        assert!(!body.is_empty());
    }
    for path in ["/ui/missing.js", "/ui/", "/nothing-here", "/api/no-such-thing"] {
        let auth = format!("Basic {GUEST}");
        let (status, _, _) = http(b.metrics, "GET", path, &[("Authorization", &auth)], "");
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = http(b.metrics, "POST", "/", &[], "x");
    assert_eq!(status, 405);
}

#[test]
fn ui_calls_need_credentials() {
    let b = TestBroker::start();
    // A browser asking (X-Requested-With) gets no challenge: the page shows
    // its own form instead of the browser's dialog.
    let (status, head, _) = http(b.metrics, "GET", "/api/whoami", &[("X-Requested-With", "XMLHttpRequest")], "");
    assert_eq!(status, 401);
    assert_eq!(header(&head, "www-authenticate"), None);
    let (status, head, _) = http(b.metrics, "GET", "/api/overview", &[], "");
    assert_eq!(status, 401);
    assert!(header(&head, "www-authenticate").is_some());
    let wrong = "Basic Z3Vlc3Q6bm9wZQ=="; // guest:nope
    let (status, _, _) = http(b.metrics, "POST", "/api/queues/%2F/q/get", &[("Authorization", wrong)], "{}");
    assert_eq!(status, 401);
    let (status, me) = admin(b.metrics, "GET", "/api/whoami", "");
    assert_eq!(status, 200);
    assert_eq!(me, json!({ "name": "guest", "tags": ["administrator"] }));
}

#[test]
fn publish_get_and_purge_over_http() {
    let b = TestBroker::start();
    let q = "webui-msgs";
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(q);
    let properties = json!({ "content_type": "text/plain", "delivery_mode": 2, "priority": 4,
                             "correlation_id": "c-1", "message_id": "m-1", "reply_to": "replies",
                             "expiration": "60000", "timestamp": 1_700_000_000,
                             "headers": { "s": "text", "i": -7, "f": 1.5, "b": true } });
    let publish =
        json!({ "routing_key": q, "payload": "héllo", "payload_encoding": "string", "properties": properties });
    let (status, r) = admin(b.metrics, "POST", "/api/exchanges/%2F/amq.default/publish", &publish.to_string());
    assert_eq!((status, r), (200, json!({ "routed": true })));
    let binary = json!({ "routing_key": q, "payload": "AAEC/w==", "payload_encoding": "base64" });
    let (status, r) = admin(b.metrics, "POST", "/api/exchanges/%2F/amq.default/publish", &binary.to_string());
    assert_eq!((status, r), (200, json!({ "routed": true })));
    let nowhere = json!({ "routing_key": "no-such-queue", "payload": "x" });
    let (status, r) = admin(b.metrics, "POST", "/api/exchanges/%2F/amq.direct/publish", &nowhere.to_string());
    assert_eq!((status, r), (200, json!({ "routed": false })));
    let (status, _) = admin(b.metrics, "POST", "/api/exchanges/%2F/no-such-exchange/publish", &nowhere.to_string());
    assert_eq!(status, 404);
    assert_eq!(ready(b.metrics, q), 2);

    // A peek: both come back, and stay in the queue.
    let get = |count: u64, ackmode: &str| {
        let body = json!({ "count": count, "ackmode": ackmode, "encoding": "auto", "truncate": 50000 });
        admin(b.metrics, "POST", &format!("/api/queues/%2F/{q}/get"), &body.to_string())
    };
    let (status, got) = get(5, "ack_requeue_true");
    assert_eq!(status, 200, "{got}");
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["payload"], "héllo");
    assert_eq!(got[0]["payload_encoding"], "string");
    // Every property comes back as it was published, headers with their types.
    assert_eq!(got[0]["properties"], properties, "{got:?}");
    assert_eq!(got[1]["payload"], "AAEC/w==");
    assert_eq!(got[1]["payload_encoding"], "base64");
    assert_eq!(got[1]["payload_bytes"], 4);
    assert_eq!(ready(b.metrics, q), 2);
    // Taken for good: one left.
    let (status, got) = get(1, "ack_requeue_false");
    assert_eq!((status, got.as_array().unwrap().len()), (200, 1));
    assert_eq!(ready(b.metrics, q), 1);

    let (status, _) = admin(b.metrics, "DELETE", &format!("/api/queues/%2F/{q}/contents"), "");
    assert_eq!(status, 204);
    assert_eq!(ready(b.metrics, q), 0);
    let (status, got) = get(1, "ack_requeue_true");
    assert_eq!((status, got), (200, json!([])));
    let (status, _) = admin(b.metrics, "DELETE", "/api/queues/%2F/no-such-queue/contents", "");
    assert_eq!(status, 404);
}

#[test]
fn hostile_bodies_are_refused() {
    let b = TestBroker::start_with(2, |c| c.message_bytes_max = 4096);
    let q = "webui-hostile";
    Raw::hello(b.native).0.declare(q);
    let get_path = format!("/api/queues/%2F/{q}/get");
    let publish_path = "/api/exchanges/%2F/amq.default/publish";
    let big = "x".repeat(8192);
    for (path, body, want) in [
        (get_path.as_str(), "not json".to_string(), 400),
        (&get_path, "[1, 2]".into(), 400),
        (&get_path, r#"{"count": 0}"#.into(), 400),
        (&get_path, r#"{"count": 101}"#.into(), 400),
        (&get_path, r#"{"count": -1}"#.into(), 400),
        (&get_path, r#"{"count": 1e300}"#.into(), 400),
        (&get_path, r#"{"ackmode": "eat_it"}"#.into(), 400),
        (&get_path, r#"{"encoding": 7}"#.into(), 400),
        (&get_path, format!(r#"{{"pad": "{}"}}"#, "y".repeat(8192)), 413),
        (publish_path, "{".into(), 400),
        (publish_path, format!(r#"{{"routing_key": "{q}", "payload": "{big}"}}"#), 413),
        (publish_path, format!(r#"{{"routing_key": "{}", "payload": "x"}}"#, "k".repeat(256)), 400),
        (publish_path, r#"{"payload": "x", "payload_encoding": "rot13"}"#.into(), 400),
        (publish_path, r#"{"payload": "!!!", "payload_encoding": "base64"}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"delivery_mode": 3}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"priority": 256}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"expiration": "-5"}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"headers": {"a": [1]}}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"headers": {"a": {"b": 1}}}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"headers": {"a": null}}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"headers": {"": "x"}}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"headers": "a=1"}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"timestamp": -1}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": {"app_id": "x"}}"#.into(), 400),
        (publish_path, r#"{"payload": "x", "properties": []}"#.into(), 400),
    ] {
        let (status, r) = admin(b.metrics, "POST", path, &body);
        assert_eq!(status, want, "{path} {}: {r}", &body[..body.len().min(80)]);
    }
    // A form of another site cannot send JSON: a body of another type is
    // refused before it is read.
    let auth = format!("Basic {GUEST}");
    let body = format!(r#"{{"routing_key": "{q}", "payload": "x"}}"#);
    for ty in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(ty.map(|t| ("Content-Type", t)));
        let (status, _, r) = http(b.metrics, "POST", publish_path, &headers, &body);
        assert_eq!(status, 415, "{ty:?}: {r}");
    }
    assert_eq!(ready(b.metrics, q), 0);
    // The broker is still serving.
    let (status, _) = admin(b.metrics, "GET", "/api/overview", "");
    assert_eq!(status, 200);
}

#[test]
fn a_monitoring_user_may_look_but_not_change() {
    let b = TestBroker::start();
    let q = "webui-look";
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(q);
    raw.publish_confirmed(q, &[b"kept"]);
    let user = json!({ "password": "watch", "tags": "monitoring" });
    let (status, _) = admin(b.metrics, "PUT", "/api/users/watcher", &user.to_string());
    assert_eq!(status, 201);
    let perms = json!({ "configure": ".*", "write": ".*", "read": ".*" });
    let (status, _) = admin(b.metrics, "PUT", "/api/permissions/%2F/watcher", &perms.to_string());
    assert_eq!(status, 201);
    let auth = "Basic d2F0Y2hlcjp3YXRjaA=="; // watcher:watch
    let (status, _, me) = http(b.metrics, "GET", "/api/whoami", &[("Authorization", auth)], "");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&me).unwrap(), json!({ "name": "watcher", "tags": ["monitoring"] }));
    let (status, _, _) = http(b.metrics, "GET", "/api/queues", &[("Authorization", auth)], "");
    assert_eq!(status, 200);
    // The UI hides these from this user; the API refuses them anyway.
    for (method, path, body) in [
        ("POST", format!("/api/queues/%2F/{q}/get"), r#"{"count": 1}"#),
        ("POST", "/api/exchanges/%2F/amq.default/publish".to_string(), r#"{"routing_key": "x", "payload": "y"}"#),
        ("DELETE", format!("/api/queues/%2F/{q}/contents"), ""),
        ("DELETE", format!("/api/queues/%2F/{q}"), ""),
    ] {
        let headers = [("Authorization", auth), ("Content-Type", "application/json")];
        let (status, _, r) = http(b.metrics, method, &path, &headers, body);
        assert_eq!(status, 403, "{method} {path}: {r}");
    }
    assert_eq!(ready(b.metrics, q), 1);
}

#[test]
fn an_administrator_without_permissions_in_the_vhost_cannot_get_or_publish() {
    let b = TestBroker::start();
    let q = "webui-perm";
    Raw::hello(b.native).0.declare(q);
    let user = json!({ "password": "boss", "tags": "administrator" });
    let (status, _) = admin(b.metrics, "PUT", "/api/users/boss", &user.to_string());
    assert_eq!(status, 201);
    let perms = json!({ "configure": "", "write": "", "read": "" });
    let (status, _) = admin(b.metrics, "PUT", "/api/permissions/%2F/boss", &perms.to_string());
    assert_eq!(status, 201);
    let auth = "Basic Ym9zczpib3Nz"; // boss:boss
    let get = format!("/api/queues/%2F/{q}/get");
    let headers = [("Authorization", auth), ("Content-Type", "application/json")];
    let (status, _, r) = http(b.metrics, "POST", &get, &headers, r#"{"count": 1}"#);
    assert_eq!(status, 403, "{r}");
    let publish = format!(r#"{{"routing_key": "{q}", "payload": "y"}}"#);
    let path = "/api/exchanges/%2F/amq.default/publish";
    let (status, _, r) = http(b.metrics, "POST", path, &headers, &publish);
    assert_eq!(status, 403, "{r}");
    assert_eq!(ready(b.metrics, q), 0);
}

/// An AMQP client (lapin, on a thread of its own) holding one channel
/// open while the browser looks: confirm mode, a prefetch of 7, one
/// consumer on the queue; it also declares the exchange and binds the
/// queue to it.
struct AmqpChannel {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AmqpChannel {
    /// The client and its channel's name in `/api/channels`.
    fn open((amqp, metrics): (SocketAddr, SocketAddr), queue: &str, exchange: &str) -> (AmqpChannel, String) {
        use lapin::options::QueueBindOptions;
        use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
        use lapin::types::FieldTable;
        let url = format!("amqp://guest:guest@{amqp}/%2f");
        let (queue, exchange) = (queue.to_string(), exchange.to_string());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (up, is_up) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            common::lapin_thread::on_thread(Duration::from_secs(120), async move {
                let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
                let ch = conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                ch.basic_qos(7, BasicQosOptions::default()).await?;
                let kind = lapin::ExchangeKind::Direct;
                ch.exchange_declare(&exchange, kind, ExchangeDeclareOptions::default(), FieldTable::default()).await?;
                ch.queue_bind(&queue, &exchange, "k", QueueBindOptions::default(), FieldTable::default()).await?;
                // A consumer on another queue: the test's queue keeps its messages.
                let (other, args) = ("consumed-by-the-ui-test".to_string(), FieldTable::default());
                ch.queue_declare(&other, Default::default(), args.clone()).await?;
                let _consumer = ch.basic_consume(&other, "c", BasicConsumeOptions::default(), args).await?;
                let _ = up.send(());
                let _ = stopped.recv_timeout(Duration::from_secs(100));
                conn.close(200, "bye").await?;
                Ok(())
            })
        });
        is_up.recv_timeout(Duration::from_secs(30)).expect("the AMQP client's channel");
        let (status, rows) = admin(metrics, "GET", "/api/channels", "");
        assert_eq!(status, 200, "{rows}");
        let row = rows.as_array().unwrap().iter().find(|c| c["prefetch_count"] == 7).cloned();
        let name = row.unwrap_or_else(|| panic!("no channel with a prefetch of 7 in {rows}"))["name"].clone();
        (AmqpChannel { stop: Some(stop), thread: Some(thread) }, name.as_str().unwrap().to_string())
    }

    fn close(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for AmqpChannel {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills its whole process group (the browser and the renderer, GPU and
    /// zygote processes it started), then reaps it.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    let from_env = std::env::var_os("RINGMQ_CHROMIUM").map(PathBuf::from);
    let known = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from);
    from_env.into_iter().chain(known).find(|p| p.exists())
}

impl Browser {
    /// Starts it with DevTools on a port of its choosing; (browser, port).
    fn start(exe: &Path) -> (Browser, u16) {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(exe)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions"])
            .args(["--disable-background-networking", "--disable-sync", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let browser = Browser { child, profile };
        // Chromium writes the port it bound to this file.
        let file = browser.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let port = std::fs::read_to_string(&file).ok().and_then(|t| t.lines().next()?.trim().parse().ok());
            if let Some(port) = port {
                return (browser, port);
            }
            assert!(Instant::now() < deadline, "chromium did not open DevTools within 15 s:\n{}", browser.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

#[test]
fn the_ui_in_a_browser_lists_a_queue_publishes_gets_and_purges_it() {
    let list = std::env::var("RINGMQ_SKIP_CLIENTS").unwrap_or_default();
    if list.split([',', ' ']).any(|c| c.trim() == "chromium") {
        eprintln!("SKIPPED the browser test: RINGMQ_SKIP_CLIENTS={list} asks for it");
        return;
    }
    let exe = chromium().unwrap_or_else(|| {
        panic!(
            "chromium is missing: run ./scripts/install-clients.sh (./scripts/test.sh runs it), \
             or skip this test on purpose with RINGMQ_SKIP_CLIENTS=chromium"
        )
    });
    let b = TestBroker::start();
    let q = "webui-browser";
    // Attacker-chosen names are data: the page must show this as text.
    let hostile = "<img src=x onerror=window.__xss=1>";
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(q);
    raw.declare(hostile);
    raw.publish_confirmed(q, &[b"one", b"two", b"three"]);
    assert_eq!(ready(b.metrics, q), 3);
    let (status, _) = admin(b.metrics, "PUT", "/api/users/watcher", r#"{"password": "watch", "tags": "monitoring"}"#);
    assert_eq!(status, 201);
    // An AMQP channel for the channels page; an exchange bound to the
    // queue for the exchanges and bindings pages.
    let (mut amqp, channel) = AmqpChannel::open((b.amqp, b.metrics), q, "webui-x");
    let (status, rows) = admin(b.metrics, "GET", "/api/channels", "");
    assert_eq!(status, 200);
    assert_eq!(rows.as_array().unwrap().iter().filter(|c| c["name"] == channel).count(), 1, "{rows}");

    // A definitions file for the page to upload, and where its download goes.
    let downloads = tempfile::tempdir().unwrap();
    let upload = downloads.path().join("upload.json");
    let defs = json!({ "queues": [{ "name": "uploaded-by-the-ui", "vhost": "/", "durable": true,
                                    "auto_delete": false, "arguments": { "x-max-length": 10 } }] });
    std::fs::write(&upload, defs.to_string()).unwrap();

    let started = Instant::now();
    let (browser, port) = Browser::start(&exe);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("webui-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(shot.with_file_name("webui-screenshot-queue.png"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webui/cdp.py");
    let url = format!("http://{}/", b.metrics);
    let child = Command::new(python())
        .arg(script)
        .args([&port.to_string(), &url, "guest", "guest", q, "3", hostile])
        .arg(&shot)
        .args(["watcher", "watch"])
        .args([channel.as_str(), "7", "webui-x"])
        .arg(&upload)
        .arg(downloads.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = finish(child, Duration::from_secs(45));
    amqp.close();
    let log = browser.log();
    drop(browser);
    assert_eq!(
        run.code,
        Some(0),
        "the browser run failed\n--- stdout\n{}\n--- stderr\n{}\n--- chromium (tail)\n{}",
        run.stdout,
        run.stderr,
        &log[log.len().saturating_sub(3000)..]
    );
    eprintln!("{}browser run took {:?}; screenshot: {}", run.stdout, started.elapsed(), shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a screenshot");
    let queue_shot = shot.with_file_name("webui-screenshot-queue.png");
    assert!(std::fs::metadata(&queue_shot).unwrap().len() > 1000, "the queue page's screenshot");
    eprintln!("the queue page's screenshot: {}", queue_shot.display());
    // The purge the page asked for happened: over the API, and for a client.
    assert_eq!(ready(b.metrics, q), 0);
    let (status, got) = admin(b.metrics, "POST", &format!("/api/queues/%2F/{q}/get"), r#"{"count": 1}"#);
    assert_eq!((status, got), (200, json!([])));
    assert_eq!(ready(b.metrics, hostile), 0, "the other queue is still there");
    // The upload made its queue, with its argument.
    let (status, uploaded) = admin(b.metrics, "GET", "/api/queues/%2F/uploaded-by-the-ui", "");
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(uploaded["arguments"]["x-max-length"], 10, "{uploaded}");
}
