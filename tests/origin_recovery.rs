//! A delivery reports the exchange and routing key its message was
//! published with also after the broker restarted (`kill -9`): persistent
//! messages recovered from the log, in memory and left on disk past the
//! memory budget, and a stream's messages read back from the log past its
//! memory window; over the native client (`ConsumerOptions::with_origin`)
//! and over AMQP (pika: basic.deliver and basic.get-ok). The log stores a
//! publish batch's origin once (record type 18, docs/storage.md); a
//! publish to a queue by its name logs nothing more.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ConsumerOptions, ExchangeOptions, ProducerOptions};
use ringmq::protocol::field_table::TableBuilder;
use ringmq::protocol::StreamAt;
use std::path::Path;
use std::time::Duration;

/// A `ringmq serve` child killed (-9) when the test ends, failed or not.
struct Killed(std::process::Child);

impl Killed {
    /// `kill -9`, then a new broker on the same data dir; its ready line.
    fn kill_and_restart(&mut self, data: &Path, config: &Path) -> String {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        let (child, line) = serve(data, config);
        *self = child;
        line
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, config: &Path) -> (Killed, String) {
    let (child, line) = common::process::serve(data, &["--config".as_ref(), config.as_os_str()]);
    (Killed(child), line)
}

fn url(line: &str) -> String {
    format!("ringmq://{}", common::process::field(line, "native"))
}

/// What a consumer is expected to see: (body, exchange, routing key).
type Want = Vec<(Vec<u8>, String, String)>;

/// Publishes `n` persistent messages per batch through `exchange` with
/// `key`, confirmed; `body(i)` for the i-th of the whole run.
async fn publish(c: &Client, exchange: &str, key: &str, bodies: &[Vec<u8>]) {
    let opts = ProducerOptions { persistent: true, batch_max: 64, ..ProducerOptions::default() };
    let p = match exchange {
        "" => c.producer(key, opts).await.unwrap(),
        x => c.exchange_producer(x, key, opts).await.unwrap(),
    };
    let mut pending = Vec::new();
    for b in bodies {
        pending.push(p.publish(b).await.unwrap());
    }
    p.flush().unwrap();
    for c in pending {
        c.await.unwrap();
    }
}

/// Reads deliveries with their origin from `queue` (a stream from its
/// first offset) and checks them against `want[from..]`, in order, where
/// `from` is where the first delivery is in `want`, at most `skip_max`:
/// an ack not yet logged when the broker was killed is lost, and its
/// message delivered again (at-least-once).
async fn expect(c: &Client, queue: &str, stream: bool, want: &[(Vec<u8>, String, String)], skip_max: usize) {
    let mut opts = ConsumerOptions::new(200).with_origin();
    if stream {
        opts = opts.stream_at(StreamAt::First);
    }
    let mut s = c.subscribe_with(queue, opts).await.unwrap();
    let mut d = s.next().await.unwrap().unwrap();
    let from = want.iter().position(|(b, _, _)| b.as_slice() == d.body.as_ref()).expect("a published message");
    assert!(from <= skip_max, "deliveries start at message {from}, not by {skip_max}");
    for (i, (body, exchange, key)) in want.iter().enumerate().skip(from) {
        if i > from {
            d = s.next().await.unwrap().unwrap();
        }
        assert_eq!(d.body.as_ref(), body.as_slice(), "message {i}");
        assert_eq!((d.exchange(), d.routing_key()), (Some(exchange.as_str()), Some(key.as_str())), "message {i}");
        s.ack(d.tag);
    }
}

fn body(tag: &str, i: usize, len: usize) -> Vec<u8> {
    let mut b = format!("{tag}-{i:06}-").into_bytes();
    b.resize(len, b'a' + (i % 26) as u8);
    b
}

/// Publishes batches through a direct exchange, a topic exchange (keys
/// that are not the queue's name) and to the queue by name, into `queue`;
/// returns what a consumer must see.
async fn publish_mixed(c: &Client, queue: &str, tag: &str, per: usize, len: usize) -> Want {
    let (direct, topic) = (format!("{tag}.direct"), format!("{tag}.topic"));
    let durable = ExchangeOptions { durable: true, ..ExchangeOptions::default() };
    c.declare_exchange(&direct, "direct", durable).await.unwrap();
    c.declare_exchange(&topic, "topic", ExchangeOptions { durable: true, ..ExchangeOptions::default() }).await.unwrap();
    c.bind_queue(queue, &direct, "orders.new", &[]).await.unwrap();
    c.bind_queue(queue, &topic, "eu.#", &[]).await.unwrap();
    let mut want = Want::new();
    let runs: [(&str, &str); 5] =
        [(&direct, "orders.new"), ("", queue), (&topic, "eu.de"), (&topic, "eu.fr.paris"), (&direct, "orders.new")];
    for (r, (exchange, key)) in runs.into_iter().enumerate() {
        let bodies: Vec<Vec<u8>> = (0..per).map(|i| body(tag, r * per + i, len)).collect();
        publish(c, exchange, key, &bodies).await;
        want.extend(bodies.into_iter().map(|b| (b, exchange.to_string(), key.to_string())));
    }
    want
}

/// A durable classic queue: messages through a direct and a topic
/// exchange (routing keys unlike the queue's name) and straight to the
/// queue, persistent and confirmed; `kill -9`; after the restart each
/// delivery reports its own exchange and key, those recovered into memory
/// and those left on disk past the 1 MiB memory budget alike (and again
/// after a second restart, with some acked in between).
#[test]
fn native_deliveries_report_their_origin_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ringmq.toml");
    std::fs::write(&config, "memory_budget_bytes = 1048576\n").unwrap();
    let q = common::queue_on(1, 2, "origin-k9");
    let (mut child, line) = serve(&data, &config);
    let qc = q.clone();
    // 5 runs of 500 messages of 1 KiB: 2.5 MiB, past the budget.
    let want = common::run_local(Duration::from_secs(60), move || async move {
        let c = Client::connect(ClientOptions { url: url(&line), ..Default::default() }).await.unwrap();
        c.declare(&qc, true).await.unwrap();
        let want = publish_mixed(&c, &qc, "k9", 500, 1024).await;
        c.close().await;
        want
    });
    let line = child.kill_and_restart(&data, &config);
    let (qc, w) = (q.clone(), want.clone());
    common::run_local(Duration::from_secs(60), move || async move {
        let c = Client::connect(ClientOptions { url: url(&line), ..Default::default() }).await.unwrap();
        // The first 600 acked; the rest go unacked when the consumer is
        // dropped, and come back (requeued) after the next restart.
        expect(&c, &qc, false, &w[..600], 0).await;
        c.close().await;
    });
    let line = child.kill_and_restart(&data, &config);
    common::run_local(Duration::from_secs(60), move || async move {
        let c = Client::connect(ClientOptions { url: url(&line), ..Default::default() }).await.unwrap();
        expect(&c, &q, false, &want, 600).await;
        c.close().await;
    });
}

