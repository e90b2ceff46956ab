//! One broker, two front ends: a queue is the same queue whether it is
//! reached over the native protocol or over AMQP, on either shard.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use common::{queue_on, TestBroker};
use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use std::time::Duration;

const COUNT: usize = 300;

fn native(b: &TestBroker) -> Client {
    Client::connect(ClientOptions { url: b.url(), ..Default::default() }).expect("native client connects")
}

/// Native producer, AMQP consumer; the queue on each shard in turn (so the
/// AMQP connection, wherever it lands, is both local and forwarded).
#[test]
fn native_producer_amqp_consumer() {
    let b = TestBroker::start();
    for shard in 0..2 {
        let q = queue_on(shard, 2, "n2a");
        let mut c = native(&b);
        c.declare(&q, false).expect("declare");
        let bodies: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|s| s.as_bytes()).collect();
        c.publish(&q, &refs, false).expect("native publish");
        let count = COUNT.to_string();
        let out = run("interop_consume.py", b.amqp, &[("QUEUE", &q), ("COUNT", &count)], Duration::from_secs(60));
        out.assert_ok("AMQP consumer");
        let got: Vec<&str> = out.stdout.lines().filter_map(|l| l.strip_prefix("BODY ")).collect();
        let want: Vec<String> = bodies.iter().map(|b| format!("{b} noprops")).collect();
        assert_eq!(got, want, "AMQP consumer saw the native messages in order, without properties");
        assert_eq!(c.declare(&q, false).expect("declare"), 0, "all acked over AMQP");
    }
}

/// AMQP producer (with confirms), native consumer.
#[test]
fn amqp_producer_native_consumer() {
    let b = TestBroker::start();
    for shard in 0..2 {
        let q = queue_on(shard, 2, "a2n");
        let count = COUNT.to_string();
        run("interop_publish.py", b.amqp, &[("QUEUE", &q), ("COUNT", &count)], Duration::from_secs(60))
            .assert_ok("AMQP producer");
        let mut c = native(&b);
        let sub = c.subscribe(&q, 1000).expect("native subscribe");
        for i in 0..COUNT {
            let d =
                c.recv(&sub, Duration::from_secs(5)).expect("recv").unwrap_or_else(|| panic!("message {i} missing"));
            assert_eq!(d.body, format!("m{i}").as_bytes());
            if i == 0 {
                // The AMQP content header properties, stored as they came.
                assert_eq!(&d.props[..], b"\x80\x00\x0atext/plain", "properties kept intact");
            } else {
                assert!(d.props.is_empty(), "no properties stored for a message without any");
            }
            c.ack(&sub, d.tag).expect("ack");
        }
    }
}
