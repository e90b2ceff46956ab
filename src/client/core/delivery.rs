//! What a consumer receives, and how it subscribes.

use crate::protocol::Entry;
use bytes::Bytes;
use std::sync::Arc;

/// Where a delivered message was published: for consumers that asked
/// ([`ConsumerOptions::with_origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `""`: the default exchange (then the routing key is the queue's name).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl Origin {
    /// One per `Deliver` frame, shared by its deliveries.
    pub(crate) fn from_wire(o: &crate::protocol::DeliverOrigin<'_>) -> Arc<Origin> {
        Arc::new(Origin { exchange: o.exchange.to_owned(), routing_key: o.routing_key.to_owned() })
    }
}

/// One message delivered to a consumer (or pulled with `get`). Its
/// `props` and `body` are slices of the bytes read from the socket: no
/// copy per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The consumer it was delivered to: acks go through it.
    pub consumer_id: u32,
    /// Tag to ack; 0 for a `get` with `no_ack`.
    pub tag: u64,
    /// The broker delivered it before and it was not acked then.
    pub redelivered: bool,
    /// The exchange and routing key it was published with, when the
    /// consumer asked ([`ConsumerOptions::with_origin`]); `None` otherwise
    /// (and for `get`).
    pub origin: Option<Arc<Origin>>,
    /// AMQP basic properties as the publisher encoded them
    /// ([`crate::protocol::props`]); empty for none.
    pub props: Bytes,
    /// The message body.
    pub body: Bytes,
}

impl Delivery {
    pub(crate) fn from_entry(
        chunk: &Bytes,
        consumer_id: u32,
        tag: u64,
        e: &Entry<'_>,
        origin: Option<Arc<Origin>>,
    ) -> Self {
        let slice = |p: &[u8]| if p.is_empty() { Bytes::new() } else { chunk.slice_ref(p) };
        Self { consumer_id, tag, redelivered: e.redelivered(), origin, props: slice(e.props), body: slice(e.body) }
    }

    /// The exchange it was published to (`""`: the default exchange), when
    /// the consumer asked ([`ConsumerOptions::with_origin`]).
    pub fn exchange(&self) -> Option<&str> {
        self.origin.as_deref().map(|o| o.exchange.as_str())
    }

    /// The routing key it was published with, when the consumer asked.
    pub fn routing_key(&self) -> Option<&str> {
        self.origin.as_deref().map(|o| o.routing_key.as_str())
    }

    /// The properties parsed (headers, correlation id, reply-to...);
    /// `None` when there are none or they do not parse.
    pub fn properties(&self) -> Option<crate::protocol::props::Props<'_>> {
        if self.props.is_empty() {
            return None;
        }
        crate::protocol::props::Props::parse(&self.props).ok()
    }
}

/// How a consumer subscribes (`subscribe_with` on each client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// The most unacked deliveries the broker sends it (1 to the broker's
    /// `prefetch_max`).
    pub prefetch: u32,
    /// Consumer priority (AMQP's `x-priority`), 0 by default: the queue
    /// delivers to its highest-priority consumers that have credit,
    /// round-robin among equals, and to lower ones only while every
    /// higher one is blocked (prefetch full, or its connection full).
    pub priority: i64,
    /// A stream consumer's start (`StreamSubscribe`, docs/streams.md);
    /// `None`: a plain Subscribe (a stream then reads from `next`).
    pub stream_at: Option<crate::protocol::StreamAt>,
    /// Ask for each delivery's exchange and routing key
    /// ([`Delivery::exchange`], [`Delivery::routing_key`]): the broker
    /// adds them to this consumer's `Deliver` frames (`SUBSCRIBE_ORIGIN`).
    /// Off by default: a consumer that does not ask pays nothing.
    pub origin: bool,
}

impl ConsumerOptions {
    /// `prefetch` unacked deliveries at most, priority 0.
    pub fn new(prefetch: u32) -> Self {
        Self { prefetch, priority: 0, stream_at: None, origin: false }
    }

    /// The same, asking for each delivery's exchange and routing key.
    pub fn with_origin(self) -> Self {
        Self { origin: true, ..self }
    }

    /// The same with a consumer priority.
    pub fn priority(self, priority: i64) -> Self {
        Self { priority, ..self }
    }

    /// Reads a stream from `at` (first, last, next, an offset, a time).
    pub fn stream_at(self, at: crate::protocol::StreamAt) -> Self {
        Self { stream_at: Some(at), ..self }
    }
}
