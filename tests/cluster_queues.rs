//! Queues across a cluster of three `ringmq serve` processes on loopback
//! (issue 17): a queue lives on one node, chosen at its first declare, and
//! a client of any node publishes to it, consumes from it, gets from it,
//! binds and deletes it (the node it is connected to forwards over the
//! data links). The seed's pika programs run against two different nodes.
//! A queue whose node is killed answers a clear error while the other
//! queues go on, and its durable messages come back with the node.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::{three, three_with, wait_until, Node};
use common::{within, Raw, STEP};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ProducerOptions};
use ringmq::protocol::ErrorCode;
use std::time::Duration;

fn url(n: &Node) -> String {
    format!("ringmq://{}", n.native)
}

/// A client of `node` (not shard-aware: every queue through its shard).
async fn client(node_url: String) -> Client {
    within("connect", STEP, Client::connect(ClientOptions { url: node_url, ..Default::default() })).await.unwrap()
}

/// Publishes `n` persistent messages to `queue` through `node_url`, each
/// batch confirmed.
async fn publish(node_url: String, queue: &str, n: u32) -> Result<(), ringmq::client::ClientError> {
    let c = client(node_url).await;
    let o = ProducerOptions { batch_max: 32, confirm: true, persistent: true, ..Default::default() };
    let p = c.producer(queue, o).await?;
    let mut confs = Vec::new();
    for i in 0..n {
        confs.push(p.publish(format!("m-{i}").as_bytes()).await?);
    }
    p.flush()?;
    for conf in confs {
        within("confirm", STEP, conf).await?;
    }
    Ok(())
}

/// Consumes `n` messages from `queue` through `node_url`, in order, acking each.
async fn consume(node_url: String, queue: &str, n: u32) {
    let c = client(node_url).await;
    let mut consumer = c.subscribe(queue, 64).await.unwrap();
    for i in 0..n {
        let d = within("delivery", STEP, consumer.next()).await.expect("stream open").expect("delivery");
        assert_eq!(d.body, format!("m-{i}").as_bytes(), "FIFO across nodes");
        consumer.ack(d.tag);
    }
    within("cancel", STEP, consumer.cancel()).await.unwrap();
}

