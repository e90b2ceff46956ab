//! `ringmq pub`: publish one message, N generated ones, or (`-` for the
//! message) one per line of standard input, waiting for the broker's
//! confirms unless `--no-confirm`; always ends with `published N
//! confirmed M`, or `published N (not confirmed: --no-confirm)`.

use super::{init_tool_logging, run_local};
use clap::Args;
use ringmq::client::{Client, ClientError, Confirmation, ExchangeOptions, ProducerOptions};
use std::cell::Cell;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::rc::Rc;

#[derive(Args, Debug, Clone)]
pub struct PubArgs {
    #[command(flatten)]
    conn: super::ConnArgs,
    /// The queue to publish to (declared if missing).
    #[arg(long, required_unless_present = "exchange", conflicts_with = "exchange")]
    queue: Option<String>,
    /// Publish through this exchange instead, with `--routing-key`.
    #[arg(long)]
    exchange: Option<String>,
    #[arg(long, default_value = "", requires = "exchange")]
    routing_key: String,
    /// Declare the exchange with this type (direct, fanout, topic,
    /// headers) first; durable with `--persistent`.
    #[arg(long, requires = "exchange")]
    exchange_type: Option<String>,
    /// Through an exchange: a batch that reaches no queue is an error.
    #[arg(long, requires = "exchange")]
    mandatory: bool,
    /// Messages to publish.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Size of each generated message (its sequence number, padded with '.').
    #[arg(long)]
    size: Option<usize>,
    /// Persistent messages into a durable queue.
    #[arg(long)]
    persistent: bool,
    /// Wait for the broker's confirms (the default; kept so that scripts
    /// that give it go on working).
    #[arg(long, conflicts_with = "no_confirm")]
    #[allow(dead_code)] // accepted, and the default either way
    confirm: bool,
    /// Do not ask for confirms: the fastest, and nothing tells whether
    /// the broker took the messages (a refused one is not reported).
    #[arg(long)]
    no_confirm: bool,
    /// A queue argument for the declare, KEY=VALUE (repeatable), e.g.
    /// `--queue-arg x-max-length=100`; integers are sent as integers.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    queue_arg: Vec<String>,
    /// Messages per Publish frame.
    #[arg(long, default_value_t = 256)]
    batch: u32,
    #[command(flatten)]
    props: super::props::PropArgs,
    /// The message; without it, messages are generated. `-` reads
    /// messages from standard input, one per line (without its line
    /// end), until its end; `--count` does not apply then.
    message: Option<String>,
}

/// Where the bodies come from.
enum Source {
    One(Vec<u8>),
    Generated { size: usize },
    Stdin(super::stdin_lines::Lines),
}

/// Fills `buf` with message `seq`: its decimal sequence number padded to `size`.
fn generate(buf: &mut Vec<u8>, seq: u64, size: usize) {
    use std::io::Write;
    buf.clear();
    let _ = write!(buf, "{seq}");
    if buf.len() < size {
        buf.resize(size, b'.');
    }
}

/// Batches whose outcome the tool tracks before it waits for the oldest.
const SETTLE_BACKLOG_MAX: usize = 1024;

struct Counts {
    published: Cell<u64>,
    confirmed: Cell<u64>,
}

