//! The native ringmq driver, on the project's client library
//! (`ringmq::client`, shard-aware, batch-first).
//!
//! Behind the `native` cargo feature until the client's async API settles;
//! the API it expects is listed in docs/loadgen.md.
//!
//! - One `Client` per producer or consumer (like the AMQP driver's one
//!   connection each); the client itself opens the connection to the shard
//!   that owns the queue.
//! - A producer publishes through `ringmq::client::Producer`, which gathers
//!   `--batch` messages into one `Publish` frame; with `--confirm` the
//!   confirmations of one `publish` call are awaited by one local task, in
//!   order, and recorded from the intended send time.
//! - A consumer reads the delivery stream and acks every delivery; the
//!   client coalesces the acks of one turn into ranges (`--ack-every` is an
//!   AMQP-only knob).

use crate::amqp::{ConfirmSink, Sink};
use crate::driver::ClientSpec;
use crate::header::{now_ns, BatchClock, HEADER_LEN};
use crate::workload::{Route, Workload};
use anyhow::{anyhow, Result};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ExchangeOptions, ProducerOptions};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    /// Whether this thread has printed a refused publish yet (printed once).
    static NACK_REPORTED: Cell<bool> = const { Cell::new(false) };
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("ringmq: {e}")
}

/// `opts`: the URL (`ringmq://` or `ringmqs://`) and the TLS files.
async fn connect(opts: &ClientOptions) -> Result<Client> {
    Client::connect(opts.clone()).await.map_err(err)
}

/// See [`crate::driver::Target::setup`].
pub async fn setup(opts: &ClientOptions, w: &Workload) -> Result<u64> {
    let c = connect(opts).await?;
    let durable = w.persistent;
    if let (Some(x), true) = (&w.exchange, w.purge) {
        match c.delete_exchange(&x.name, false).await {
            Err(e) if e.code() != Some(ringmq::protocol::ErrorCode::ExchangeNotFound) => {
                return Err(anyhow!("ringmq: deleting exchange {}: {e}", x.name))
            }
            _ => {}
        }
    }
    let mut purged = 0;
    let mut args = ringmq::protocol::field_table::TableBuilder::new();
    for a in &w.queue_args {
        args = args.parse_arg(a).map_err(|e| anyhow!("--queue-arg: {e}"))?;
    }
    let args = args.build();
    for q in &w.queues {
        c.declare_with(q, durable, &args).await.map_err(err)?;
        if w.purge {
            purged += c.purge(q).await.map_err(err)?;
        }
    }
    if let Some(x) = &w.exchange {
        let opts = ExchangeOptions { durable, ..Default::default() };
        c.declare_exchange(&x.name, x.kind.as_str(), opts)
            .await
            .map_err(|e| anyhow!("ringmq: declaring {} exchange {}: {e}", x.kind.as_str(), x.name))?;
        for q in &w.queues {
            let key = x.binding_key(q);
            c.bind_queue(q, &x.name, &key, &[])
                .await
                .map_err(|e| anyhow!("ringmq: binding {q} to {} with key {key:?}: {e}", x.name))?;
        }
    }
    c.close().await;
    Ok(purged)
}

pub struct Producer {
    client: Client,
    producer: ringmq::client::Producer,
    body: Vec<u8>,
    confirm: bool,
    sink: Rc<RefCell<ConfirmSink>>,
    /// Confirmation-waiting tasks still running.
    waiting: Rc<Cell<usize>>,
}

impl Producer {
    pub async fn connect(
        opts: &ClientOptions,
        route: &Route,
        spec: &ClientSpec,
        sink: ConfirmSink,
    ) -> Result<Producer> {
        let client = connect(opts).await?;
        let opts = ProducerOptions {
            batch_max: spec.batch.clamp(1, u32::MAX as usize) as u32,
            linger: Duration::from_micros(200),
            persistent: spec.persistent,
            confirm: spec.confirm,
            // Batches in flight: enough for `max_inflight` messages.
            in_flight_max: spec.max_inflight.div_ceil(spec.batch.max(1)).max(1) as u32,
            mandatory: false,
        };
        let producer = match route {
            Route::Queue(queue) => client.producer(queue, opts).await,
            // The client sends the batches to the shard that owns the queue
            // named like the key; the broker routes them there.
            Route::Exchange { exchange, key } => client.exchange_producer(exchange, key, opts).await,
        }
        .map_err(err)?;
        Ok(Producer {
            client,
            producer,
            body: vec![0; spec.size],
            confirm: spec.confirm,
            sink: Rc::new(RefCell::new(sink)),
            waiting: Rc::new(Cell::new(0)),
        })
    }

