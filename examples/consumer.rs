//! Consumes from a queue with prefetch 1000 and acks each message, until
//! the queue stays empty for two seconds.
//!
//! `cargo run --example consumer -- ringmq://127.0.0.1:5680 demo`
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let queue = args.next().unwrap_or_else(|| "demo".into());
    let handle = glommio::LocalExecutorBuilder::default().spawn(move || async move {
        let client = Client::connect(ClientOptions { url, ..Default::default() }).await?;
        client.declare(&queue, false).await?;
        let mut consumer = client.subscribe(&queue, 1000).await?;
        let mut n = 0u64;
        loop {
            let next = glommio::timer::timeout(Duration::from_secs(2), async { Ok(consumer.next().await) }).await;
            let Ok(Some(delivery)) = next else { break };
            let d = delivery?;
            consumer.ack(d.tag);
            n += 1;
        }
        println!("received {n} messages from '{queue}'");
        drop(consumer);
        client.close().await;
        Ok::<_, ringmq::client::ClientError>(())
    })?;
    handle.join()??;
    Ok(())
}