/// A stream larger than its 1 MiB memory window, published through a
/// topic exchange: read from its first offset (mostly from the log) it
/// reports each message's exchange and key, before and after `kill -9`.
#[test]
fn stream_reads_from_the_log_report_their_origin_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ringmq.toml");
    std::fs::write(&config, "stream_memory_bytes_max = 1048576\nstream_read_ahead_bytes = 131072\n").unwrap();
    let q = common::queue_on(0, 2, "origin-stream");
    let (mut child, line) = serve(&data, &config);
    let qc = q.clone();
    // 5 runs of 400 messages of 2 KiB: about 4 MiB, 4 windows.
    let want = common::run_local(Duration::from_secs(60), move || async move {
        let c = Client::connect(ClientOptions { url: url(&line), ..Default::default() }).await.unwrap();
        c.declare_with(&qc, true, &TableBuilder::new().str("x-queue-type", "stream").build()).await.unwrap();
        let want = publish_mixed(&c, &qc, "st", 400, 2048).await;
        // Before the restart too: the stream keeps origins with its
        // messages (read back from the log past the window).
        expect(&c, &qc, true, &want, 0).await;
        c.close().await;
        want
    });
    let line = child.kill_and_restart(&data, &config);
    common::run_local(Duration::from_secs(60), move || async move {
        let c = Client::connect(ClientOptions { url: url(&line), ..Default::default() }).await.unwrap();
        expect(&c, &q, true, &want, 0).await;
        c.close().await;
    });
}

/// pika: persistent messages published through a direct and a topic
/// exchange into a durable queue; after `kill -9`, basic.get-ok and
/// basic.deliver carry the exchange and routing key they were published
/// with (tests/pika/origin.py).
#[test]
fn pika_sees_exchange_and_routing_key_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ringmq.toml");
    std::fs::write(&config, "").unwrap();
    let q = common::queue_on(1, 2, "origin-pika");
    let amqp = |line: &str| -> std::net::SocketAddr { common::process::field(line, "amqp").parse().unwrap() };
    let (mut child, line) = serve(&data, &config);
    let env = [("MODE", "publish"), ("QUEUE", q.as_str())];
    run("origin.py", amqp(&line), &env, Duration::from_secs(60)).assert_ok("publish");
    let line = child.kill_and_restart(&data, &config);
    let env = [("MODE", "check"), ("QUEUE", q.as_str())];
    run("origin.py", amqp(&line), &env, Duration::from_secs(60)).assert_ok("check after kill -9");
}
