//! RabbitMQ's detail series (`server::stats_rabbit_detail`) move with a
//! real AMQP client (lapin) against a real broker: where a queue's
//! messages are (persistent, unacked bytes, in memory), dead letters by
//! reason and strategy, the log's writes, publishers, and per-channel
//! figures (prefetch, uncommitted publishes and acks of a transaction),
//! summed on `/metrics` and labelled by channel on `/metrics/per-object`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::scrape::{sample, scrape_until};
use common::TestBroker;
use std::time::Duration;

#[test]
fn detail_series_follow_amqp_traffic() {
    use futures_lite::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        common::lapin_thread::on_thread(Duration::from_secs(60), async move {
            let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            let durable = QueueDeclareOptions { durable: true, ..Default::default() };
            ch.queue_declare("detail-d", durable, FieldTable::default()).await?;
            let mut ttl = FieldTable::default();
            ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(1));
            ch.queue_declare("detail-ttl", QueueDeclareOptions::default(), ttl).await?;
            let mut max = FieldTable::default();
            max.insert("x-max-length".into(), AMQPValue::LongInt(1));
            max.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            max.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString("detail-sink".into()));
            ch.queue_declare("detail-max", QueueDeclareOptions::default(), max).await?;
            ch.queue_declare("detail-sink", QueueDeclareOptions::default(), FieldTable::default()).await?;
            let publish = |queue: &'static str, persistent: bool| {
                let ch = ch.clone();
                async move {
                    let props = if persistent {
                        BasicProperties::default().with_delivery_mode(2)
                    } else {
                        BasicProperties::default()
                    };
                    ch.basic_publish("", queue, BasicPublishOptions::default(), b"detail", props).await?.await
                }
            };
            // 3 persistent into a durable queue (logged: the log writes).
            for _ in 0..3 {
                publish("detail-d", true).await?;
            }
            // Expired without a dead-letter exchange; over the length limit
            // with one (the older message goes to detail-sink).
            publish("detail-ttl", false).await?;
            publish("detail-max", false).await?;
            publish("detail-max", false).await?;
            // A consumer with prefetch 5 takes the 3 and rejects one
            // without requeue (no dead-letter exchange: dropped).
            let cons = conn.create_channel().await?;
            cons.basic_qos(5, BasicQosOptions::default()).await?;
            let mut c =
                cons.basic_consume("detail-d", "c", BasicConsumeOptions::default(), FieldTable::default()).await?;
            let first = c.next().await.expect("a delivery")?;
            for _ in 0..2 {
                c.next().await.expect("a delivery")?;
            }
            first.acker.reject(BasicRejectOptions { requeue: false }).await?;
            // A transaction holding 2 publishes.
            let tx = conn.create_channel().await?;
            tx.tx_select().await?;
            for _ in 0..2 {
                tx.basic_publish("", "detail-sink", BasicPublishOptions::default(), b"t", BasicProperties::default())
                    .await?;
            }
            // Held open while the test scrapes.
            let _ = ready_tx.send(());
            let _ = hold_rx.recv_timeout(Duration::from_secs(30));
            conn.close(200, "bye").await?;
            Ok(())
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("the client's traffic");
    let dl = |reason: &str, strategy: &str| {
        format!("rabbitmq_global_messages_dead_lettered_{reason}_total{{queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"{strategy}\"}}")
    };
    let want = [
        (dl("expired", "disabled"), 1.0),
        (dl("maxlen", "at_most_once"), 1.0),
        (dl("rejected", "disabled"), 1.0),
        (dl("expired", "at_most_once"), 0.0),
        ("rabbitmq_auth_attempts_succeeded_total{protocol=\"all\"}".into(), 1.0),
        ("rabbitmq_global_publishers{protocol=\"all\"}".into(), 2.0),
        // detail-d: 2 unacked, persistent; detail-max 1 and detail-sink 1.
        ("rabbitmq_queue_messages_persistent".into(), 2.0),
        ("rabbitmq_queue_messages_unacked_ram".into(), 2.0),
        ("rabbitmq_queue_messages_ram".into(), 4.0),
        ("rabbitmq_connection_channels".into(), 3.0),
        ("rabbitmq_consumer_prefetch".into(), 5.0),
        ("rabbitmq_channel_prefetch".into(), 0.0),
        ("rabbitmq_channel_messages_uncommitted".into(), 2.0),
        ("rabbitmq_channel_acks_uncommitted".into(), 0.0),
        ("rabbitmq_channel_messages_unconfirmed".into(), 0.0),
    ];
    let metrics = scrape_until(&b, "/metrics", |t| want.iter().all(|(s, v)| sample(t, s) == Some(*v)));
    let get = |n: &str| sample(&metrics, n).unwrap_or_else(|| panic!("{n}"));
    assert!(get("rabbitmq_io_write_ops_total") >= 1.0 && get("rabbitmq_io_write_bytes_total") >= 4096.0);
    assert!(get("rabbitmq_io_write_time_seconds_total") > 0.0);
    let persistent_bytes = get("rabbitmq_queue_messages_persistent_bytes");
    assert!(persistent_bytes > 0.0 && persistent_bytes <= get("rabbitmq_queue_messages_unacked_bytes"));

    // Per object: the channels by name, on the one connection.
    let per_object = scrape_until(&b, "/metrics/per-object", |t| t.contains("rabbitmq_consumer_prefetch{channel="));
    let series = |name: &str| -> Vec<(String, f64)> {
        per_object
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{channel=\""))
            .map(|l| {
                let (label, v) = l.rsplit_once("\"} ").unwrap();
                (label.to_string(), v.parse().unwrap())
            })
            .collect()
    };
    let prefetch = series("rabbitmq_consumer_prefetch");
    assert_eq!(prefetch.len(), 3, "{prefetch:?}");
    assert_eq!(prefetch.iter().filter(|(_, v)| *v == 5.0).count(), 1, "{prefetch:?}");
    let conns = series("rabbitmq_connection_channels");
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].1, 3.0);
    assert!(prefetch.iter().all(|(l, _)| l.starts_with(&format!("{} (", conns[0].0))), "{prefetch:?}");
    let uncommitted = series("rabbitmq_channel_messages_uncommitted");
    assert_eq!(uncommitted.iter().map(|(_, v)| v).sum::<f64>(), 2.0);
    let q = |name: &str, queue: &str| sample(&per_object, &format!("{name}{{queue=\"{queue}\",vhost=\"/\"}}"));
    assert_eq!(q("rabbitmq_queue_messages_persistent", "detail-d"), Some(2.0));
    assert_eq!(q("rabbitmq_queue_messages_ready_ram", "detail-max"), Some(1.0));
    assert_eq!(q("rabbitmq_queue_messages_paged_out", "detail-d"), Some(0.0));
    hold_tx.send(()).unwrap();
    client.join().unwrap();
}
