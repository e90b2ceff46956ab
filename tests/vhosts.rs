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
