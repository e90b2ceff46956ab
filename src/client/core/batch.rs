//! A producer's batches: messages gathered into one `Publish` (or
//! `PublishTo`) frame, the options that shape them and the checks on a
//! message before it joins one. The shells add the waiting (the linger
//! timer, the in-flight window) and the confirmations.

use super::super::{ClientError, Result, ServerInfo};
use crate::protocol::{batch::put_entry, op, BatchWriter, Entry};
use bytes::BytesMut;
use std::time::Duration;

/// How a producer batches and what it asks of the broker.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Messages in one Publish frame.
    pub batch_max: u32,
    /// How long the first message of a batch may wait for company.
    pub linger: Duration,
    /// Messages are logged to disk (on a durable queue) before the confirm.
    pub persistent: bool,
    /// Ask the broker to confirm each batch.
    pub confirm: bool,
    /// Batches sent and not yet confirmed before `publish` waits.
    pub in_flight_max: u32,
    /// Through an exchange: a batch that reaches no queue is refused with
    /// `NoRoute` instead of being confirmed.
    pub mandatory: bool,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            batch_max: 256,
            linger: Duration::from_micros(200),
            persistent: false,
            confirm: true,
            in_flight_max: 64,
            mandatory: false,
        }
    }
}

/// Where a producer's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Straight into a queue (`Publish`).
    Queue(String),
    /// Through an exchange, with one routing key for every message (`PublishTo`).
    Exchange {
        /// The exchange's name.
        exchange: String,
        /// The routing key every message of the producer carries.
        routing_key: String,
    },
}

/// Checks a producer's target and options against the broker's limits;
/// returns the bytes of entries that fit one frame.
pub fn entries_bytes_max(target: &Target, opts: &ProducerOptions, info: &ServerInfo) -> Result<usize> {
    if opts.batch_max == 0 || opts.in_flight_max == 0 {
        return Err(ClientError::Invalid("batch_max and in_flight_max must be at least 1".into()));
    }
    match target {
        Target::Queue(queue) if queue.is_empty() || queue.len() > 255 => {
            return Err(ClientError::Invalid(format!("queue name must be 1 to 255 bytes, got {}", queue.len())))
        }
        Target::Exchange { exchange, routing_key } if exchange.len() > 255 || routing_key.len() > 255 => {
            return Err(ClientError::Invalid("exchange and routing key must be at most 255 bytes".into()))
        }
        _ => {}
    }
    // Header, names and count take at most 16 + 2 × 256 + 4 bytes.
    Ok((info.frame_bytes_max as usize).saturating_sub(16 + 2 * 256 + 4))
}

/// Refuses a message the broker would refuse (over `message_bytes_max`,
/// or properties longer than their u16 length).
pub fn check_message(info: &ServerInfo, props: &[u8], body: &[u8]) -> Result<()> {
    let max = info.message_bytes_max as usize;
    if props.len() + body.len() > max || props.len() > usize::from(u16::MAX) {
        return Err(ClientError::Invalid(format!(
            "message of {} bytes exceeds the broker's message_bytes_max {max}",
            props.len() + body.len()
        )));
    }
    Ok(())
}

/// The `Publish` flags of a producer's batches.
pub fn publish_flags(opts: &ProducerOptions, target: &Target) -> u8 {
    let mut flags = 0;
    if opts.persistent {
        flags |= op::PUBLISH_PERSISTENT;
    }
    if opts.confirm {
        flags |= op::PUBLISH_CONFIRM;
    }
    if opts.mandatory && matches!(target, Target::Exchange { .. }) {
        flags |= op::PUBLISH_MANDATORY;
    }
    flags
}

/// The batch being filled: its entries already encoded, so sending it is
/// one copy into the socket's buffer.
#[derive(Debug)]
pub struct Batch {
    /// Counts up per producer: messages of one batch are confirmed or
    /// refused together.
    pub id: u64,
    entries: BytesMut,
    count: u32,
}

impl Batch {
    /// An empty batch numbered `id`.
    pub fn new(id: u64) -> Self {
        Self { id, entries: BytesMut::new(), count: 0 }
    }

    /// Messages in it.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether a message of `props` and `body` still fits a frame of
    /// `entries_bytes_max` with this batch.
    #[inline]
    pub fn fits(&self, props: &[u8], body: &[u8], entries_bytes_max: usize) -> bool {
        self.entries.len() + Entry::wire_len(props.len(), body.len()) <= entries_bytes_max
    }

    /// Adds a message; returns the count after it.
    #[inline]
    pub fn push(&mut self, props: &[u8], body: &[u8]) -> u32 {
        put_entry(&mut self.entries, 0, props, body);
        self.count += 1;
        self.count
    }

    /// Takes this batch, leaving the next one (id + 1) in its place.
    pub fn take(&mut self) -> Batch {
        std::mem::replace(self, Batch::new(self.id + 1))
    }

    /// The batch as one frame of request `rid`.
    pub fn encode(&self, b: &mut BytesMut, rid: u64, flags: u8, target: &Target) {
        let mut w = match target {
            Target::Queue(queue) => BatchWriter::begin_publish(b, rid, flags, queue),
            Target::Exchange { exchange, routing_key } => {
                BatchWriter::begin_publish_to(b, rid, flags, exchange, routing_key)
            }
        };
        w.push_raw(b, &self.entries, self.count);
        w.finish(b);
    }
}
