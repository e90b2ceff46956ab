//! Clusters of three `ringmq serve` processes on loopback (issue 17): the
//! metadata group forms, takes joins, keeps every declare a client was
//! told succeeded through a kill -9 of its leader, forgets a node and
//! refuses it until it is reset, takes a node at run time, and refuses
//! changes in a minority.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::proxy::Faults;
use cluster::{leader, three, wait_until, Node};
use ringmq::client::{Client, ClientError, ClientOptions, ExchangeOptions};
use ringmq::protocol::ErrorCode;
use std::process::Command;
use std::time::Duration;

/// Declares each exchange through `node`, one after another; what each
/// declare answered.
fn declare(node: &Node, names: Vec<String>) -> Vec<(String, Result<(), ClientError>)> {
    let url = format!("ringmq://{}", node.native);
    common::run_local(Duration::from_secs(120), move || async move {
        let c = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        let mut out = Vec::new();
        for n in names {
            let o = ExchangeOptions { durable: true, auto_delete: false, internal: false, args: &[] };
            let r = c.declare_exchange(&n, "topic", o).await;
            out.push((n, r));
        }
        out
    })
}

fn lapin_url(n: &Node) -> String {
    format!("amqp://guest:guest@{}/%2f", n.amqp)
}

/// Whether `node` routes by every exchange in `want`.
fn has_all(node: &Node, want: &[&str]) -> bool {
    let have = node.exchanges();
    want.iter().all(|w| have.iter().any(|h| h == w))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

#[test]
fn topology_declared_on_any_node_reaches_all_and_survives_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());

    // Declared on n1, n2 and n3 in turn: every node routes by all of them.
    for (i, n) in nodes.iter().enumerate() {
        for (name, r) in declare(n, names(&format!("x{i}"), 5)) {
            r.unwrap_or_else(|e| panic!("{name} on {}: {e}", n.name));
        }
    }
    let all: Vec<String> = (0..3).flat_map(|i| names(&format!("x{i}"), 5)).collect();
    for n in &nodes {
        assert_eq!(n.exchanges(), all, "{}", n.name);
    }
    // A redeclare with other properties is refused by the group, the same
    // wherever it is asked.
    let c = declare(&nodes[2], vec!["x0-000".into()]);
    assert!(c[0].1.is_ok(), "an identical redeclare is fine");
    let url = format!("ringmq://{}", nodes[1].native);
    let clash = common::run_local(Duration::from_secs(30), move || async move {
        let c = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        let o = ExchangeOptions { durable: true, auto_delete: false, internal: false, args: &[] };
        c.declare_exchange("x0-000", "fanout", o).await
    });
    assert_eq!(clash.unwrap_err().code(), Some(ErrorCode::ExchangeMismatch));

    // pika: a topic exchange and a fanout bound to it, declared on n1, are
    // found, bound to and published through on n2.
    common::pika::run("cluster_topology.py", nodes[0].amqp, &[("STEP", "declare")], Duration::from_secs(60))
        .assert_ok("pika declares on n1");
    wait_until("n2 has the exchanges", || has_all(&nodes[1], &["cluster-fan", "cluster-logs"]));
    common::pika::run("cluster_topology.py", nodes[1].amqp, &[("STEP", "use")], Duration::from_secs(60))
        .assert_ok("pika uses them on n2");

    // lapin: the same the other way round, declared on n3, used on n1.
    let (on3, on1) = (lapin_url(&nodes[2]), lapin_url(&nodes[0]));
    common::lapin_thread::on_thread(Duration::from_secs(60), async move {
        let conn = lapin::Connection::connect(&on3, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let o = lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare("lapin-direct", lapin::ExchangeKind::Direct, o, Default::default()).await?;
        conn.close(200, "bye").await
    });
    wait_until("n1 has the lapin exchange", || has_all(&nodes[0], &["lapin-direct"]));
    let got = common::lapin_thread::on_thread(Duration::from_secs(60), async move {
        use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
        let conn = lapin::Connection::connect(&on1, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let q = ch.queue_declare("", Default::default(), Default::default()).await?.name().to_string();
        ch.queue_bind(&q, "lapin-direct", "k", QueueBindOptions::default(), Default::default()).await?;
        let props = lapin::BasicProperties::default();
        ch.basic_publish("lapin-direct", "k", BasicPublishOptions::default(), b"via n3's exchange", props)
            .await?
            .await?;
        let got = ch.basic_get(&q, BasicGetOptions { no_ack: true }).await?.map(|m| m.delivery.data);
        conn.close(200, "bye").await?;
        Ok(got)
    });
    assert_eq!(got.as_deref(), Some(&b"via n3's exchange"[..]));

    // Users, vhosts and permissions are the cluster's: made on one node,
    // they log in and exist on every other.
    let out = nodes[1].ctl(&["add-user", "alice", "alice-secret", "--tags", "administrator"]);
    assert!(out.get("error").is_none(), "{out}");
    let out = nodes[0].ctl(&["add-vhost", "shared"]);
    assert!(out.get("error").is_none(), "{out}");
    let out = nodes[2].ctl(&["set-permissions", "alice", ".*", ".*", ".*", "--vhost", "shared"]);
    assert!(out.get("error").is_none(), "{out}");
    for n in &nodes {
        let url = format!("ringmq://{}", n.native);
        let out = Command::new(cluster::BIN)
            .args(["ctl", "--json", "--url", &url, "--user", "alice", "--password", "alice-secret", "list-vhosts"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("shared"), "{}: {text}", n.name);
        let perms = n.ctl(&["list-permissions"]).to_string();
        assert!(perms.contains("alice") && perms.contains("shared"), "{}: {perms}", n.name);
    }
    let dup = nodes[2].ctl_error(&["add-user", "alice", "other"]);
    assert!(dup.contains("already exists"), "{dup}");

    // Every node shows the cluster in /api/nodes and in its metrics.
    for n in &nodes {
        let (code, body) = n.get("/api/nodes");
        assert_eq!(code, 200, "{body}");
        let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut names: Vec<&str> = rows.as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["n1", "n2", "n3"], "{body}");
        assert!(rows.as_array().unwrap().iter().all(|r| r["running"] == true), "{body}");
        let (_, metrics) = n.get("/metrics");
        assert!(metrics.contains("ringmq_cluster_members 3"), "{metrics}");
        assert!(metrics.contains("ringmq_cluster_leader_known 1"), "{metrics}");
    }

    // The leader dies by kill -9 while a follower takes declares: each one
    // acknowledged is on every node that runs, and a new leader is chosen.
    let first = leader(&nodes[0]).unwrap();
    let killed = nodes.iter().position(|n| n.name == first).unwrap();
    let asker = (killed + 1) % 3;
    let asked = names("during", 40);
    let batch = asked.clone();
    let declaring = {
        let url = format!("ringmq://{}", nodes[asker].native);
        std::thread::spawn(move || {
            common::run_local(Duration::from_secs(180), move || async move {
                let c = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
                let mut ok = Vec::new();
                for n in batch {
                    let o = ExchangeOptions { durable: true, auto_delete: false, internal: false, args: &[] };
                    match c.declare_exchange(&n, "fanout", o).await {
                        Ok(()) => ok.push(n),
                        Err(e) => assert_eq!(e.code(), Some(ErrorCode::ClusterUnavailable), "{n}: {e}"),
                    }
                    glommio::timer::sleep(Duration::from_millis(25)).await;
                }
                ok
            })
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    nodes[killed].kill();
    let acknowledged = declaring.join().unwrap();
    assert!(!acknowledged.is_empty(), "some declares went through");
    let survivor = &nodes[asker];
    wait_until("a new leader", || leader(survivor).is_some_and(|l| l != first));
    for n in nodes.iter().filter(|n| n.name != first) {
        let have = n.exchanges();
        for a in &acknowledged {
            assert!(have.contains(a), "{}: acknowledged {a} is missing", n.name);
        }
    }
    // The leader comes back from its files and catches up.
    nodes[killed].restart(&[]);
    let back = &nodes[killed];
    wait_until("the old leader catches up", || {
        let have = back.exchanges();
        acknowledged.iter().all(|a| have.contains(a))
    });
    wait_until("three nodes up again", || back.nodes_in("up") == ["n1", "n2", "n3"]);
    assert!(back.ctl(&["list-users"]).to_string().contains("alice"), "the restarted node has the cluster's users");
}

#[test]
fn a_forgotten_node_is_refused_until_reset_and_a_node_joins_at_run_time() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    for (name, r) in declare(&nodes[0], names("before", 3)) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let out = nodes[0].ctl(&["forget-node", "n3"]);
    assert_eq!(out["forgotten"], "n3", "{out}");
    wait_until("n3 gone from the cluster", || nodes[0].nodes_in("up") == ["n1", "n2"]);
    // It stays out with its old data: its peers refuse it.
    nodes[2].kill();
    nodes[2].restart(&[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(nodes[1].nodes_in("up"), ["n1", "n2"]);
    for (name, r) in declare(&nodes[1], names("while-out", 2)) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Reset, it joins afresh and gets the whole topology.
    nodes[2].kill();
    let seed = nodes[1].cluster.to_string();
    nodes[2].restart(&["--cluster-reset", "--join", &seed]);
    wait_until("n3 back", || nodes[0].nodes_in("up") == ["n1", "n2", "n3"]);
    let want: Vec<String> = names("before", 3).into_iter().chain(names("while-out", 2)).collect();
    wait_until("n3 has the topology", || nodes[2].exchanges() == want);

    // A node alone in its own cluster joins this one at run time; its own
    // exchanges give way to the cluster's.
    let secret = root.path().join("secret");
    let n4 = Node::start(root.path(), "n4", &secret, &[]);
    for (name, r) in declare(&n4, vec!["only-on-n4".into()]) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let out = n4.ctl(&["add-user", "only-on-n4", "pw-of-n4", "--tags", "administrator"]);
    assert!(out.get("error").is_none(), "{out}");
    let out = n4.ctl(&["join-cluster", &nodes[0].cluster.to_string()]);
    assert!(out.get("error").is_none(), "{out}");
    wait_until("n4 in the cluster", || nodes[0].nodes_in("up") == ["n1", "n2", "n3", "n4"]);
    wait_until("n4 has the cluster's topology", || n4.exchanges() == want);
    wait_until("n4 has the cluster's users", || !n4.ctl(&["list-users"]).to_string().contains("only-on-n4"));
}

#[test]
fn a_minority_refuses_metadata_changes_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    let first = leader(&nodes[0]).unwrap();
    // Two of three die (the leader among them): the third cannot commit.
    let keep = nodes.iter().position(|n| n.name != first).unwrap();
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != keep {
            n.kill();
        }
    }
    let r = declare(&nodes[keep], vec!["in-minority".into()]);
    let e = r[0].1.as_ref().expect_err("a minority cannot commit");
    assert_eq!(e.code(), Some(ErrorCode::ClusterUnavailable), "{e}");
    assert!(e.to_string().contains("cluster unavailable"), "{e}");
    assert!(!nodes[keep].exchanges().contains(&"in-minority".to_string()));
    // One comes back: a majority again, and changes go through.
    let back = (keep + 1) % 3;
    nodes[back].restart(&[]);
    wait_until("a leader again", || leader(&nodes[keep]).is_some());
    wait_until("a declare goes through", || declare(&nodes[keep], vec!["after".into()])[0].1.is_ok());
}

#[test]
fn a_partitioned_node_refuses_changes_then_heals_and_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let secret = cluster::secret(root.path());
    let faults = Faults::default();
    let n1 = Node::start_behind(root.path(), "n1", &secret, &faults, &[]);
    let seed = n1.link();
    let n2 = Node::start_behind(root.path(), "n2", &secret, &faults, &["--join", &seed]);
    let n3 = Node::start_behind(root.path(), "n3", &secret, &faults, &["--join", &seed]);
    let nodes = [n1, n2, n3];
    for n in &nodes {
        wait_until(&format!("{} sees three nodes up", n.name), || n.nodes_in("up") == ["n1", "n2", "n3"]);
    }
    // Cut a follower off from both others, both ways.
    let first = leader(&nodes[0]).unwrap();
    let alone = nodes.iter().find(|n| n.name != first).unwrap();
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.name != alone.name).collect();
    faults.cut(&alone.name, &[&rest[0].name, &rest[1].name]);

    let r = declare(alone, vec!["from-the-minority".into()]);
    let e = r[0].1.as_ref().expect_err("a partitioned node cannot commit");
    assert_eq!(e.code(), Some(ErrorCode::ClusterUnavailable), "{e}");
    for (name, r) in declare(rest[0], vec!["from-the-majority".into()]) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    wait_until("the majority sees the cut node down", || rest[1].nodes_in("down") == [alone.name.clone()]);
    assert!(!alone.exchanges().contains(&"from-the-majority".to_string()));

    // Healed: the links redial, the node catches up and everyone is up.
    faults.heal();
    wait_until("the healed node catches up", || alone.exchanges() == ["from-the-majority"]);
    for n in &nodes {
        wait_until(&format!("{} sees three nodes up", n.name), || n.nodes_in("up") == ["n1", "n2", "n3"]);
    }

    // Slow links (50 ms each way on one node) delay changes, never lose them.
    faults.delay(&rest[1].name, Duration::from_millis(50));
    for (name, r) in declare(alone, names("slow", 3)) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut want = names("slow", 3);
    want.insert(0, "from-the-majority".into());
    wait_until("the slow node has every change", || rest[1].exchanges() == want);
}
