//! The AMQP 0-9-1 front end through pika, the seed's client: the seed's
//! own programs, then one script per feature (tests/pika/*.py). Each test
//! starts its own broker (2 shards, ephemeral ports).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::{finish, run, spawn};
use common::TestBroker;
use ringmq::protocol::shard_for;
use std::time::Duration;

const SCRIPT: Duration = Duration::from_secs(60);

fn script_test(name: &str) {
    let b = TestBroker::start();
    run(name, b.amqp, &[], SCRIPT).assert_ok(name);
}

/// The seed's scenario with the seed's code: the producer publishes
/// 'Hello World!' to 'hello', the consumer (which consumes forever) receives
/// it. The seed's callback then calls `time.sleep(body.count('.'))`, which
/// raises TypeError on Python 3 (bytes.count needs bytes): that is a bug of
/// the seed program, after the message was received, and is checked here
/// so it stays visible.
#[test]
fn seed_hello_world() {
    let b = TestBroker::start();
    let send = run("seed_send.py", b.amqp, &[], SCRIPT);
    send.assert_ok("seed producer");
    assert!(send.stdout.contains(" [x] Sent 'Hello World!'"), "{}", send.stdout);
    let consumer = spawn("seed_receive.py", b.amqp, &[]);
    let out = finish(consumer, Duration::from_secs(10));
    assert!(
        out.stdout.contains(" [x] Received b'Hello World!'"),
        "the seed consumer did not receive the message\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
    // The seed's own Python 3 bug, not the broker's.
    assert!(out.stderr.contains("TypeError"), "expected the seed's TypeError from body.count('.'): {}", out.stderr);
}

/// The seed's consumer started first, waiting, then the producer: the
/// message is pushed to the waiting consumer.
#[test]
fn seed_consumer_first() {
    let b = TestBroker::start();
    let consumer = spawn("seed_receive.py", b.amqp, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    run("seed_send.py", b.amqp, &[], SCRIPT).assert_ok("seed producer");
    let out = finish(consumer, Duration::from_secs(5));
    assert!(out.stdout.contains(" [x] Received b'Hello World!'"), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn pika_publisher_confirms() {
    script_test("confirms.py");
}

#[test]
fn pika_properties_intact() {
    script_test("properties.py");
}

#[test]
fn pika_qos_and_prefetch() {
    script_test("qos.py");
}

#[test]
fn pika_nack_reject_recover() {
    script_test("nack.py");
}

#[test]
fn pika_get() {
    script_test("get.py");
}

#[test]
fn pika_exclusive_auto_delete_server_named() {
    script_test("exclusive.py");
}

#[test]
fn pika_exclusive_consumers() {
    script_test("exclusive_consumer.py");
}

/// x-priority on basic.consume: the high consumer while it has credit,
/// the low one while it is blocked; round-robin among equals; 406.
#[test]
fn pika_consumer_priorities() {
    script_test("consumer_priority.py");
}

#[test]
fn pika_redelivery_after_consumer_dies() {
    script_test("redelivery.py");
}

#[test]
fn pika_error_codes() {
    script_test("errors.py");
}

/// One shard, so the publisher's connection is on its queue's owner (the
/// pause applies to local queues, like the native protocol's).
#[test]
fn pika_connection_blocked_and_unblocked() {
    let b = TestBroker::start_with(1, |c| c.publish_pause_messages = 100);
    run("blocked.py", b.amqp, &[], SCRIPT).assert_ok("blocked.py");
}

/// Two shards, the publisher's connection on the one that does not own
/// the queue: the owner pauses it over the mesh (`shard/pause.rs`).
#[test]
fn pika_connection_blocked_by_a_queue_on_another_shard() {
    let b = TestBroker::start_with(2, |c| c.publish_pause_messages = 100);
    let name = |shard| (0..).map(|i| format!("blocked-remote-{i}")).find(|q| shard_for(q, 2) == shard).unwrap();
    let (q0, q1) = (name(0), name(1));
    let env = [("QUEUE_ON_0", q0.as_str()), ("QUEUE_ON_1", q1.as_str())];
    run("blocked_remote.py", b.amqp, &env, SCRIPT).assert_ok("blocked_remote.py");
}

#[test]
fn pika_bulk_auto_and_manual_ack() {
    script_test("bulk.py");
}

#[test]
fn pika_policies_ttl_dead_letter_expiry() {
    script_test("policies_ttl.py");
}

#[test]
fn pika_policies_max_length_overflow_modes() {
    script_test("policies_maxlen.py");
}

#[test]
fn pika_policies_priority_and_single_active_consumer() {
    script_test("policies_priority_sac.py");
}

#[test]
fn pika_policies_rejection_cycles_and_argument_checks() {
    script_test("policies_dlx.py");
}

/// Fanout, direct, topic and headers exchanges, exchange-to-exchange
/// bindings, the alternate exchange and mandatory returns, as RabbitMQ's
/// tutorials use them.
#[test]
fn pika_exchanges() {
    script_test("routing.py");
}

/// Transactions: publishes and acks at commit, rollback, 406 for tx with
/// confirms and for commit / rollback without select, a commit across
/// queues on both shards, mandatory returns, and `tx_messages_max`.
#[test]
fn pika_transactions() {
    let b = TestBroker::start_with(2, |c| c.tx_messages_max = 50);
    let name = |shard| (0..).map(|i| format!("tx-shard-{i}")).find(|q| shard_for(q, 2) == shard).unwrap();
    let (q0, q1) = (name(0), name(1));
    let env = [("QUEUE_ON_0", q0.as_str()), ("QUEUE_ON_1", q1.as_str()), ("TX_MESSAGES_MAX", "50")];
    run("tx.py", b.amqp, &env, SCRIPT).assert_ok("tx.py");
}
