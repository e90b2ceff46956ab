//! The tokio client on a cluster of three `ringmq serve` processes on
//! loopback, as the glommio client in cluster_queues.rs: it gets the map
//! with its handshake, sends a queue's traffic straight to the owning
//! node's owning shard (the node it connected to forwards nothing), and
//! with `cluster_aware` off goes through its node, which forwards.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::{three, Node};
use common::STEP;
use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientOptions, ProducerOptions};
use std::time::Duration;

fn metric(n: &Node, name: &str) -> u64 {
    let (_, body) = n.get("/metrics");
    let line = body.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
}

fn run<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move { tokio::time::timeout(Duration::from_secs(60), f).await.expect("within 60 s") });
}

async fn connect(url: String, cluster_aware: bool) -> Client {
    let o = ClientOptions { url, cluster_aware, ..Default::default() };
    tokio::time::timeout(STEP, Client::connect(o)).await.unwrap().unwrap()
}

#[test]
fn straight_to_the_owner_or_through_the_node() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three(root.path());
    let (u1, u3) = (format!("ringmq://{}", nodes[0].native), format!("ringmq://{}", nodes[2].native));
    let forwarded = "ringmq_cluster_forwarded_requests_total";
    let before = metric(&nodes[0], forwarded);
    let a = u1.clone();
    run(async move {
        let c3 = connect(u3, true).await;
        assert_eq!(c3.declare("tokio-direct-q", false).await.unwrap(), 0, "placed on n3");
        let c1 = connect(a, true).await;
        assert_eq!(c1.cluster_map().nodes.len(), 3, "the map lists every node");
        let carrier = c1.conn_for("tokio-direct-q").await.unwrap();
        assert_eq!(carrier.info().shard_addrs, c3.info().shard_addrs, "a connection to n3");
        let owner = ringmq::protocol::shard_for(&ringmq::protocol::vhost::qualify("/", "tokio-direct-q"), 2);
        assert_eq!(u32::from(carrier.info().shard_id), owner, "its owning shard there");
        let p = c1.producer("tokio-direct-q", ProducerOptions { batch_max: 32, ..Default::default() }).await.unwrap();
        let mut confs = Vec::new();
        for i in 0..200 {
            confs.push(p.publish(format!("m-{i}").as_bytes()).await.unwrap());
        }
        p.flush().unwrap();
        for c in confs {
            tokio::time::timeout(STEP, c).await.unwrap().unwrap();
        }
        let mut consumer = c1.subscribe("tokio-direct-q", 64).await.unwrap();
        for i in 0..200 {
            let d = tokio::time::timeout(STEP, consumer.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(d.body, format!("m-{i}").as_bytes(), "FIFO");
            consumer.ack(d.tag);
        }
        consumer.cancel().await.unwrap();
        c1.close().await;
        c3.close().await;
    });
    assert_eq!(metric(&nodes[0], forwarded), before, "n1 forwarded nothing: the client went to n3 itself");
    run(async move {
        let plain = connect(u1, false).await;
        assert!(plain.cluster_map().nodes.is_empty());
        let carrier = plain.conn_for("tokio-direct-q").await.unwrap();
        assert_eq!(carrier.info().shard_addrs, plain.info().shard_addrs, "through n1's own shards");
        plain.producer("tokio-direct-q", ProducerOptions::default()).await.unwrap().send(b"last").await.unwrap();
        assert_eq!(plain.declare_passive("tokio-direct-q").await.unwrap(), 1);
        plain.close().await;
    });
    assert!(metric(&nodes[0], forwarded) > before, "n1 forwarded the plain client's traffic");
}
