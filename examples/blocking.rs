//! The blocking API: no async runtime needed.
//!
//! `cargo run --example blocking -- ringmq://127.0.0.1:5680`
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use std::time::Duration;

fn main() -> Result<(), ringmq::client::ClientError> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let mut client = Client::connect(ClientOptions { url, ..Default::default() })?;
    client.declare("blocking-demo", false)?;
    // One frame, one confirm, for the whole batch.
    client.publish("blocking-demo", &[b"one", b"two", b"three"], false)?;
    let sub = client.subscribe("blocking-demo", 10)?;
    while let Some(d) = client.recv(&sub, Duration::from_millis(500))? {
        println!("{}", String::from_utf8_lossy(&d.body));
        client.ack(&sub, d.tag)?;
    }
    Ok(())
}
