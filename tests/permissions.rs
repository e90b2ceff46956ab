//! Permissions, as RabbitMQ defines them (configure / write / read regular
//! expressions per user in vhost `/`), on every protocol with real clients:
//! the native protocol over a raw socket, AMQP through pika, and the HTTP
//! API and `ctl` that manage them. A refusal is native error 25, AMQP 403
//! (the channel closes), and the log says who was refused what.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::*;
use ringmq::auth::UserSeed;
use ringmq::protocol::{op, Cmd, ErrorCode, VERSION};
use std::net::SocketAddr;
use std::time::Duration;

const ADMIN: (&str, &str) = ("guest", "guest");

fn broker() -> TestBroker {
    TestBroker::start_with(2, |c| {
        c.users = vec![UserSeed::new("guest", "guest", &["administrator"]), UserSeed::new("app", "app-pw", &[])];
    })
}

/// Logs in on the native protocol as `user`.
fn login(addr: SocketAddr, (user, password): (&str, &str)) -> Raw {
    let mut r = Raw::connect(addr);
    r.send(Cmd::Hello { version: VERSION, user, password, heartbeat_ms: None, vhost: None });
    assert!(matches!(r.recv().frame().cmd, Cmd::HelloOk(_)), "{user} logs in");
    r
}

/// An `Admin` command as guest; its JSON answer.
fn admin(b: &TestBroker, command: u8, arg: &str) -> String {
    let mut r = login(b.native, ADMIN);
    r.send(Cmd::Admin { command, arg });
    let f = r.recv();
    match f.frame().cmd {
        Cmd::AdminOk { json } => {
            assert!(!json.contains("\"error\""), "{json}");
            json.to_string()
        }
        other => panic!("expected AdminOk, got {other:?}"),
    }
}

fn set_permissions(b: &TestBroker, user: &str, (configure, write, read): (&str, &str, &str)) {
    let v = serde_json::json!({ "user": user, "vhost": "/", "configure": configure, "write": write, "read": read });
    admin(b, op::ADMIN_SET_PERMISSIONS, &v.to_string());
}

/// A request answered with `AccessRefused` (not fatal: the connection
/// stays open), naming the user.
fn refused(r: &mut Raw, rid: u64) {
    let (got, message) = r.expect_error(ErrorCode::AccessRefused);
    assert_eq!(got, rid);
    assert!(message.contains("refused for user 'app'"), "{message}");
}

/// The native protocol: each permission, missing, refuses what needs it.
#[test]
fn native_operations_need_their_permission() {
    let b = broker();
    let mut guest = login(b.native, ADMIN);
    guest.declare("held");
    guest.publish_confirmed("held", &[b"one", b"two"]);
    let app = ("app", "app-pw");

    // No configure: no declare, no delete; publish and get work.
    set_permissions(&b, "app", ("", ".*", ".*"));
    let mut r = login(b.native, app);
    let rid = r.send(Cmd::Declare { flags: 0, queue: "mine", args: &[] });
    refused(&mut r, rid);
    let rid = r.send(Cmd::Delete { flags: 0, queue: "held" });
    refused(&mut r, rid);
    let rid = r.send(Cmd::ExchangeDeclare { flags: 0, exchange: "x", kind: "fanout", args: &[] });
    refused(&mut r, rid);
    r.publish_confirmed("held", &[b"three"]);
    // A passive declare only looks.
    let rid = r.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: "held", args: &[] });
    r.expect_ok(rid);

    // No write: no publish (default exchange is amq.default), no bind to.
    set_permissions(&b, "app", (".*", "", ".*"));
    let mut r = login(b.native, app);
    let rid = r.publish("held", &[b"x"], true);
    refused(&mut r, rid);
    let rid = r.send(Cmd::Bind { flags: 0, source: "amq.fanout", destination: "held", routing_key: "", args: &[] });
    refused(&mut r, rid);
    r.declare("app-own");

    // No read: no subscribe, get or purge; publish works.
    set_permissions(&b, "app", (".*", ".*", ""));
    let mut r = login(b.native, app);
    let cid = r.consumer_id();
    let rid = r.send(Cmd::Subscribe { consumer_id: cid, prefetch: 10, queue: "held", priority: 0, origin: false });
    refused(&mut r, rid);
    let rid = r.send(Cmd::Get { no_ack: true, consumer_id: cid, queue: "held" });
    refused(&mut r, rid);
    let rid = r.send(Cmd::Purge { queue: "held" });
    refused(&mut r, rid);
    r.publish_confirmed("held", &[b"four"]);

    // Expressions, not just all or nothing: a prefix.
    set_permissions(&b, "app", ("^app-", "^app-|^amq\\.default$", "^app-"));
    let mut r = login(b.native, app);
    r.declare("app-2");
    let rid = r.send(Cmd::Declare { flags: 0, queue: "other", args: &[] });
    refused(&mut r, rid);
    r.publish_confirmed("app-2", &[b"five"]);
    let (cid, early) = r.subscribe("app-2", 10);
    let got = if early.is_empty() { r.expect_deliveries(cid, 1) } else { early };
    assert_eq!(got[0].body, b"five");

    // Cleared: logs in, does nothing.
    let clear = serde_json::json!({ "user": "app", "vhost": "/" }).to_string();
    admin(&b, op::ADMIN_CLEAR_PERMISSIONS, &clear);
    let mut r = login(b.native, app);
    let rid = r.publish("app-2", &[b"x"], true);
    refused(&mut r, rid);
    // A connection that was refused still works for what it may do.
    r.ping();
    guest.ping();
}