async fn publish(a: PubArgs, counts: Rc<Counts>) -> Result<(), ClientError> {
    let args = super::queue_args(&a.queue_arg).map_err(ClientError::Invalid)?;
    let props = a.props.build(a.persistent).map_err(ClientError::Invalid)?;
    let mut source = match a.message.as_deref() {
        Some("-") => Source::Stdin(super::stdin_lines::Lines::start()),
        Some(m) => Source::One(m.as_bytes().to_vec()),
        None => Source::Generated { size: a.size.unwrap_or(16) },
    };
    let client = Client::connect(a.conn.options()).await?;
    let popts = ProducerOptions {
        batch_max: a.batch.max(1),
        persistent: a.persistent,
        confirm: !a.no_confirm,
        mandatory: a.mandatory,
        ..Default::default()
    };
    let producer = match (&a.queue, &a.exchange) {
        (Some(queue), _) => {
            client.declare_with(queue, a.persistent, &args).await?;
            client.producer(queue, popts).await?
        }
        (None, Some(exchange)) => {
            if let Some(kind) = &a.exchange_type {
                let o = ExchangeOptions { durable: a.persistent, ..Default::default() };
                client.declare_exchange(exchange, kind, o).await?;
            }
            client.exchange_producer(exchange, &a.routing_key, popts).await?
        }
        (None, None) => return Err(ClientError::Invalid("give --queue or --exchange".into())),
    };
    // One entry per batch: its confirmation and how many messages it holds.
    let mut waiting: VecDeque<(Confirmation, u64)> = VecDeque::new();
    let mut body = Vec::new();
    let mut result = Ok(());
    let mut seq = 0u64;
    loop {
        match &mut source {
            Source::Stdin(lines) => {
                // A line at a time; the open batch goes out whenever
                // standard input has nothing more yet.
                if !lines.next_into(&mut body, || producer.flush()).await? {
                    break;
                }
            }
            _ if seq >= a.count => break,
            Source::One(m) => {
                body.clear();
                body.extend_from_slice(m);
            }
            Source::Generated { size } => generate(&mut body, seq, *size),
        }
        seq += 1;
        let conf = match producer.publish_with(&props, &body).await {
            Ok(c) => c,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        counts.published.set(counts.published.get() + 1);
        match waiting.back_mut() {
            Some((last, n)) if last.batch() == conf.batch() => *n += 1,
            _ => waiting.push_back((conf, 1)),
        }
        // Count batches already settled; wait only when far behind (the
        // producer's own window bounds what is in flight).
        while waiting.len() > 1 && (waiting.len() > SETTLE_BACKLOG_MAX || waiting[0].0.outcome().is_some()) {
            let (c, n) = waiting.pop_front().expect("len > 1");
            settle(c, n, &counts, &mut result).await;
        }
        if result.is_err() {
            break;
        }
    }
    let _ = producer.flush();
    while let Some((c, n)) = waiting.pop_front() {
        settle(c, n, &counts, &mut result).await;
    }
    drop(producer);
    client.close().await;
    result
}

async fn settle(c: Confirmation, n: u64, counts: &Counts, result: &mut Result<(), ClientError>) {
    match c.await {
        Ok(()) => counts.confirmed.set(counts.confirmed.get() + n),
        Err(e) => {
            if result.is_ok() {
                *result = Err(e);
            }
        }
    }
}

/// The last line: what was sent, and what the broker confirmed, or that
/// nobody asked it to (so `confirmed 0` never reads as a failure that
/// was not one).
fn summary(published: u64, confirmed: Option<u64>) -> String {
    match confirmed {
        Some(c) => format!("published {published} confirmed {c}"),
        None => format!("published {published} (not confirmed: --no-confirm)"),
    }
}

pub fn run(a: PubArgs) -> ExitCode {
    init_tool_logging();
    let confirm = !a.no_confirm;
    let confirmed = |n: u64| confirm.then_some(n);
    if a.message.is_some() && a.size.is_some() {
        eprintln!("ringmq pub: give MESSAGE or --size, not both");
        println!("{}", summary(0, confirmed(0)));
        return ExitCode::from(2);
    }
    let r = run_local("ringmq-pub", move || async move {
        let counts = Rc::new(Counts { published: Cell::new(0), confirmed: Cell::new(0) });
        let r = publish(a, counts.clone()).await;
        (r.map_err(|e| e.to_string()), counts.published.get(), counts.confirmed.get())
    });
    match r {
        Ok((r, published, n)) => {
            if let Err(e) = &r {
                eprintln!("ringmq pub: {e}");
            }
            println!("{}", summary(published, confirmed(n)));
            if r.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ringmq pub: {e}");
            println!("{}", summary(0, confirmed(0)));
            ExitCode::FAILURE
        }
    }
}