    pub async fn publish(&mut self, msgs: &[([u8; HEADER_LEN], u64)]) -> Result<()> {
        let mut confs = Vec::with_capacity(if self.confirm { msgs.len() } else { 0 });
        let mut last = None;
        for (hdr, intended) in msgs {
            self.body[..HEADER_LEN].copy_from_slice(hdr);
            let c = self.producer.publish(&self.body).await.map_err(err)?;
            if self.confirm {
                let seq = crate::header::Header::read(hdr).map_or(0, |h| h.seq);
                confs.push((c, *intended, seq));
            } else {
                last = Some(c);
            }
        }
        self.producer.flush().map_err(err)?;
        // Without confirms the client never makes `publish` wait; waiting
        // until the batch is handed to the socket gives backpressure, so a
        // max-rate run measures the broker, not a growing client buffer.
        if let Some(c) = last {
            c.await.map_err(err)?;
        }
        if !confs.is_empty() {
            let (sink, waiting) = (self.sink.clone(), self.waiting.clone());
            waiting.set(waiting.get() + 1);
            glommio::spawn_local(async move {
                for (c, intended, seq) in confs {
                    let why = c.await.err().map(|e| e.to_string());
                    if let Some(e) = &why {
                        if !NACK_REPORTED.replace(true) {
                            eprintln!("ringmq producer: publish refused: {e}");
                        }
                    }
                    (sink.borrow_mut())(intended, seq, why.as_deref().map_or(Ok(()), Err));
                }
                waiting.set(waiting.get() - 1);
            })
            .detach();
        }
        Ok(())
    }

    pub async fn finish(self, timeout: Duration) -> Result<()> {
        let _ = self.producer.flush();
        let deadline = now_ns() + timeout.as_nanos() as u64;
        while self.waiting.get() > 0 && now_ns() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        if self.waiting.get() > 0 {
            eprintln!("ringmq producer: confirms still outstanding after {timeout:?}");
        }
        drop(self.producer);
        self.client.close().await;
        Ok(())
    }
}

pub struct Consumer {
    client: Client,
    consumer: ringmq::client::Consumer,
}

impl Consumer {
    pub async fn connect(opts: &ClientOptions, queue: &str, spec: &ClientSpec) -> Result<Consumer> {
        let client = connect(opts).await?;
        let consumer = client.subscribe(queue, u32::from(spec.prefetch)).await.map_err(err)?;
        Ok(Consumer { client, consumer })
    }

    /// Consumes until the sink says stop, then cancels; on an error too,
    /// the client is closed, acks first (a close that does not finish in
    /// time drops the client, which shuts its connections: a connection
    /// left open would keep the subscription and its unacked deliveries,
    /// and a `--reconnect` run would strand them).
    pub async fn run(self, sink: &mut impl Sink) -> Result<()> {
        let Consumer { client, mut consumer } = self;
        let r = match deliveries(&mut consumer, sink).await {
            Ok(()) => {
                sink.flush();
                consumer.cancel().await.map_err(err)
            }
            Err(e) => {
                drop(consumer);
                Err(e)
            }
        };
        let closing = async {
            client.close().await;
            true
        };
        let late = async {
            glommio::timer::sleep(CLOSE_WAIT).await;
            false
        };
        if !futures_lite::future::or(closing, late).await {
            eprintln!("ringmq consumer: the connection did not close within {CLOSE_WAIT:?}");
        }
        r
    }
}

/// How long a consumer waits for its connection to close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Reads deliveries and acks each, until the sink says stop (`Ok`) or the
/// subscription fails.
async fn deliveries(consumer: &mut ringmq::client::Consumer, sink: &mut impl Sink) -> Result<()> {
    let mut clock = BatchClock::default();
    loop {
        // Only when nothing is buffered: flush counters, check for the
        // end, and wait with a timeout so the check happens when idle.
        let next = if consumer.buffered() == 0 {
            sink.flush();
            if sink.should_stop(now_ns()) {
                break;
            }
            if let Some(why) = sink.stale(now_ns()) {
                return Err(anyhow!(why));
            }
            let next = async { Some(consumer.next().await) };
            let idle = async {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                None
            };
            clock.new_batch();
            match futures_lite::future::or(next, idle).await {
                Some(n) => n,
                None => continue,
            }
        } else {
            consumer.next().await
        };
        match next {
            Some(Ok(d)) => {
                let n = d.body.len().min(HEADER_LEN);
                sink.deliver(&d.body[..n], clock.now());
                consumer.ack(d.tag);
            }
            Some(Err(e)) => return Err(err(e)),
            None => return Err(anyhow!("ringmq: delivery stream ended")),
        }
    }
    Ok(())
}
