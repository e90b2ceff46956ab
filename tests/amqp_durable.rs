//! Persistent messages published over AMQP survive a broker restart, with
//! their AMQP properties, in a durable queue declared over AMQP.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use common::queue_on;
use ringmq::server::config::Config;
use ringmq::server::Broker;
use std::path::Path;
use std::time::Duration;

fn start(dir: &Path) -> Broker {
    Broker::start(Config {
        cores: 2,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        pin_cores: false,
        ..Default::default()
    })
    .expect("broker starts")
}

#[test]
fn persistent_amqp_messages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let queues = [queue_on(0, 2, "amqp-durable"), queue_on(1, 2, "amqp-durable")];
    let env = |q: &str| vec![("QUEUE".to_string(), q.to_string()), ("COUNT".to_string(), "50".to_string())];
    let b = start(&data);
    for q in &queues {
        let e = env(q);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run("durable_publish.py", b.amqp_addr, &e, Duration::from_secs(60)).assert_ok("durable publish");
    }
    b.stop().expect("the broker stops cleanly");
    let b = start(&data);
    for q in &queues {
        let e = env(q);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run("durable_consume.py", b.amqp_addr, &e, Duration::from_secs(60)).assert_ok("consume after restart");
    }
    b.stop().expect("the broker stops cleanly");
}
