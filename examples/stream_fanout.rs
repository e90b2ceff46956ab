//! Stream fan-out (issue 18's benchmark shape): fills a stream with
//! MESSAGES bodies of SIZE bytes, then CONSUMERS native stream consumers
//! (each its own connection, `StreamSubscribe` from `first`, prefetch
//! 2000, acking as they go) read the whole stream at once. Prints the
//! deliveries per second in all and the bytes of bodies per second.
//!
//! `cargo run --release --example stream_fanout -- ringmq://127.0.0.1:5680 10 16 1000000`
#![allow(clippy::unwrap_used)] // a benchmark program: a panic is its failure

use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ConsumerOptions, ProducerOptions};
use ringmq::protocol::field_table::TableBuilder;
use ringmq::protocol::StreamAt;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let consumers: usize = args.next().map_or(10, |a| a.parse().unwrap());
    let size: usize = args.next().map_or(16, |a| a.parse().unwrap());
    let messages: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let queue = format!("fanout-{}", std::process::id());
    let (u, q) = (url.clone(), queue.clone());
    // Fill the stream: batches of 1000, confirmed.
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let client = Client::connect(ClientOptions { url: u, ..Default::default() }).await.unwrap();
            let stream_args = TableBuilder::new().str("x-queue-type", "stream").build();
            client.declare_with(&q, true, &stream_args).await.unwrap();
            let opts = ProducerOptions { batch_max: 1000, in_flight_max: 64, ..Default::default() };
            let producer = client.producer(&q, opts).await.unwrap();
            let body = vec![b'x'; size];
            let t = Instant::now();
            let mut pending = Vec::new();
            for i in 0..messages {
                pending.push(producer.publish(&body).await.unwrap());
                if pending.len() == 100_000 || i + 1 == messages {
                    producer.flush().unwrap();
                    for c in pending.drain(..) {
                        c.await.unwrap();
                    }
                }
            }
            let s = t.elapsed().as_secs_f64();
            println!("published {messages} x {size} B in {s:.2} s: {:.0} msg/s", messages as f64 / s);
            client.close().await;
        })?
        .join()?;
    let start = Instant::now();
    let handles: Vec<_> = (0..consumers)
        .map(|_| {
            let (u, q) = (url.clone(), queue.clone());
            glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let client = Client::connect(ClientOptions { url: u, ..Default::default() }).await.unwrap();
                    let o = ConsumerOptions::new(2000).stream_at(StreamAt::First);
                    let mut consumer = client.subscribe_with(&q, o).await.unwrap();
                    let mut n = 0u64;
                    while n < messages {
                        let d = consumer.next().await.unwrap().unwrap();
                        consumer.ack(d.tag);
                        n += 1;
                    }
                    drop(consumer);
                    client.close().await;
                    n
                })
                .unwrap()
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = start.elapsed().as_secs_f64();
    println!(
        "{consumers} consumers x {messages} x {size} B: {total} deliveries in {s:.2} s: {:.0} deliveries/s, {:.1} MB/s of bodies",
        total as f64 / s,
        (total as f64 * size as f64) / s / 1e6
    );
    Ok(())
}