#[test]
fn a_queue_lives_on_one_node_and_every_node_reaches_it() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three(root.path());
    let long = Duration::from_secs(60);

    // The seed's programs: the producer against n1 (the queue is placed
    // there), the consumer against n2.
    common::pika::run("seed_send.py", nodes[0].amqp, &[], long).assert_ok("seed producer on n1");
    let consumer = common::pika::spawn("seed_receive.py", nodes[1].amqp, &[]);
    let out = common::pika::finish(consumer, Duration::from_secs(10));
    assert!(
        out.stdout.contains(" [x] Received b'Hello World!'"),
        "the seed consumer on n2 did not receive what n1 took\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(nodes[0].queues().iter().any(|q| q == "hello"), "'hello' lives on n1");
    assert!(!nodes[1].queues().iter().any(|q| q == "hello"), "and not on n2, which forwards");

    // The native client: declared on n3, published through n1, consumed
    // through n2, deleted through n1.
    let (u1, u2, u3) = (url(&nodes[0]), url(&nodes[1]), url(&nodes[2]));
    common::run_local(long, move || async move {
        let c3 = client(u3).await;
        assert_eq!(c3.declare("across", true).await.unwrap(), 0);
        publish(u1.clone(), "across", 300).await.unwrap();
        let c2 = client(u2.clone()).await;
        assert_eq!(c2.declare_passive("across").await.unwrap(), 300, "n2 sees n3's queue");
        consume(u2, "across", 300).await;
        // A get through n1 finds it empty; a purge and a delete through n1
        // reach n3.
        let c1 = client(u1).await;
        assert!(c1.get("across", false).await.unwrap().is_none());
        assert_eq!(c1.purge("across").await.unwrap(), 0);
        assert_eq!(c1.delete("across").await.unwrap(), 0);
        let e = c3.declare_passive("across").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "deleted on its node: {e}");
    });
    assert!(nodes[2].queues().is_empty() || !nodes[2].queues().iter().any(|q| q == "across"));

    // Balanced placement: declared through n1 with
    // x-queue-leader-locator=balanced, it goes to a node with the fewest
    // queues (n1 holds 'hello', so not n1).
    common::pika::run("cluster_queues.py", nodes[0].amqp, &[("STEP", "balanced")], long)
        .assert_ok("pika declares a balanced queue on n1");
    let on: Vec<&str> =
        nodes.iter().filter(|n| n.queues().iter().any(|q| q == "spread")).map(|n| n.name.as_str()).collect();
    assert_eq!(on.len(), 1, "one node holds the queue: {on:?}");
    assert_ne!(on[0], "n1", "balanced placement picks a node with fewer queues");
    // pika on n3 binds it to an exchange, publishes through the exchange
    // with confirms (routed on n3, forwarded to the owner), consumes and
    // deletes it.
    common::pika::run("cluster_queues.py", nodes[2].amqp, &[("STEP", "use")], long)
        .assert_ok("pika binds, publishes and gets through n3");

    // lapin: a durable queue declared through n2, 50 persistent messages
    // published with confirms through n3, consumed with acks through n1.
    let (on1, on2, on3) = (lapin_url(&nodes[0]), lapin_url(&nodes[1]), lapin_url(&nodes[2]));
    common::lapin_thread::on_thread(long, async move {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
        let c2 = lapin::Connection::connect(&on2, lapin::ConnectionProperties::default()).await?;
        let ch = c2.create_channel().await?;
        ch.queue_declare("lapin-q", QueueDeclareOptions { durable: true, ..Default::default() }, Default::default())
            .await?;
        c2.close(200, "bye").await?;
        let c3 = lapin::Connection::connect(&on3, lapin::ConnectionProperties::default()).await?;
        let ch = c3.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        for i in 0..50 {
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            let body = format!("l-{i}");
            let confirm =
                ch.basic_publish("", "lapin-q", BasicPublishOptions::default(), body.as_bytes(), props).await?;
            assert!(confirm.await?.is_ack(), "message {i} confirmed");
        }
        c3.close(200, "bye").await
    });
    let got = common::lapin_thread::on_thread(long, async move {
        use futures_lite::StreamExt;
        use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
        let c1 = lapin::Connection::connect(&on1, lapin::ConnectionProperties::default()).await?;
        let ch = c1.create_channel().await?;
        ch.basic_qos(20, BasicQosOptions::default()).await?;
        let mut consumer = ch.basic_consume("lapin-q", "c", BasicConsumeOptions::default(), Default::default()).await?;
        let mut got = Vec::new();
        while got.len() < 50 {
            let d = consumer.next().await.expect("a delivery")?;
            got.push(String::from_utf8_lossy(&d.data).into_owned());
            d.ack(BasicAckOptions::default()).await?;
        }
        c1.close(200, "bye").await?;
        Ok(got)
    });
    assert_eq!(got, (0..50).map(|i| format!("l-{i}")).collect::<Vec<_>>(), "lapin across nodes, in order");
    assert!(nodes[1].queues().iter().any(|q| q == "lapin-q"), "lapin-q lives on n2");
}

fn lapin_url(n: &Node) -> String {
    format!("amqp://guest:guest@{}/%2f", n.amqp)
}

