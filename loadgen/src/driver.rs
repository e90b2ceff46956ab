//! The protocol drivers behind one interface: AMQP 0-9-1 and (with the
//! `native` feature) ringmq's own protocol.

use crate::amqp::{self, AmqpUrl, ConfirmSink, Sink};
use crate::header::HEADER_LEN;
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
    #[cfg(feature = "native")]
    Native(String),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        if url.starts_with("amqp://") {
            return Ok(Target::Amqp(AmqpUrl::parse(url)?));
        }
        if url.starts_with("ringmq://") {
            #[cfg(feature = "native")]
            return Ok(Target::Native(url.to_string()));
            #[cfg(not(feature = "native"))]
            bail!(
                "ringmq:// needs the native driver: rebuild with `--features native` \
                 (it is off until the ringmq client library's async API is complete)"
            );
        }
        bail!("unsupported URL {url}: use amqp://USER:PASS@HOST:PORT/VHOST or ringmq://HOST:PORT")
    }

    /// Declares every queue (durable if `durable`) and, if asked, purges it.
    pub async fn setup(&self, queues: &[String], durable: bool, purge: bool) -> Result<u64> {
        match self {
            Target::Amqp(url) => {
                let mut c = amqp::Connection::open(url).await?;
                let mut purged = 0;
                for q in queues {
                    c.declare(q, durable).await?;
                    if purge {
                        purged += c.purge(q).await? as u64;
                    }
                }
                c.close().await?;
                Ok(purged)
            }
            #[cfg(feature = "native")]
            Target::Native(url) => crate::native::setup(url, queues, durable, purge).await,
        }
    }

    pub async fn producer(&self, queue: &str, spec: &ClientSpec, sink: ConfirmSink) -> Result<Producer> {
        match self {
            Target::Amqp(url) => {
                let c = amqp::Connection::open(url).await?;
                let sink = spec.confirm.then_some(sink);
                Ok(Producer::Amqp(c.into_producer(queue, spec.size, spec.persistent, sink, spec.max_inflight).await?))
            }
            #[cfg(feature = "native")]
            Target::Native(url) => {
                Ok(Producer::Native(Box::new(crate::native::Producer::connect(url, queue, spec, sink).await?)))
            }
        }
    }

    pub async fn consumer(&self, queue: &str, spec: &ClientSpec) -> Result<Consumer> {
        match self {
            Target::Amqp(url) => {
                let c = amqp::Connection::open(url).await?;
                Ok(Consumer::Amqp(c.into_consumer(queue, spec.prefetch, spec.ack_every).await?))
            }
            #[cfg(feature = "native")]
            Target::Native(url) => Ok(Consumer::Native(crate::native::Consumer::connect(url, queue, spec).await?)),
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

pub enum Consumer {
    Amqp(amqp::Consumer),
    #[cfg(feature = "native")]
    Native(crate::native::Consumer),
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
