//! The AMQP front end through lapin (Rust), a second unmodified client.
//! lapin runs on its own executor (async-global-executor) on a plain
//! thread, away from the broker's glommio shards.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{queue_on, TestBroker};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::sync::mpsc;
use std::time::Duration;

fn on_thread<F, T>(deadline: Duration, f: F) -> T
where
    F: std::future::Future<Output = lapin::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(futures_lite::future::block_on(f));
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("lapin: {e}"),
        Err(_) => panic!("the lapin client did not finish within {deadline:?} (or panicked)"),
    }
}

#[test]
fn lapin_confirms_consume_get_nack() {
    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    // One queue per shard: whichever shard lapin lands on, one is forwarded.
    let queues = [queue_on(0, 2, "lapin"), queue_on(1, 2, "lapin")];
    on_thread(Duration::from_secs(60), async move {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        for q in &queues {
            let ok = ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default()).await?;
            assert_eq!(ok.message_count(), 0);
            let mut headers = FieldTable::default();
            headers.insert("k".into(), AMQPValue::LongString("v".into()));
            for i in 0..100u32 {
                let props = BasicProperties::default()
                    .with_content_type("text/plain".into())
                    .with_headers(headers.clone())
                    .with_message_id(format!("id-{i}").into());
                let confirm = ch
                    .basic_publish("", q, BasicPublishOptions::default(), format!("m{i}").as_bytes(), props)
                    .await?
                    .await?;
                assert!(confirm.is_ack(), "message {i} confirmed");
            }
            // get, then nack with requeue: it comes back redelivered.
            let got = ch.basic_get(q, BasicGetOptions::default()).await?.expect("a message to get");
            assert_eq!(got.delivery.data, b"m0");
            assert_eq!(got.message_count, 99);
            got.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;

            ch.basic_qos(10, BasicQosOptions::default()).await?;
            let mut consumer = ch.basic_consume(q, "", BasicConsumeOptions::default(), FieldTable::default()).await?;
            assert!(consumer.tag().as_str().starts_with("amq.ctag-"), "server-generated tag");
            for i in 0..100u32 {
                let d = consumer.next().await.expect("consumer stream open")?;
                assert_eq!(d.data, format!("m{i}").as_bytes());
                assert_eq!(d.redelivered, i == 0, "only the nacked one is redelivered");
                assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some(format!("id-{i}").as_str()));
                assert_eq!(d.properties.content_type().as_ref().map(|s| s.as_str()), Some("text/plain"));
                assert!(d.properties.headers().is_some());
                d.acker.ack(BasicAckOptions::default()).await?;
            }
            ch.basic_cancel(consumer.tag().as_str(), Default::default()).await?;
            let left = ch.queue_delete(q, QueueDeleteOptions::default()).await?;
            assert_eq!(left, 0, "everything acked");
        }
        conn.close(200, "bye").await?;
        Ok(())
    });
}
