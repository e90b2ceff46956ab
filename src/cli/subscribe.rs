//! `ringmq sub`: receive and ack; ends with `received N` (on standard
//! error with `--format json`, so that standard output is only JSON
//! lines). It declares the queue and its `--bind` bindings first, so
//! `--count 0` only sets them up.

use super::{init_tool_logging, run_local};
use clap::Args;
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientError, ConsumerOptions};
use std::cell::Cell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    #[command(flatten)]
    conn: super::ConnArgs,
    #[arg(long)]
    queue: String,
    /// Exit 0 after this many messages; 0 declares the queue and its
    /// `--bind` bindings, then exits without consuming.
    #[arg(long)]
    count: Option<u64>,
    /// Give up (exit 1) when no message arrives for this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Only count; print nothing per message.
    #[arg(long)]
    quiet: bool,
    /// `text`: each body on a line (lossy UTF-8). `json`: one JSON object
    /// per line with body (UTF-8, or base64 when it is not: see
    /// `body_encoding`), properties, headers, exchange (`""`: the default
    /// exchange), routing_key and redelivered.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Declare the queue durable if it does not exist yet (as `pub
    /// --persistent` does).
    #[arg(long)]
    durable: bool,
    /// Bind the queue to an exchange first: `EXCHANGE` or `EXCHANGE:KEY`
    /// (repeatable).
    #[arg(long = "bind", value_name = "EXCHANGE[:KEY]")]
    binds: Vec<String>,
    /// Declare the `--bind` exchanges with this type if they do not exist.
    #[arg(long)]
    exchange_type: Option<String>,
    /// A queue argument for the declare, KEY=VALUE (repeatable), as for
    /// `ringmq pub`.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    queue_arg: Vec<String>,
    /// Unacked messages the broker may push ahead; with `--count N`, at
    /// most N (what is pushed beyond N goes back to the queue, marked
    /// redelivered, when sub exits).
    #[arg(long, default_value_t = 8192)]
    prefetch: u32,
}

/// The prefetch to subscribe with: `--prefetch`, bounded by `--count` so
/// that a sub taking a few messages does not take thousands more with
/// them (they would go back to the queue marked redelivered). `None`:
/// take nothing, do not subscribe.
fn prefetch_for(prefetch: u32, count: Option<u64>) -> Option<u32> {
    match count {
        Some(0) => None,
        Some(n) => Some(u32::try_from(n).map_or(prefetch, |n| prefetch.min(n))),
        None => Some(prefetch),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

enum End {
    Done,
    TimedOut,
}

async fn receive(a: SubArgs, received: Rc<Cell<u64>>) -> Result<End, ClientError> {
    let args = super::queue_args(&a.queue_arg).map_err(ClientError::Invalid)?;
    let client = Client::connect(a.conn.options()).await?;
    client.declare_with(&a.queue, a.durable, &args).await.or_else(|e| {
        // A queue that exists with the other durability is fine too.
        if e.code() == Some(ringmq::protocol::ErrorCode::QueueMismatch) {
            Ok(0)
        } else {
            Err(e)
        }
    })?;
    for b in &a.binds {
        let (exchange, key) = b.split_once(':').unwrap_or((b, ""));
        if let Some(kind) = &a.exchange_type {
            let o = ringmq::client::ExchangeOptions { durable: a.durable, ..Default::default() };
            client.declare_exchange(exchange, kind, o).await?;
        }
        client.bind_queue(&a.queue, exchange, key, &[]).await?;
    }
    let Some(prefetch) = prefetch_for(a.prefetch, a.count) else {
        client.close().await;
        return Ok(End::Done);
    };
    // JSON shows each message's exchange and routing key: asked for only
    // then (the broker adds them to the frames).
    let options = ConsumerOptions::new(prefetch);
    let options = if a.format == Format::Json { options.with_origin() } else { options };
    let mut consumer = client.subscribe_with(&a.queue, options).await?;
    let idle = a.timeout.map(Duration::from_secs_f64);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut first_at = None;
    let end = loop {
        if a.count.is_some_and(|n| received.get() >= n) {
            break End::Done;
        }
        // A timer per message costs more than the message: time only the
        // waits, when nothing is buffered.
        let next = match idle {
            Some(_) if consumer.buffered() > 0 => consumer.next().await,
            None => consumer.next().await,
            Some(t) => match glommio::timer::timeout(t, async { Ok(consumer.next().await) }).await {
                Ok(n) => n,
                Err(_) => break End::TimedOut,
            },
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e),
            None => return Err(ClientError::Closed("subscription ended".into())),
        };
        consumer.ack(d.tag);
        if received.get() == 0 {
            first_at = Some(Instant::now());
        }
        received.set(received.get() + 1);
        match (a.quiet, a.format) {
            (true, _) => {}
            (false, Format::Json) => {
                let _ = writeln!(
                    out,
                    "{}",
                    super::props::delivery_json(&d.body, &d.props, d.redelivered, d.exchange().zip(d.routing_key()))
                );
            }
            (false, Format::Text) => {
                let redelivered = if d.redelivered { " (redelivered)" } else { "" };
                let _ = writeln!(out, "{}{redelivered}", String::from_utf8_lossy(&d.body));
            }
        }
    };
    let _ = out.flush();
    drop(out);
    if let Some(t) = first_at.filter(|_| a.quiet && received.get() > 1) {
        let secs = t.elapsed().as_secs_f64();
        let n = received.get();
        eprintln!("ringmq sub: {n} messages in {secs:.3} s from the first: {:.0} msg/s", (n - 1) as f64 / secs);
    }
    drop(consumer);
    client.close().await;
    Ok(end)
}

pub fn run(a: SubArgs) -> ExitCode {
    init_tool_logging();
    let json = a.format == Format::Json;
    let r = run_local("ringmq-sub", move || async move {
        let received = Rc::new(Cell::new(0));
        let r = receive(a, received.clone()).await;
        (r.map_err(|e| e.to_string()), received.get())
    });
    let (r, n) = match r {
        Ok(v) => v,
        Err(e) => (Err(e), 0),
    };
    let code = match &r {
        Ok(End::Done) => ExitCode::SUCCESS,
        Ok(End::TimedOut) => {
            eprintln!("ringmq sub: timed out waiting for messages");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ringmq sub: {e}");
            ExitCode::FAILURE
        }
    };
    if json {
        eprintln!("received {n}");
    } else {
        println!("received {n}");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::prefetch_for;

    #[test]
    fn count_bounds_the_prefetch() {
        assert_eq!(prefetch_for(8192, None), Some(8192));
        assert_eq!(prefetch_for(8192, Some(1)), Some(1));
        assert_eq!(prefetch_for(8192, Some(100_000)), Some(8192));
        assert_eq!(prefetch_for(10, Some(u64::MAX)), Some(10));
        assert_eq!(prefetch_for(8192, Some(0)), None, "--count 0 does not subscribe");
    }
}
