//! Logins on every listener (native, AMQP, HTTP) against the users of
//! `src/auth/`: RabbitMQ password hashes, refusals counted and logged, and
//! `loopback_users` (guest) refused from a non-loopback address, tested from
//! a network namespace joined to the broker's by a veth pair.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use ringmq::auth::password::PasswordHash;
use ringmq::auth::UserSeed;
use ringmq::protocol::amqp::client::{parse_close, split};
use ringmq::protocol::amqp::frame::{self, Decoded};
use ringmq::protocol::amqp::method::{self, id, MethodId};
use ringmq::protocol::amqp::wire::{put_longstr, put_shortstr};
use ringmq::protocol::{Cmd, ErrorCode, Frame};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;

/// alice's seed: RabbitMQ's `password_hash` of "s3cret", never the text.
fn alice() -> UserSeed {
    let hash = PasswordHash::with_salt([1, 2, 3, 4], b"s3cret").to_text();
    UserSeed { name: "alice".into(), password: None, password_hash: Some(hash), tags: vec!["monitoring".into()] }
}

/// Native Hello: Ok, or the error's code and message.
fn native_login(addr: SocketAddr, user: &str, password: &str) -> Result<(), (ErrorCode, String)> {
    let mut r = Raw::connect(addr);
    r.send(Cmd::Hello { version: ringmq::protocol::VERSION, user, password, heartbeat_ms: None, vhost: None });
    let f = r.recv();
    match f.frame() {
        Frame { cmd: Cmd::HelloOk(_), .. } => Ok(()),
        Frame { cmd: Cmd::Error { code, message, .. }, .. } => {
            Err((ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal), message.to_string()))
        }
        other => panic!("expected HelloOk or Error, got {other:?}"),
    }
}

