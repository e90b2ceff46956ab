//! End-to-end rate of the tokio client against the glommio client, side by
//! side: one producer (confirms on) and one consumer (acking each
//! message) on one queue, both on one thread per client (a glommio
//! executor; a current-thread tokio runtime), for each body size. Prints
//! msg/s for each and the tokio/glommio ratio. Indicative only on a
//! shared machine: run it several times.
//!
//! `cargo run --release -- serve` in one terminal, then
//! `cargo run --release --example client_bench -- ringmq://127.0.0.1:5680 [MESSAGES] [ROUNDS]`.
#![allow(clippy::unwrap_used)] // an example may unwrap

use futures_lite::StreamExt;
use ringmq::client::{ClientOptions, ProducerOptions};
use std::time::{Duration, Instant};

/// Messages per run and body size.
const SIZES: [usize; 2] = [16, 1024];

async fn glommio_run(url: String, queue: String, n: u64, size: usize) -> f64 {
    let c = ringmq::client::Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
    c.declare(&queue, false).await.unwrap();
    let mut consumer = c.subscribe(&queue, 2000).await.unwrap();
    let p = c.producer(&queue, ProducerOptions::default()).await.unwrap();
    let body = vec![7u8; size];
    let start = Instant::now();
    let consume = async {
        for _ in 0..n {
            let d = consumer.next().await.unwrap().unwrap();
            consumer.ack(d.tag);
        }
    };
    let publish = async {
        for _ in 0..n {
            p.publish(&body).await.unwrap();
        }
        p.flush().unwrap();
    };
    futures_lite::future::zip(consume, publish).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(consumer);
    c.delete(&queue).await.unwrap();
    c.close().await;
    rate
}

async fn tokio_run(url: String, queue: String, n: u64, size: usize) -> f64 {
    let c = ringmq::client::tokio::Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
    c.declare(&queue, false).await.unwrap();
    let mut consumer = c.subscribe(&queue, 2000).await.unwrap();
    let p = c.producer(&queue, ProducerOptions::default()).await.unwrap();
    let body = vec![7u8; size];
    let start = Instant::now();
    let consume = async {
        for _ in 0..n {
            let d = consumer.next().await.unwrap().unwrap();
            consumer.ack(d.tag);
        }
    };
    let publish = async {
        for _ in 0..n {
            p.publish(&body).await.unwrap();
        }
        p.flush().unwrap();
    };
    futures_lite::future::zip(consume, publish).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(consumer);
    c.delete(&queue).await.unwrap();
    c.close().await;
    rate
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    for size in SIZES {
        for round in 0..rounds {
            let (u, q) = (url.clone(), format!("bench-g-{size}-{round}"));
            let g = glommio::LocalExecutorBuilder::default()
                .spawn(move || glommio_run(u, q, n, size))
                .unwrap()
                .join()
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let t = rt.block_on(tokio_run(url.clone(), format!("bench-t-{size}-{round}"), n, size));
            drop(rt);
            std::thread::sleep(Duration::from_millis(300));
            println!(
                "{size:>5} B round {round}: glommio {:>10.0} msg/s, tokio {:>10.0} msg/s, tokio/glommio {:.2}",
                g,
                t,
                t / g
            );
        }
    }
}
