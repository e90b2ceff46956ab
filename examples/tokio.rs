//! The tokio client: a producer task and a consumer task sharing one
//! client, acks sent as ranges.
//!
//! `cargo run --release -- serve` in one terminal, then
//! `cargo run --example tokio -- ringmq://127.0.0.1:5680 tokio-demo`.
#![allow(clippy::unwrap_used)] // an example may unwrap

use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientOptions, ProducerOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), ringmq::client::ClientError> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let queue = args.next().unwrap_or_else(|| "tokio-demo".into());
    // `Send + Sync`: one client for every task.
    let client = Arc::new(Client::connect(ClientOptions { url, ..Default::default() }).await?);
    client.declare(&queue, false).await?;

    let c = client.clone();
    let q = queue.clone();
    let consumer = tokio::spawn(async move {
        let mut consumer = c.subscribe(&q, 256).await?;
        for _ in 0..1000 {
            let d = consumer.next().await.expect("the stream stays open")?;
            // Acks gather into ranges and go out together.
            consumer.ack(d.tag);
        }
        consumer.cancel().await
    });

    let producer = client.producer(&queue, ProducerOptions::default()).await?;
    let mut confirmations = Vec::new();
    for i in 0..1000u32 {
        // Returns at once; the confirmation resolves when the broker has
        // the message's batch.
        confirmations.push(producer.publish(format!("message {i}").as_bytes()).await?);
    }
    producer.flush()?;
    for c in confirmations {
        c.await?;
    }
    consumer.await.expect("the consumer task ends")?;
    println!("1000 messages published, confirmed, consumed and acked on '{queue}'");
    client.close().await;
    Ok(())
}
