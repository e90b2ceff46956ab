//! Automatic recovery (docs/client-recovery.md, "Recovery"): a tokio client that
//! publishes persistent messages with confirms and consumes them, and
//! goes on across a broker restart; its events are printed as they come.
//!
//! `cargo run --release -- serve --data-dir /tmp/ringmq-demo` in one
//! terminal, then `cargo run --example recovery -- ringmq://127.0.0.1:5680`,
//! and stop (even `kill -9`) and restart the broker while it runs.
#![allow(clippy::unwrap_used)] // an example may unwrap

use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientOptions, ConsumerOptions, ProducerOptions, Recovery, Unconfirmed};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), ringmq::client::ClientError> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let client = Client::connect(ClientOptions {
        url,
        recovery: Some(Recovery {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            // At-least-once: what was not confirmed is sent again.
            unconfirmed: Unconfirmed::Republish,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            println!("recovery: {e:?}");
        }
    });
    // Declared once: recovery declares it again after a restart.
    client.declare("recovery-demo", true).await?;
    let mut consumer = client.subscribe_with("recovery-demo", ConsumerOptions::new(100).with_origin()).await?;
    tokio::spawn(async move {
        let mut n = 0u64;
        // The stream goes on across reconnections.
        while let Some(d) = consumer.next().await {
            let d = d.unwrap();
            n += 1;
            if n.is_multiple_of(1000) {
                println!("received {n} (last via exchange {:?}, key {:?})", d.exchange(), d.routing_key());
            }
            consumer.ack(d.tag);
        }
    });
    let producer = client.producer("recovery-demo", ProducerOptions { persistent: true, ..Default::default() }).await?;
    for i in 0u64.. {
        // Waits while the connection is down; resolves once the broker
        // has the message on disk.
        let confirmation = producer.publish(&i.to_le_bytes()).await?;
        if i.is_multiple_of(1000) {
            confirmation.await?;
            println!("confirmed {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
