//! Publish-to-confirm round trips, one message at a time, with the blocking
//! client: a quick look at the broker's latency floor.
//!
//! `cargo run --release --example rtt -- ringmq://127.0.0.1:5680 [COUNT]`
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use std::time::Instant;

fn main() -> Result<(), ringmq::client::ClientError> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let count: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(10_000);
    let mut client = Client::connect(ClientOptions { url, ..Default::default() })?;
    client.declare("rtt", false)?;
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        client.publish("rtt", &[b"ping"], false)?;
        took.push(t.elapsed().as_micros() as u64);
    }
    client.purge("rtt")?;
    took.sort_unstable();
    let at = |p: f64| took[((took.len() - 1) as f64 * p) as usize];
    println!("{count} confirms: p50 {} us, p90 {} us, p99 {} us, max {} us", at(0.5), at(0.9), at(0.99), at(1.0));
    Ok(())
}