#[test]
fn a_dead_nodes_queue_answers_an_error_and_comes_back_with_it() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    let long = Duration::from_secs(60);
    let (u1, u3) = (url(&nodes[0]), url(&nodes[2]));
    let (a, b) = (u1.clone(), u3.clone());
    common::run_local(long, move || async move {
        // 'dq' on n3, 'live' on n1 (each declared where it lives).
        assert_eq!(client(b).await.declare("dq", true).await.unwrap(), 0);
        assert_eq!(client(a.clone()).await.declare("live", true).await.unwrap(), 0);
        publish(a, "dq", 100).await.unwrap();
    });
    // A consumer of 'dq' through n1 (forwarded: not cluster-aware), on a
    // thread of its own, which must hear that its queue is gone when n3 dies.
    let a = u1.clone();
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        common::run_local(long, move || async move {
            let o = ClientOptions { url: a, cluster_aware: false, ..Default::default() };
            let c = Client::connect(o).await.unwrap();
            let mut consumer = c.subscribe("dq", 1).await.unwrap();
            let first = within("first delivery", STEP, consumer.next()).await.unwrap().unwrap();
            assert_eq!(&first.body[..], b"m-0");
            subscribed_tx.send(()).unwrap();
            // Unacked: the rest waits in n3's queue. Then n3 dies.
            let started = std::time::Instant::now();
            let end = within("the cancel", Duration::from_secs(20), consumer.next()).await;
            let e = match end {
                Some(Err(e)) => e,
                other => panic!("the consumer should end with an error, got {other:?}"),
            };
            assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
            started.elapsed()
        })
    });
    subscribed.recv().unwrap();
    nodes[2].kill();
    let took = watcher.join().unwrap();
    assert!(took < Duration::from_secs(15), "the consumer heard of its queue's node in {took:?}");

    let a = u1.clone();
    common::run_local(long, move || async move {
        // n3's queue: a clear error, soon (not a hang).
        let started = std::time::Instant::now();
        let e = publish(a.clone(), "dq", 1).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NodeUnavailable), "{e}");
        let e = client(a.clone()).await.declare_passive("dq").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NodeUnavailable), "{e}");
        assert!(started.elapsed() < Duration::from_secs(15), "answered in {:?}", started.elapsed());
        // The other queues go on.
        publish(a.clone(), "live", 10).await.unwrap();
        consume(a, "live", 10).await;
    });

    nodes[2].restart(&[]);
    let a = u1.clone();
    wait_until("n3's queue is reachable again", || {
        let a = a.clone();
        common::run_local(long, move || async move { client(a).await.declare_passive("dq").await.ok() }) == Some(100)
    });
    common::run_local(long, move || async move { consume(u1, "dq", 100).await });
}

/// A counter from the node's `/metrics`.
fn metric(n: &Node, name: &str) -> u64 {
    let (_, body) = n.get("/metrics");
    let line = body.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
}

