//! Request/reply over `reply_to` with the tokio client: a replier task
//! answers requests from a queue; the requester sends each with its
//! direct reply-to name (no reply queue) and a correlation id, and
//! matches the answer.
//!
//! `cargo run --release -- serve` in one terminal, then
//! `cargo run --example rpc -- ringmq://127.0.0.1:5680`.
#![allow(clippy::unwrap_used)] // an example may unwrap

use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientOptions, ProducerOptions};
use ringmq::protocol::props::{self, PropsBuilder};

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
}

#[tokio::main]
async fn main() -> Result<(), ringmq::client::ClientError> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ringmq://127.0.0.1:5680".into());
    let opts = ClientOptions { url, ..Default::default() };

    // The replier: doubles the number in each request.
    let server = Client::connect(opts.clone()).await?;
    server.declare("rpc-demo", false).await?;
    let mut requests = server.subscribe("rpc-demo", 16).await?;
    let replier = tokio::spawn(async move {
        while let Some(d) = requests.next().await {
            let d = d?;
            let Some(p) = d.properties() else { continue };
            let (to, corr) = (text(p.short(props::REPLY_TO)), text(p.short(props::CORRELATION_ID)));
            let n: u64 = String::from_utf8_lossy(&d.body).parse().unwrap_or(0);
            let answer = PropsBuilder::new().correlation_id(&corr).build();
            server.reply(&to, &answer, (2 * n).to_string().as_bytes()).await?;
            requests.ack(d.tag);
            if n == 3 {
                break;
            }
        }
        server.close().await;
        Ok::<_, ringmq::client::ClientError>(())
    });

    // The requester.
    let client = Client::connect(opts).await?;
    let (reply_to, mut replies) = client.reply_consumer().await?;
    let producer = client.producer("rpc-demo", ProducerOptions { batch_max: 1, ..Default::default() }).await?;
    for n in 1..=3u64 {
        let props = PropsBuilder::new().reply_to(&reply_to).correlation_id(&format!("req-{n}")).build();
        producer.publish_with(&props, n.to_string().as_bytes()).await?.await?;
        let d = replies.next().await.expect("the reply stream stays open")?;
        let corr = text(d.properties().and_then(|p| p.short(props::CORRELATION_ID)));
        println!("{n} * 2 = {} ({corr})", String::from_utf8_lossy(&d.body));
    }
    replier.await.expect("the replier ends")?;
    client.close().await;
    Ok(())
}