/// The next AMQP method on `s`.
fn amqp_method(s: &mut TcpStream, buf: &mut Vec<u8>) -> (MethodId, Vec<u8>) {
    loop {
        if let Decoded::Frame(f, n) = frame::decode(buf, 1 << 20).unwrap() {
            let got = (f.kind == frame::METHOD).then(|| split(f.payload).map(|(m, a)| (m, a.to_vec())).unwrap());
            buf.drain(..n);
            match got {
                Some(m) => return m,
                None => continue,
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the broker closed without a method");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// AMQP PLAIN login up to connection.tune: Ok, or connection.close's code
/// and text.
fn amqp_login(addr: SocketAddr, user: &str, password: &str) -> Result<(), (u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, STEP).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(frame::PROTOCOL_HEADER).unwrap();
    let mut buf = Vec::new();
    assert_eq!(amqp_method(&mut s, &mut buf).0, id::CONNECTION_START);
    let mut b = BytesMut::new();
    method::put(&mut b, 0, id::CONNECTION_START_OK, |b| {
        b.put_u32(0);
        put_shortstr(b, "PLAIN");
        put_longstr(b, format!("\0{user}\0{password}").as_bytes());
        put_shortstr(b, "en_US");
    });
    s.write_all(&b).unwrap();
    match amqp_method(&mut s, &mut buf) {
        (m, _) if m == id::CONNECTION_TUNE => Ok(()),
        (m, args) if m == id::CONNECTION_CLOSE => {
            let c = parse_close(&args).unwrap();
            Err((c.code, String::from_utf8_lossy(c.text).into_owned()))
        }
        (m, _) => panic!("expected connection.tune or close, got {m:?}"),
    }
}

/// An HTTP request with basic auth; the status and the whole response.
fn http_request(addr: SocketAddr, method: &str, path: &str, user: &str, password: &str) -> (u16, String) {
    http_send(addr, method, path, (user, password), "")
}

/// HTTP GET with basic auth; the status and the whole response.
fn http(addr: SocketAddr, path: &str, user: &str, password: &str) -> (u16, String) {
    http_request(addr, "GET", path, user, password)
}

fn auth_failures(b: &TestBroker) -> u64 {
    let m = http_get(b.metrics, "/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix("ringmq_auth_failures_total ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ringmq_auth_failures_total in\n{m}"))
}

#[test]
fn a_hashed_user_logs_in_on_every_listener_and_refusals_are_counted() {
    let b = TestBroker::start_with(2, |c| c.users = vec![UserSeed::new("guest", "guest", &["administrator"]), alice()]);
    assert_eq!(auth_failures(&b), 0);

    native_login(b.native, "alice", "s3cret").unwrap();
    let (code, msg) = native_login(b.native, "alice", "s3cre").unwrap_err();
    assert_eq!(code, ErrorCode::AuthFailed, "{msg}");
    assert!(msg.contains("alice") && !msg.contains("s3cre"), "{msg}");

    amqp_login(b.amqp, "alice", "s3cret").unwrap();
    let (code, text) = amqp_login(b.amqp, "alice", "nope").unwrap_err();
    assert_eq!(code, 403, "{text}");
    assert!(text.starts_with("ACCESS_REFUSED"), "{text}");

    let (status, body) = http(b.metrics, "/api/overview", "alice", "s3cret");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("s3cret"));
    let (status, body) = http(b.metrics, "/api/overview", "alice", "s3cre");
    assert_eq!(status, 401, "{body}");
    // An unknown user is refused the same way.
    assert_eq!(native_login(b.native, "mallory", "s3cret").unwrap_err().0, ErrorCode::AuthFailed);

    assert_eq!(auth_failures(&b), 4, "one per refused login, summed over the shards");
}

/// A network namespace joined to this one by a veth pair; removed on drop.
struct Netns {
    name: String,
    host: Ipv4Addr,
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id();
        let name = format!("rmqauth{id}");
        let (host_if, ns_if) = (format!("rmqh{}", id % 1_000_000), format!("rmqn{}", id % 1_000_000));
        let net = format!("10.231.{}", id % 250);
        let ns = Netns { name: name.clone(), host: format!("{net}.1").parse().unwrap() };
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if],
            &["link", "set", &ns_if, "netns", &name],
            &["addr", "add", &format!("{net}.1/30"), "dev", &host_if],
            &["link", "set", &host_if, "up"],
            &["-n", &name, "addr", "add", &format!("{net}.2/30"), "dev", &ns_if],
            &["-n", &name, "link", "set", &ns_if, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            let out = Command::new("ip").args(args).output().expect("run ip (iproute2): the test runs as root with it");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        ns
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on this thread only, with an fd that stays open
            // for the call; the thread then talks from the namespace.
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[test]
fn guest_is_refused_from_a_non_loopback_address_on_every_listener() {
    let ns = Netns::create();
    let on = |port| SocketAddr::new(IpAddr::V4(ns.host), port);
    // Listening on the veth's host address only, never a machine interface.
    let b = TestBroker::start_with(1, |c| {
        c.users = vec![UserSeed::new("guest", "guest", &["administrator"]), alice()];
        c.listen = on(0);
        c.amqp_listen = on(0);
        c.metrics_listen = on(0);
    });
    let (native, amqp, metrics) = (b.native, b.amqp, b.metrics);
    assert_eq!(native.ip(), IpAddr::V4(ns.host));
    let got = ns.run(move || {
        (
            native_login(native, "guest", "guest"),
            native_login(native, "alice", "s3cret"),
            amqp_login(amqp, "guest", "guest"),
            amqp_login(amqp, "alice", "s3cret"),
            http(metrics, "/api/overview", "guest", "guest").0,
            http(metrics, "/api/overview", "alice", "s3cret").0,
        )
    });
    let (code, msg) = got.0.unwrap_err();
    assert_eq!(code, ErrorCode::AuthFailed);
    assert!(msg.contains("loopback"), "{msg}");
    got.1.unwrap();
    let (code, text) = got.2.unwrap_err();
    assert_eq!(code, 403);
    assert!(text.contains("can only connect via localhost"), "{text}");
    got.3.unwrap();
    assert_eq!(got.4, 401);
    assert_eq!(got.5, 200);
    assert_eq!(auth_failures(&b), 3);
}

/// An HTTP request with basic auth; the status.
fn http_status(addr: SocketAddr, method: &str, path: &str, user: &str, password: &str) -> u16 {
    http_request(addr, method, path, user, password).0
}

/// A native `Admin` command as `user`: Ok, or the error's code.
fn admin_as(addr: SocketAddr, user: &str, password: &str, command: u8, arg: &str) -> Result<(), u16> {
    admin_answer(addr, (user, password), command, arg).map(|_| ())
}

/// A native `Admin` command as `user`: the answer's JSON, or the error's code.
fn admin_answer(addr: SocketAddr, (user, password): (&str, &str), command: u8, arg: &str) -> Result<String, u16> {
    let mut r = Raw::connect(addr);
    r.send(Cmd::Hello { version: ringmq::protocol::VERSION, user, password, heartbeat_ms: None, vhost: None });
    assert!(matches!(r.recv().frame().cmd, Cmd::HelloOk(_)));
    r.send(Cmd::Admin { command, arg });
    let f = r.recv();
    match f.frame().cmd {
        Cmd::AdminOk { json } => Ok(json.to_string()),
        Cmd::Error { code, .. } => Err(code),
        other => panic!("expected AdminOk or Error, got {other:?}"),
    }
}

#[test]
fn tags_decide_what_the_management_api_and_ctl_allow() {
    use ringmq::protocol::op;
    let b = TestBroker::start_with(1, |c| {
        c.users = vec![UserSeed::new("guest", "guest", &["administrator"]), alice(), UserSeed::new("bob", "b0b", &[])];
    });
    Raw::hello(b.native).0.declare("tagged");
    // No management tag: messaging only.
    native_login(b.native, "bob", "b0b").unwrap();
    assert_eq!(http_status(b.metrics, "GET", "/api/overview", "bob", "b0b"), 403);
    let refused = ErrorCode::AccessRefused.as_u16();
    assert_eq!(admin_as(b.native, "bob", "b0b", op::ADMIN_LIST_QUEUES, ""), Err(refused));
    // monitoring: may read, not change.
    assert_eq!(http_status(b.metrics, "GET", "/api/queues", "alice", "s3cret"), 200);
    assert_eq!(http_status(b.metrics, "DELETE", "/api/queues/%2F/tagged", "alice", "s3cret"), 403);
    assert_eq!(admin_as(b.native, "alice", "s3cret", op::ADMIN_LIST_QUEUES, ""), Ok(()));
    assert_eq!(admin_as(b.native, "alice", "s3cret", op::ADMIN_DELETE_QUEUE, "tagged"), Err(refused));
    // administrator: both.
    assert_eq!(admin_as(b.native, "guest", "guest", op::ADMIN_PURGE_QUEUE, "tagged"), Ok(()));
    assert_eq!(http_status(b.metrics, "DELETE", "/api/queues/%2F/tagged", "guest", "guest"), 204);
    // /metrics stays open, as RabbitMQ's Prometheus endpoint.
    assert!(http_get(b.metrics, "/metrics").contains("ringmq_auth_failures_total 0"));
}

/// Users changed at run time, with ctl's `Admin` commands and the HTTP API:
/// once a change is answered, a login on every shard sees it; the users are
/// stored in the definitions file (hashes only) and survive a restart,
/// where they replace the config's seeds (a deleted guest stays deleted).
#[test]
fn users_change_at_run_time_on_every_shard_and_survive_a_restart() {
    use ringmq::protocol::op;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = TestBroker::start_in(&data, 2, |_| {});
    let ctl = |who: (&str, &str), command, arg: &str| admin_answer(b.native, who, command, arg).unwrap();
    let guest = ("guest", "guest");
    let every_shard = |user: &str, password: &str| -> Vec<bool> {
        b.shards.iter().map(|s| native_login(*s, user, password).is_ok()).collect()
    };

    // ctl add-user: every shard's login sees it.
    let added = ctl(guest, op::ADMIN_ADD_USER, r#"{"name":"carol","password":"c4rol","tags":["management"]}"#);
    assert!(added.contains("user added"), "{added}");
    assert!(every_shard("carol", "c4rol").iter().all(|ok| *ok));
    amqp_login(b.amqp, "carol", "c4rol").unwrap();
    assert_eq!(http_status(b.metrics, "GET", "/api/overview", "carol", "c4rol"), 200);
    assert_eq!(http_status(b.metrics, "GET", "/api/users", "carol", "c4rol"), 403, "users are the administrator's");
    let again = ctl(guest, op::ADMIN_ADD_USER, r#"{"name":"carol","password":"x"}"#);
    assert!(again.contains("already exists"), "{again}");

    // change-password: the old one is refused everywhere, the new works.
    ctl(guest, op::ADMIN_CHANGE_PASSWORD, r#"{"name":"carol","password":"n3w-pass"}"#);
    assert!(every_shard("carol", "c4rol").iter().all(|ok| !ok));
    assert!(every_shard("carol", "n3w-pass").iter().all(|ok| *ok));
    // set-user-tags: carol becomes an administrator.
    ctl(guest, op::ADMIN_SET_USER_TAGS, r#"{"name":"carol","tags":["administrator"]}"#);
    let carol = ("carol", "n3w-pass");
    let (status, listed) = http_send(b.metrics, "GET", "/api/users", carol, "");
    assert_eq!(status, 200, "{listed}");
    assert!(listed.contains("rabbit_password_hashing_sha256") && listed.contains("\"administrator\""), "{listed}");

    // PUT /api/users with RabbitMQ's own password hash of "test12".
    let dave = r#"{"password_hash":"kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR","tags":"monitoring"}"#;
    assert_eq!(http_send(b.metrics, "PUT", "/api/users/dave", carol, dave).0, 201);
    assert_eq!(http_send(b.metrics, "PUT", "/api/users/dave", carol, dave).0, 204, "a replace");
    amqp_login(b.amqp, "dave", "test12").unwrap();
    assert_eq!(http_status(b.metrics, "GET", "/api/queues", "dave", "test12"), 200);
    let (status, one) = http_send(b.metrics, "GET", "/api/users/dave", carol, "");
    assert!(status == 200 && one.contains("monitoring"), "{one}");
    // Refusals: a bad body, an oversized one, a missing user.
    assert_eq!(http_send(b.metrics, "PUT", "/api/users/eve", carol, "{").0, 400);
    assert_eq!(http_send(b.metrics, "PUT", "/api/users/eve", carol, r#"{"tags":"x"}"#).0, 400);
    let huge = format!(r#"{{"password":"{}"}}"#, "p".repeat(100 << 10));
    assert_eq!(http_send(b.metrics, "PUT", "/api/users/eve", carol, &huge).0, 413);
    assert_eq!(http_send(b.metrics, "DELETE", "/api/users/nobody", carol, "").0, 404);

    // DELETE /api/users/guest: refused everywhere from then on.
    assert_eq!(http_send(b.metrics, "DELETE", "/api/users/guest", carol, "").0, 204);
    assert!(every_shard("guest", "guest").iter().all(|ok| !ok));
    let list = ctl(carol, op::ADMIN_LIST_USERS, "");
    assert!(list.contains("carol") && list.contains("dave") && !list.contains("\"guest\""), "{list}");
    for secret in ["c4rol", "n3w-pass", "test12"] {
        assert!(!list.contains(secret) && !listed.contains(secret), "{secret} in an answer");
    }
    drop(b);

    // The file holds hashes, never the passwords.
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        for secret in [&b"c4rol"[..], b"n3w-pass", b"test12"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "a password in the data dir");
        }
    }
    // Restarted with the default config (which seeds guest): the stored
    // users rule.
    let b = TestBroker::start_in(&data, 2, |_| {});
    assert!(b.shards.iter().all(|s| native_login(*s, "guest", "guest").is_err()), "guest came back");
    native_login(b.native, "carol", "n3w-pass").unwrap();
    amqp_login(b.amqp, "dave", "test12").unwrap();
    assert_eq!(http_status(b.metrics, "GET", "/api/users", "carol", "n3w-pass"), 200);
}

/// `metrics_auth_required`: `/metrics` asks for a login with a management
/// tag, as RabbitMQ's Prometheus plugin can (it is open by default).
#[test]
fn metrics_can_be_put_behind_a_login() {
    let b = TestBroker::start_with(1, |c| {
        c.users = vec![UserSeed::new("guest", "guest", &["administrator"]), alice(), UserSeed::new("bob", "b0b", &[])];
        c.metrics_auth_required = true;
    });
    let get = |user: &str, password: &str| http_status(b.metrics, "GET", "/metrics", user, password);
    assert_eq!(get("nobody", "x"), 401);
    assert_eq!(get("bob", "b0b"), 403, "no management tag");
    let (status, body) = http_request(b.metrics, "GET", "/metrics", "alice", "s3cret");
    assert!(status == 200 && body.contains("ringmq_auth_failures_total 1"), "{body}");
    assert_eq!(http_status(b.metrics, "GET", "/metrics/per-object", "guest", "guest"), 200);
}