#[test]
fn the_cluster_aware_client_goes_straight_to_the_owner_and_follows_the_map() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    let long = Duration::from_secs(60);
    let (u1, u3) = (url(&nodes[0]), url(&nodes[2]));
    let b = u3.clone();
    let forwarded = "ringmq_cluster_forwarded_requests_total";
    common::run_local(long, move || async move {
        let c3 = client(b).await;
        assert_eq!(c3.declare("direct-q", false).await.unwrap(), 0);
    });
    let before = metric(&nodes[0], forwarded);
    let (a, b) = (u1.clone(), u3.clone());
    common::run_local(long, move || async move {
        let c3 = client(b).await;
        let c1 = client(a.clone()).await;
        assert_eq!(c1.cluster_map().nodes.len(), 3, "the map lists every node");
        // n1's client talks to n3's owning shard itself.
        let carrier = c1.conn_for("direct-q").await.unwrap();
        assert_eq!(carrier.info().shard_addrs, c3.info().shard_addrs, "a connection to n3");
        let owner = ringmq::protocol::shard_for(&ringmq::protocol::vhost::qualify("/", "direct-q"), 2);
        assert_eq!(u32::from(carrier.info().shard_id), owner, "its owning shard there");
        publish(a.clone(), "direct-q", 200).await.unwrap();
        consume(a.clone(), "direct-q", 200).await;
        // Closing a client, or dropping it, shuts its connection to n3 as
        // well: what its consumer there held unacked is queued again at
        // once, not kept for a connection that is gone.
        for close in [true, false] {
            publish(a.clone(), "direct-q", 10).await.unwrap();
            let c = client(a.clone()).await;
            let mut held = c.subscribe("direct-q", 64).await.unwrap();
            for _ in 0..10 {
                within("delivery", STEP, held.next()).await.unwrap().unwrap();
            }
            if close {
                within("close", STEP, c.close()).await;
            }
            drop((held, c));
            let fresh = client(a.clone()).await;
            let mut again = fresh.subscribe("direct-q", 64).await.unwrap();
            for i in 0..10 {
                let d = within("redelivery", STEP, again.next()).await.unwrap().unwrap();
                assert_eq!((&d.body[..], d.redelivered), (format!("m-{i}").as_bytes(), true), "close {close}");
                again.ack(d.tag);
            }
            fresh.close().await;
        }
    });
    assert_eq!(metric(&nodes[0], forwarded), before, "n1 forwarded nothing: the client went to n3 itself");
    let a = u1.clone();
    common::run_local(long, move || async move {
        // The same client with cluster_aware off goes through n1, which
        // forwards: the same messages either way.
        let o = ClientOptions { url: a.clone(), cluster_aware: false, ..Default::default() };
        let plain = Client::connect(o).await.unwrap();
        assert!(plain.cluster_map().nodes.is_empty());
        let carrier = plain.conn_for("direct-q").await.unwrap();
        assert_eq!(carrier.info().shard_addrs, plain.info().shard_addrs, "through n1's own shards");
        let p = plain.producer("direct-q", ProducerOptions::default()).await.unwrap();
        for i in 0..100 {
            p.publish(format!("m-{i}").as_bytes()).await.unwrap();
        }
        p.flush().unwrap();
        p.send(b"last").await.unwrap();
    });
    assert!(metric(&nodes[0], forwarded) > before, "n1 forwarded the plain client's traffic");

    // n2 goes and is forgotten: n1 tells its connected clients, which
    // fetch the map again.
    let a = u1.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<usize>();
    let watcher = std::thread::spawn(move || {
        common::run_local(long, move || async move {
            let c1 = client(a).await;
            assert_eq!(c1.cluster_map().nodes.len(), 3);
            rx.recv().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                c1.conn_for("direct-q").await.unwrap();
                let n = c1.cluster_map().nodes.len();
                if n == 2 || std::time::Instant::now() > deadline {
                    done_tx.send(n).unwrap();
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    nodes[1].kill();
    let forgot = nodes[0].ctl(&["forget-node", "n2"]);
    assert!(forgot.get("error").is_none(), "{forgot}");
    tx.send(()).unwrap();
    assert_eq!(done_rx.recv().unwrap(), 2, "the client follows the map to two nodes");
    watcher.join().unwrap();
    wait_until("n1 shows two members", || nodes[0].status()["nodes"].as_array().map_or(0, Vec::len) == 2);
}

/// A publisher on n1 routing through an exchange to a deep queue on n3 is
/// paused by n3 (`PublishPaused` over the data link), as one on another
/// shard is, and goes on once the queue drains: forwarding does not let a
/// publisher grow another node's queue without bound.
#[test]
fn a_routed_publisher_on_another_node_pauses_on_a_deep_queue() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("pause.toml");
    std::fs::write(&conf, "publish_pause_messages = 100\n").unwrap();
    let nodes = three_with(root.path(), &["--config", conf.to_str().unwrap()]);
    let (mut on3, _) = Raw::hello(nodes[2].native);
    on3.declare("deep-q");
    assert!(nodes[2].queues().iter().any(|q| q == "deep-q") && nodes[0].queues().is_empty());
    let (mut p, _) = Raw::hello(nodes[0].native);
    p.expect_routed_pause("deep-x", "deep-q", nodes[2].native);
}
