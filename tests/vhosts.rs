//! Virtual hosts as operators manage them (RabbitMQ's `/api/vhosts` and
//! `ctl add-vhost | delete-vhost | list-vhosts`), with permissions per
//! vhost, stored in the definitions file across restarts.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{http_send, TestBroker};

const ADMIN: (&str, &str) = ("guest", "guest");

fn names(body: &str) -> Vec<String> {
    let json = body.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn vhosts_are_made_given_permissions_stored_and_deleted_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let perms = r#"{"configure": "^app-", "write": ".*", "read": ""}"#;
    {
        let b = TestBroker::start_in(&data, 2, |_| {});
        let m = b.metrics;
        assert_eq!(http_send(m, "PUT", "/api/vhosts/prod", ADMIN, "").0, 201);
        assert_eq!(http_send(m, "PUT", "/api/vhosts/prod", ADMIN, "").0, 204, "an existing vhost is left as it is");
        let (status, body) = http_send(m, "GET", "/api/vhosts", ADMIN, "");
        assert_eq!(status, 200);
        assert_eq!(names(&body), ["/", "prod"]);
        assert_eq!(http_send(m, "GET", "/api/vhosts/prod", ADMIN, "").0, 200);
        assert_eq!(http_send(m, "GET", "/api/vhosts/nope", ADMIN, "").0, 404);
        // Permissions in a vhost that exists, and not in one that does not.
        assert_eq!(http_send(m, "PUT", "/api/permissions/prod/guest", ADMIN, perms).0, 201);
        assert_eq!(http_send(m, "PUT", "/api/permissions/nope/guest", ADMIN, perms).0, 404);
        let (status, body) = http_send(m, "GET", "/api/permissions/prod/guest", ADMIN, "");
        assert_eq!(status, 200);
        assert!(body.contains(r#""configure":"^app-""#) && body.contains(r#""vhost":"prod""#), "{body}");
        // The default vhost stays; a name with a control character is refused.
        let (status, body) = http_send(m, "DELETE", "/api/vhosts/%2F", ADMIN, "");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("cannot be deleted"), "{body}");
        assert_eq!(http_send(m, "PUT", "/api/vhosts/a%01b", ADMIN, "").0, 400);
    }
    // A restart keeps both the vhost and the permissions in it.
    let b = TestBroker::start_in(&data, 2, |_| {});
    let m = b.metrics;
    assert_eq!(names(&http_send(m, "GET", "/api/vhosts", ADMIN, "").1), ["/", "prod"]);
    assert_eq!(http_send(m, "GET", "/api/permissions/prod/guest", ADMIN, "").0, 200);
    // Deleting the vhost deletes the permissions in it.
    assert_eq!(http_send(m, "DELETE", "/api/vhosts/prod", ADMIN, "").0, 204);
    assert_eq!(http_send(m, "DELETE", "/api/vhosts/prod", ADMIN, "").0, 404);
    assert_eq!(http_send(m, "GET", "/api/permissions/prod/guest", ADMIN, "").0, 404);
    assert_eq!(names(&http_send(m, "GET", "/api/vhosts", ADMIN, "").1), ["/"]);
    // The default vhost's permissions are untouched.
    assert_eq!(http_send(m, "GET", "/api/permissions/%2F/guest", ADMIN, "").0, 200);
}

#[test]
fn only_administrators_change_vhosts_and_vhosts_max_holds() {
    let b = TestBroker::start_with(1, |c| c.vhosts_max = 2);
    let m = b.metrics;
    let user = r#"{"password": "pw", "tags": "management"}"#;
    assert_eq!(http_send(m, "PUT", "/api/users/watcher", ADMIN, user).0, 201);
    let watcher = ("watcher", "pw");
    assert_eq!(http_send(m, "GET", "/api/vhosts", watcher, "").0, 200, "management may read");
    assert_eq!(http_send(m, "PUT", "/api/vhosts/x", watcher, "").0, 403);
    assert_eq!(http_send(m, "PUT", "/api/vhosts/x", ADMIN, "").0, 201);
    let (status, body) = http_send(m, "PUT", "/api/vhosts/y", ADMIN, "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("vhosts_max"), "{body}");
}

/// Makes vhost `v` and gives guest all permissions in it.
fn vhost_for_guest(m: std::net::SocketAddr, v: &str) {
    assert_eq!(http_send(m, "PUT", &format!("/api/vhosts/{v}"), ADMIN, "").0, 201);
    let all = r#"{"configure": ".*", "write": ".*", "read": ".*"}"#;
    assert_eq!(http_send(m, "PUT", &format!("/api/permissions/{v}/guest"), ADMIN, all).0, 201);
}

#[test]
fn pika_sees_each_vhost_alone() {
    let b = TestBroker::start_with(2, |_| {});
    vhost_for_guest(b.metrics, "a");
    vhost_for_guest(b.metrics, "b");
    assert_eq!(http_send(b.metrics, "PUT", "/api/vhosts/closed", ADMIN, "").0, 201);
    let env = [("VHOST_A", "a"), ("VHOST_B", "b"), ("VHOST_NONE", "closed")];
    let out = common::pika::run("vhosts.py", b.amqp, &env, std::time::Duration::from_secs(30));
    out.assert_ok("pika across vhosts");
    // The management API lists each vhost's queues under its name.
    let (_, body) = http_send(b.metrics, "GET", "/api/queues/a", ADMIN, "");
    let json = body.split_once("\r\n\r\n").unwrap().1;
    let rows: serde_json::Value = serde_json::from_str(json).unwrap();
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"orders") && names.iter().all(|n| !n.contains('\0')), "{names:?}");
    assert!(rows.as_array().unwrap().iter().all(|r| r["vhost"] == "a"), "{rows}");
    assert_eq!(http_send(b.metrics, "GET", "/api/queues/b/orders", ADMIN, "").0, 200);
    assert_eq!(http_send(b.metrics, "GET", "/api/queues/%2F/orders", ADMIN, "").0, 404);
}

