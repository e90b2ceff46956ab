//! Streams (`x-queue-type: stream`, docs/streams.md) against the real
//! broker: pika for RabbitMQ's AMQP side (tests/pika/streams.py), and a
//! `kill -9` restart of `ringmq serve` for durability.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use common::TestBroker;
use std::time::Duration;

const SCRIPT: Duration = Duration::from_secs(90);

fn mode(b: &TestBroker, mode: &str) {
    run("streams.py", b.amqp, &[("MODE", mode)], SCRIPT).assert_ok(mode);
}

#[test]
fn pika_stream_basics() {
    mode(&TestBroker::start(), "basics");
}

#[test]
fn pika_stream_retention() {
    mode(&TestBroker::start(), "retention");
}

/// Confirmed stream messages survive `kill -9` of `ringmq serve` (a
/// confirm means fdatasync'ed), on both shards, with their offsets; the
/// offsets go on from there after the restart.
#[test]
fn stream_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let queues = [common::queue_on(0, 2, "stream-crash"), common::queue_on(1, 2, "stream-crash")];
    let amqp = |line: &str| -> std::net::SocketAddr { common::process::field(line, "amqp").parse().unwrap() };
    let (mut child, line) = common::process::serve(&data, &[]);
    for q in &queues {
        let env = [("MODE", "publish"), ("QUEUE", q.as_str()), ("COUNT", "300")];
        run("streams.py", amqp(&line), &env, SCRIPT).assert_ok("publish");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, line) = common::process::serve(&data, &[]);
    for q in &queues {
        let env = [("MODE", "check"), ("QUEUE", q.as_str()), ("COUNT", "300")];
        run("streams.py", amqp(&line), &env, SCRIPT).assert_ok("check after kill -9");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
