//! Durability across restarts of a real 2-shard broker on one data dir:
//! unacked persistent messages come back in order (marked redelivered),
//! acked ones stay gone; transient messages and transient queues do not
//! survive; a data dir written with another shard count is refused.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{body_seq, queue_on, seq_body};
use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use ringmq::server::config::Config;
use ringmq::server::{Broker, StartError};
use std::path::Path;
use std::time::Duration;

fn start(dir: &Path, cores: usize, tweak: impl FnOnce(&mut Config)) -> Result<Broker, StartError> {
    let mut config = Config {
        cores,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        pin_cores: false,
        ..Default::default()
    };
    tweak(&mut config);
    Broker::start(config)
}

fn client(b: &Broker) -> Client {
    Client::connect(ClientOptions { url: format!("ringmq://{}", b.native_addr), ..Default::default() })
        .expect("connect")
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn restart_keeps_unacked_in_order_and_acked_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    // One durable queue per shard, a transient queue, small segments so
    // the log rolls and reclaims while we go.
    let durable: Vec<String> = (0..2).map(|s| queue_on(s, 2, "dq")).collect();
    let transient = queue_on(0, 2, "tq");
    let tweak = |c: &mut Config| c.segment_bytes = 65_536;
    {
        let b = start(dir.path(), 2, tweak).expect("first start");
        let mut c = client(&b);
        for q in &durable {
            assert_eq!(c.declare(q, true).unwrap(), 0);
            for chunk in (0..300u64).collect::<Vec<_>>().chunks(50) {
                let bodies: Vec<Vec<u8>> = chunk.iter().map(|&i| seq_body(i, 512)).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                c.publish(q, &refs, true).expect("persistent publish confirmed");
            }
            // A transient message into a durable queue: kept in memory only.
            c.publish(q, &[&seq_body(9_999, 16)], false).unwrap();
            let sub = c.subscribe(q, 1000).unwrap();
            for i in 0..301u64 {
                let d = c.recv(&sub, WAIT).unwrap().expect("delivery");
                assert_eq!(body_seq(&d.body), if i < 300 { i } else { 9_999 });
                // Ack the first 120 and every third one after.
                if i < 120 || (i < 300 && i % 3 == 0) {
                    c.ack(&sub, d.tag).unwrap();
                }
            }
        }
        c.declare(&transient, false).unwrap();
        c.publish(&transient, &[b"gone"], true).unwrap();
        // Make sure the acks reached the broker before it stops.
        for q in &durable {
            c.declare(q, true).unwrap();
        }
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path(), 2, tweak).expect("restart");
    let mut c = client(&b);
    let want: Vec<u64> = (120..300u64).filter(|i| i % 3 != 0).collect();
    for q in &durable {
        assert_eq!(c.declare(q, true).unwrap(), want.len() as u64, "ready after restart");
        let sub = c.subscribe(q, 1000).unwrap();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let d = c.recv(&sub, WAIT).unwrap().expect("recovered delivery");
            assert!(d.redelivered, "recovered messages are marked redelivered");
            got.push(body_seq(&d.body));
            c.ack(&sub, d.tag).unwrap();
        }
        assert_eq!(got, want, "unacked persistent messages, in order, nothing acked");
        assert!(c.recv(&sub, Duration::from_millis(300)).unwrap().is_none(), "nothing more");
        // New publishes continue after the recovered sequence numbers.
        c.publish(q, &[&seq_body(5_000, 16)], true).unwrap();
        let d = c.recv(&sub, WAIT).unwrap().expect("new delivery");
        assert_eq!(body_seq(&d.body), 5_000);
        assert!(!d.redelivered);
        c.ack(&sub, d.tag).unwrap();
        c.declare(q, true).unwrap();
    }
    assert!(c.declare(&transient, false).is_ok(), "the transient queue is gone, declared anew");
    assert!(c.get(&transient, true).unwrap().is_none(), "its message did not survive");
    drop(c);
    b.stop().expect("the broker stops cleanly");

    // Everything acked: a third start finds empty queues, and the dead
    // segments were reclaimed.
    let b = start(dir.path(), 2, tweak).expect("third start");
    let mut c = client(&b);
    for q in &durable {
        assert_eq!(c.declare(q, true).unwrap(), 0);
    }
    drop(c);
    b.stop().expect("the broker stops cleanly");
    for s in 0..2 {
        let n = std::fs::read_dir(dir.path().join(format!("shard-{s}"))).unwrap().count();
        assert!(n <= 3, "shard {s} keeps {n} segments: dead ones are deleted");
    }
}

#[test]
fn deleted_and_purged_queues_stay_that_way() {
    let dir = tempfile::tempdir().unwrap();
    let (a, p) = (queue_on(0, 2, "del"), queue_on(1, 2, "pur"));
    {
        let b = start(dir.path(), 2, |_| {}).unwrap();
        let mut c = client(&b);
        for q in [&a, &p] {
            c.declare(q, true).unwrap();
            c.publish(q, &[b"x", b"y"], true).unwrap();
        }
        assert_eq!(c.delete(&a).unwrap(), 2);
        assert_eq!(c.purge(&p).unwrap(), 2);
        drop(c);
        b.stop().expect("the broker stops cleanly");
    }
    let b = start(dir.path(), 2, |_| {}).unwrap();
    let mut c = client(&b);
    assert_eq!(c.declare(&p, true).unwrap(), 0, "purged messages stay purged");
    assert_eq!(c.declare(&a, false).unwrap(), 0, "deleted queue is gone (redeclared transient)");
    drop(c);
    b.stop().expect("the broker stops cleanly");
}

#[test]
fn another_shard_count_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    start(dir.path(), 2, |_| {}).unwrap().stop().expect("the broker stops cleanly");
    let e = start(dir.path(), 1, |_| {}).err().expect("start with 1 shard is refused").to_string();
    assert!(e.contains("2 shards") && e.contains("--cores 2"), "{e}");
}
