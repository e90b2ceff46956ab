//! The cluster-wide alarm check on two `ringmq serve` nodes: a disk alarm
//! raised on one member fails `/api/health/checks/alarms` on the other
//! (naming the member), while that other's `local-alarms` passes; both
//! pass again once it clears.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::{wait_until, Node};
use serde_json::Value;

fn json_of(n: &Node, path: &str) -> (u16, Value) {
    let (code, body) = n.get(path);
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}")))
}

#[test]
fn an_alarm_on_one_member_fails_the_cluster_check_on_another() {
    let root = tempfile::tempdir().unwrap();
    let secret = cluster::secret(root.path());
    let n1 = Node::start(root.path(), "n1", &secret, &[]);
    let seed = n1.cluster.to_string();
    let n2 = Node::start(root.path(), "n2", &secret, &["--join", &seed]);
    for n in [&n1, &n2] {
        wait_until(&format!("{} sees two nodes up", n.name), || n.nodes_in("up") == ["n1", "n2"]);
    }
    for n in [&n1, &n2] {
        assert_eq!(json_of(n, "/api/health/checks/alarms"), (200, serde_json::json!({ "status": "ok" })));
    }

    n2.ctl(&["set-disk-free-limit", "1152921504606846976"]);
    wait_until("n1's cluster-wide check fails", || json_of(&n1, "/api/health/checks/alarms").0 == 503);
    let (_, v) = json_of(&n1, "/api/health/checks/alarms");
    assert_eq!(v["reason"], "There are alarms in effect in the cluster", "{v}");
    assert_eq!(v["alarms"], serde_json::json!([{ "node": "n2", "resource": "disk" }]), "{v}");
    assert_eq!(json_of(&n1, "/api/health/checks/local-alarms").0, 200);
    let (code, v) = json_of(&n2, "/api/health/checks/local-alarms");
    assert_eq!((code, &v["alarms"]), (503, &serde_json::json!([{ "node": "n2", "resource": "disk" }])), "{v}");

    n2.ctl(&["set-disk-free-limit", "0"]);
    wait_until("n1's cluster-wide check passes", || json_of(&n1, "/api/health/checks/alarms").0 == 200);
    assert_eq!(json_of(&n2, "/api/health/checks/alarms").0, 200);
}