/// AMQP through pika: for each permission missing, its operations close
/// the channel with 403 and the others work.
#[test]
fn amqp_operations_need_their_permission() {
    let b = broker();
    let mut guest = login(b.native, ADMIN);
    guest.declare("held-amqp");
    guest.publish_confirmed("held-amqp", &[b"one", b"two", b"three"]);
    let all = |mode: &str| match mode {
        "configure" => ("", ".*", ".*"),
        "write" => (".*", "", ".*"),
        _ => (".*", ".*", ""),
    };
    for mode in ["configure", "write", "read"] {
        set_permissions(&b, "app", all(mode));
        let env = [("MODE", mode), ("QUEUE", "held-amqp"), ("USER_NAME", "app"), ("USER_PASS", "app-pw")];
        let run = pika::run("permissions.py", b.amqp, &env, Duration::from_secs(60));
        run.assert_ok(&format!("pika without {mode}"));
    }
}

/// `/api/permissions` in RabbitMQ's shapes and `ctl list-permissions`; a
/// user added at run time has none until given some (as in RabbitMQ), the
/// config's users have all; permissions are stored with the users.
#[test]
fn permissions_are_managed_over_http_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = TestBroker::start_in(&data, 2, |_| {});
    let added = serde_json::json!({ "name": "ops", "password": "0ps", "tags": [] }).to_string();
    admin(&b, op::ADMIN_ADD_USER, &added);
    let mut ops = login(b.native, ("ops", "0ps"));
    let rid = ops.send(Cmd::Declare { flags: 0, queue: "ops-q", args: &[] });
    let (_, why) = ops.expect_error(ErrorCode::AccessRefused);
    assert_eq!(rid, 2);
    assert!(why.contains("queue 'ops-q'"), "{why}");

    let guest_pw = ("guest", "guest");
    let body = r#"{"configure":"^ops-","write":"^ops-","read":".*"}"#;
    assert_eq!(http_send(b.metrics, "PUT", "/api/permissions/%2F/ops", guest_pw, body).0, 201);
    assert_eq!(http_send(b.metrics, "PUT", "/api/permissions/%2F/ops", guest_pw, body).0, 204);
    assert_eq!(http_send(b.metrics, "PUT", "/api/permissions/other/ops", guest_pw, body).0, 404, "no such vhost");
    let bad = r#"{"configure":"(","write":"","read":""}"#;
    assert_eq!(http_send(b.metrics, "PUT", "/api/permissions/%2F/ops", guest_pw, bad).0, 400);
    let (status, one) = http_send(b.metrics, "GET", "/api/permissions/%2F/ops", guest_pw, "");
    assert!(status == 200 && one.contains("\"configure\":\"^ops-\""), "{one}");
    let (_, all) = http_send(b.metrics, "GET", "/api/permissions", guest_pw, "");
    assert!(all.contains("\"user\":\"guest\"") && all.contains("\"user\":\"ops\""), "{all}");
    ops.declare("ops-q");
    let listed = admin(&b, op::ADMIN_LIST_PERMISSIONS, "");
    assert!(listed.contains("^ops-"), "{listed}");
    drop(ops);
    drop(b);

    // Stored with the users: the same after a restart.
    let b = TestBroker::start_in(&data, 2, |_| {});
    let mut ops = login(b.native, ("ops", "0ps"));
    ops.declare("ops-q2");
    let rid = ops.send(Cmd::Declare { flags: 0, queue: "elsewhere", args: &[] });
    refused_any(&mut ops, rid);
    assert_eq!(http_send(b.metrics, "DELETE", "/api/permissions/%2F/ops", guest_pw, "").0, 204);
    let rid = ops.send(Cmd::Declare { flags: 0, queue: "ops-q3", args: &[] });
    refused_any(&mut ops, rid);
}

fn refused_any(r: &mut Raw, rid: u64) {
    let (got, _) = r.expect_error(ErrorCode::AccessRefused);
    assert_eq!(got, rid);
}

/// Deleting a user ends its open connections on every shard (native
/// `ShuttingDown`, naming the user), as in RabbitMQ; others keep working.
#[test]
fn a_deleted_users_connections_are_closed() {
    let b = broker();
    let mut on_each: Vec<Raw> = b.shards.iter().map(|s| login(*s, ("app", "app-pw"))).collect();
    let mut guest = login(b.native, ADMIN);
    admin(&b, op::ADMIN_DELETE_USER, "app");
    for r in &mut on_each {
        let (_, why) = r.expect_error(ErrorCode::ShuttingDown);
        assert!(why.contains("user 'app' was deleted"), "{why}");
        r.expect_closed();
    }
    guest.ping();
}
