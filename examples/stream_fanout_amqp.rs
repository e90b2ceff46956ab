//! Stream fan-out over AMQP 0-9-1 with lapin, the same program against
//! ringmq and RabbitMQ (benches/stream_fanout.sh): fills a stream
//! (`x-queue-type: stream`) with MESSAGES bodies of SIZE bytes (confirmed,
//! 1000 in flight), then CONSUMERS consumers, each on its own connection
//! and thread, read it whole from `x-stream-offset: first` (prefetch 2000,
//! acking every 500th with `multiple`). Prints one line:
//! `deliveries=N seconds=S rate=R mbps=B`.
//!
//! `cargo run --release --example stream_fanout_amqp -- amqp://guest:guest@127.0.0.1:5672/%2f 10 16 1000000`
#![allow(clippy::unwrap_used)] // a benchmark program: a panic is its failure

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let consumers: usize = args.next().map_or(10, |a| a.parse().unwrap());
    let size: usize = args.next().map_or(16, |a| a.parse().unwrap());
    let messages: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let queue = format!("fanout-{}", std::process::id());
    futures_lite::future::block_on(fill(&url, &queue, size, messages));
    let start = Instant::now();
    let threads: Vec<_> = (0..consumers)
        .map(|i| {
            let (url, queue) = (url.clone(), queue.clone());
            std::thread::spawn(move || futures_lite::future::block_on(read(&url, &queue, i, messages)))
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let s = start.elapsed().as_secs_f64();
    println!(
        "deliveries={total} seconds={s:.3} rate={:.0} mbps={:.1}",
        total as f64 / s,
        total as f64 * size as f64 / s / 1e6
    );
}

fn stream_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
    t
}

async fn fill(url: &str, queue: &str, size: usize, messages: u64) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(queue, durable, stream_args()).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let body = vec![b'x'; size];
    let t = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..messages {
        let c = ch
            .basic_publish("", queue, BasicPublishOptions::default(), &body, BasicProperties::default())
            .await
            .unwrap();
        pending.push_back(c);
        if pending.len() >= 1000 {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for c in pending {
        c.await.unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!("published {messages} x {size} B in {s:.2} s ({:.0} msg/s)", messages as f64 / s);
    conn.close(200, "done").await.unwrap();
}

async fn read(url: &str, queue: &str, i: usize, messages: u64) -> u64 {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(2000, BasicQosOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), AMQPValue::LongString(LongString::from("first")));
    let mut c = ch.basic_consume(queue, &format!("c{i}"), BasicConsumeOptions::default(), args).await.unwrap();
    let mut n = 0u64;
    while n < messages {
        let d = c.next().await.unwrap().unwrap();
        n += 1;
        if n.is_multiple_of(500) || n == messages {
            d.acker.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    let _ = conn.close(200, "done").await;
    n
}