/// A native connection's handshake as guest in `vhost`.
fn hello_in(addr: std::net::SocketAddr, vhost: &str) -> common::Raw {
    use ringmq::protocol::{Cmd, Frame, VERSION};
    let mut r = common::Raw::connect(addr);
    r.send(Cmd::Hello { version: VERSION, user: "guest", password: "guest", heartbeat_ms: None, vhost: Some(vhost) });
    match r.recv().frame() {
        Frame { cmd: Cmd::HelloOk(_), .. } => r,
        other => panic!("expected HelloOk, got {other:?}"),
    }
}

/// A queue name that the vhost-aware hash puts on `shard` of 2.
fn queue_on_in(vhost: &str, shard: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|q| ringmq::protocol::shard_for(&ringmq::protocol::vhost::qualify(vhost, q), 2) == shard)
        .unwrap()
}

#[test]
fn native_clients_work_in_a_vhost_and_deleting_it_deletes_its_queues_durably() {
    use ringmq::client::{blocking, ClientOptions};
    use ringmq::protocol::{op, Cmd, ErrorCode};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let b = TestBroker::start_in(&data, 2, |_| {});
        vhost_for_guest(b.metrics, "v");
        let mut in_v = hello_in(b.native, "v");
        let (mut in_root, _) = common::Raw::hello(b.native);
        for r in [&mut in_v, &mut in_root] {
            let rid = r.send(Cmd::Declare { flags: op::DECLARE_DURABLE, queue: "jobs", args: &[] });
            r.expect_ok(rid);
        }
        in_v.publish_confirmed("jobs", &[b"v1"]);
        in_root.publish_confirmed("jobs", &[b"r1", b"r2"]);
        let (cid, early) = in_v.subscribe("jobs", 10);
        let got = if early.is_empty() { in_v.expect_deliveries(cid, 1) } else { early };
        assert_eq!(got.len(), 1, "vhost v's jobs holds its one message, not '/''s two");

        // The shard-aware client hashes the vhost too: a queue on each
        // shard, straight to its owner, round trip.
        let opts = ClientOptions { url: b.url(), vhost: "v".into(), ..Default::default() };
        let mut c = blocking::Client::connect(opts).unwrap();
        for shard in 0..2 {
            let q = queue_on_in("v", shard, "spread");
            c.declare(&q, false).unwrap();
            c.publish(&q, &[b"x"], false).unwrap();
            let d = c.get(&q, true).unwrap().expect("the message is there");
            assert_eq!(&d.body[..], b"x");
        }
        // A vhost that does not exist refuses the Hello.
        let mut r = common::Raw::connect(b.native);
        let hello = Cmd::Hello {
            version: ringmq::protocol::VERSION,
            user: "guest",
            password: "guest",
            heartbeat_ms: None,
            vhost: Some("nope"),
        };
        r.send(hello);
        let (_, why) = r.expect_error(ErrorCode::VhostNotFound);
        assert!(why.contains("nope"), "{why}");

        // Deleting the vhost: its connections end, its queues go.
        assert_eq!(http_send(b.metrics, "DELETE", "/api/vhosts/v", ADMIN, "").0, 204);
        let (_, why) = in_v.expect_error(ErrorCode::ShuttingDown);
        assert!(why.contains("vhost 'v' was deleted"), "{why}");
        let (_, body) = http_send(b.metrics, "GET", "/api/queues", ADMIN, "");
        assert!(!body.contains("\"vhost\":\"v\""), "{body}");
    }
    // After a restart the vhost's durable queue is still gone, and "/"'s
    // durable queue of the same name is still there.
    let b = TestBroker::start_in(&data, 2, |_| {});
    vhost_for_guest(b.metrics, "v");
    let mut in_v = hello_in(b.native, "v");
    let rid = in_v.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: "jobs", args: &[] });
    let (got, _) = in_v.expect_error(ErrorCode::QueueNotFound);
    assert_eq!(got, rid);
    let (mut in_root, _) = common::Raw::hello(b.native);
    let rid = in_root.send(Cmd::Declare { flags: op::DECLARE_PASSIVE | op::DECLARE_DURABLE, queue: "jobs", args: &[] });
    // '/' kept its durable queue of the same name.
    in_root.expect_ok(rid);
}
