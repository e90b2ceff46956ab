//! The memory alarm seen by a real AMQP client (pika, `tests/pika/`): it
//! hears connection.blocked with the alarm's reason while its consumer
//! (native, here) has stopped reading, and connection.unblocked once the
//! consumer has drained the queue; every message it published (each one
//! confirmed) arrives.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{deliveries, pika, NoFrame, Raw, TestBroker};
use ringmq::protocol::{op, Cmd, Frame};
use std::time::{Duration, Instant};

/// Whether some connection is blocked (`ctl alarms`).
fn blocked_connections(b: &TestBroker) -> u64 {
    let (mut c, _) = Raw::hello(b.native);
    let rid = c.send(Cmd::Admin { command: op::ADMIN_ALARMS, arg: "" });
    match c.recv().frame() {
        Frame { request_id, cmd: Cmd::AdminOk { json } } if request_id == rid => {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v[0]["blocked_connections"].as_u64().expect("a count")
        }
        other => panic!("expected AdminOk, got {other:?}"),
    }
}

#[test]
fn pika_publisher_hears_connection_blocked_on_a_memory_alarm() {
    let b = TestBroker::start_with(2, |c| {
        c.memory_high_watermark_bytes = Some(16 << 20);
        c.publish_pause_bytes = 1 << 40;
        c.publish_pause_messages = 1 << 40;
    });
    let q = common::queue_on(0, 2, "alarm-pika");
    let (mut consumer, _) = Raw::hello(b.shards[0]);
    consumer.declare(&q);
    // Takes its prefetch, then reads nothing until the publisher is blocked.
    let (cid, _) = consumer.subscribe(&q, 16);
    let child = pika::spawn("alarm_blocked.py", b.amqp, &[("QUEUE", &q)]);
    let end = Instant::now() + Duration::from_secs(30);
    while blocked_connections(&b) == 0 {
        assert!(Instant::now() < end, "the pika publisher was never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = Some(child);
    let mut received = 0u64;
    let mut published = None;
    let end = Instant::now() + Duration::from_secs(60);
    while published != Some(received) {
        assert!(Instant::now() < end, "received {received}, the script published {published:?}");
        if let Some(c) = child.as_mut() {
            if c.try_wait().expect("wait for python").is_some() {
                let run = pika::finish(child.take().unwrap(), Duration::from_secs(5));
                run.assert_ok("alarm_blocked.py");
                let n = run.stdout.lines().find_map(|l| l.strip_prefix("published ")?.parse().ok());
                published = Some(n.expect("the script says how many it published"));
            }
        }
        match consumer.try_recv(Duration::from_millis(50)) {
            Ok(f) => {
                let ds = deliveries(&f);
                assert!(ds.iter().all(|d| d.body.len() == 65536 && !d.redelivered));
                if let (Some(first), Some(last)) = (ds.first(), ds.last()) {
                    consumer.ack(cid, &[(first.tag, last.tag)]);
                }
                received += ds.len() as u64;
            }
            Err(NoFrame::Timeout) => {}
            Err(e) => panic!("consumer connection ended: {e:?}"),
        }
    }
    // 256 messages of 64 KiB are the 16 MiB watermark; connection buffers
    // count too, so the alarm comes a little before.
    assert!(received >= 200, "blocked after only {received} messages of 64 KiB");
}
