//! The protocol drivers behind one interface: AMQP 0-9-1 and (with the
//! `native` feature) ringmq's own protocol.

use crate::amqp::{self, AmqpUrl, ConfirmSink, Sink};
use crate::header::HEADER_LEN;
use crate::workload::{Route, TlsFlags, Workload};
use anyhow::{bail, Result};
use std::time::Duration;

/// What a producer or consumer connection needs to know.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub size: usize,
    pub persistent: bool,
    pub confirm: bool,
    #[cfg_attr(not(feature = "native"), allow(dead_code))]
    pub batch: usize,
    pub max_inflight: usize,
    pub prefetch: u16,
    pub ack_every: u64,
}

#[derive(Clone, Debug)]
pub enum Target {
    Amqp(AmqpUrl),
    /// The client's options: the URL, and TLS files for `ringmqs://`.
    #[cfg(feature = "native")]
    Native(Box<ringmq::client::ClientOptions>),
}

impl Target {
    /// `tls`: the `--tls-*` files, for `amqps://` (where the URL's
    /// `cacertfile` etc. win) and `ringmqs://`.
    pub fn parse(url: &str, tls: &TlsFlags) -> Result<Target> {
        if url.starts_with("amqp://") || url.starts_with("amqps://") {
            let u = AmqpUrl::parse(url)?.with_tls_defaults(tls.ca.as_ref(), tls.cert.as_ref(), tls.key.as_ref())?;
            return Ok(Target::Amqp(u));
        }
        if url.starts_with("ringmq://") || url.starts_with("ringmqs://") {
            #[cfg(feature = "native")]
            {
                let opts = ringmq::client::ClientOptions {
                    url: url.to_string(),
                    tls_ca_file: tls.ca.clone(),
                    tls_cert_file: tls.cert.clone(),
                    tls_key_file: tls.key.clone(),
                    ..Default::default()
                };
                // Bad files, or files for a plain URL, fail here, once.
                ringmq::client::tls::Tls::for_options(&opts)?;
                return Ok(Target::Native(Box::new(opts)));
            }
            #[cfg(not(feature = "native"))]
            bail!(
                "ringmq:// needs the native driver: rebuild with `--features native` \
                 (it is off until the ringmq client library's async API is complete)"
            );
        }
        bail!("unsupported URL {url}: use amqp[s]://USER:PASS@HOST:PORT/VHOST or ringmq[s]://HOST:PORT")
    }

    /// Declares every queue (durable with `--persistent`) and, unless
    /// `--no-purge`, purges it; returns the messages purged. With
    /// `--exchange`, then declares the exchange (durable with
    /// `--persistent`) and binds every queue to it. Unless `--no-purge`,
    /// an exchange of that name is deleted first, so bindings left by an
    /// earlier run (to queues this run does not consume) go with it.
    pub async fn setup(&self, w: &Workload) -> Result<u64> {
        let durable = w.persistent;
        match self {
            Target::Amqp(url) => {
                if let (Some(x), true) = (&w.exchange, w.purge) {
                    // Deleting a missing exchange closes the channel on
                    // some brokers: on a connection of its own.
                    amqp::Connection::open(url).await?.delete_exchange(&x.name).await;
                }
                let mut c = amqp::Connection::open(url).await?;
                let mut purged = 0;
                for q in &w.queues {
                    c.declare(q, durable).await?;
                    if w.purge {
                        purged += c.purge(q).await? as u64;
                    }
                }
                if let Some(x) = &w.exchange {
                    c.declare_exchange(&x.name, x.kind.as_str(), durable).await?;
                    for q in &w.queues {
                        c.bind(q, &x.name, &x.binding_key(q)).await?;
                    }
                }
                c.close().await?;
                Ok(purged)
            }
            #[cfg(feature = "native")]
            Target::Native(opts) => crate::native::setup(opts, w).await,
        }
    }

    pub async fn producer(&self, route: &Route, spec: &ClientSpec, sink: ConfirmSink) -> Result<Producer> {
        match self {
            Target::Amqp(url) => {
                let c = amqp::Connection::open(url).await?;
                let sink = spec.confirm.then_some(sink);
                let (exchange, key) = match route {
                    Route::Queue(q) => ("", q.as_str()),
                    Route::Exchange { exchange, key } => (exchange.as_str(), key.as_str()),
                };
                let p = c.into_producer(exchange, key, spec.size, spec.persistent, sink, spec.max_inflight).await?;
                Ok(Producer::Amqp(p))
            }
            #[cfg(feature = "native")]
            Target::Native(opts) => {
                Ok(Producer::Native(Box::new(crate::native::Producer::connect(opts, route, spec, sink).await?)))
            }
        }
    }

    pub async fn consumer(&self, queue: &str, spec: &ClientSpec) -> Result<Consumer> {
        match self {
            Target::Amqp(url) => {
                let c = amqp::Connection::open(url).await?;
                Ok(Consumer::Amqp(Box::new(c.into_consumer(queue, spec.prefetch, spec.ack_every).await?)))
            }
            #[cfg(feature = "native")]
            Target::Native(opts) => {
                Ok(Consumer::Native(Box::new(crate::native::Consumer::connect(opts, queue, spec).await?)))
            }
        }
    }
}

pub enum Producer {
    Amqp(amqp::Producer),
    #[cfg(feature = "native")]
    Native(Box<crate::native::Producer>),
}

impl Producer {
    /// Publishes `(header, intended send time)` messages, padded to the size.
    pub async fn publish(&mut self, msgs: &[([u8; HEADER_LEN], u64)]) -> Result<()> {
        match self {
            Producer::Amqp(p) => p.publish(msgs).await,
            #[cfg(feature = "native")]
            Producer::Native(p) => p.publish(msgs).await,
        }
    }

    /// Waits up to `timeout` for outstanding confirms, then disconnects.
    pub async fn finish(self, timeout: Duration) -> Result<()> {
        match self {
            Producer::Amqp(p) => p.finish(timeout).await,
            #[cfg(feature = "native")]
            Producer::Native(p) => p.finish(timeout).await,
        }
    }
}

/// Boxed: the two differ in size by more than a consumer's run is worth
/// keeping on the stack.
pub enum Consumer {
    Amqp(Box<amqp::Consumer>),
    #[cfg(feature = "native")]
    Native(Box<crate::native::Consumer>),
}

impl Consumer {
    /// Consumes until `sink.should_stop()`, then disconnects.
    pub async fn run(self, sink: &mut impl Sink) -> Result<()> {
        match self {
            Consumer::Amqp(c) => c.run(sink).await,
            #[cfg(feature = "native")]
            Consumer::Native(c) => c.run(sink).await,
        }
    }
}
