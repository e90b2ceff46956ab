//! Publishes 10,000 messages with confirms through the async client.
//!
//! `cargo run --release -- serve` in one terminal, then
//! `cargo run --example producer -- ringmq://127.0.0.1:5680 demo`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::client::{Client, ClientOptions, ProducerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let queue = args.next().unwrap_or_else(|| "demo".into());
    let handle = glommio::LocalExecutorBuilder::default().spawn(move || async move {
        let client = Client::connect(ClientOptions { url, ..Default::default() }).await?;
        client.declare(&queue, false).await?;
        let producer = client.producer(&queue, ProducerOptions::default()).await?;
        let mut confirmations = Vec::new();
        for i in 0..10_000u32 {
            // `publish` returns at once; the confirmation resolves when the
            // broker has stored the message's batch.
            confirmations.push(producer.publish(format!("message {i}").as_bytes()).await?);
        }
        producer.flush()?;
        for c in confirmations {
            c.await?;
        }
        // `send` is publish + wait, for one message at a time.
        producer.send(b"the last one").await?;
        println!("10001 messages confirmed into '{queue}'");
        client.close().await;
        Ok::<_, ringmq::client::ClientError>(())
    })?;
    handle.join()??;
    Ok(())
}
