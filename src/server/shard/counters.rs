//! The shard's counters: plain cells on the shard's own thread, bumped
//! once per batch, dispatch pass, request or connection (never with an
//! atomic, a lock or a clock read), and summed over the shards when an
//! operator reads them (`admin.rs`, `server::stats`).

use super::Shard;
use std::cell::Cell;

/// Per-shard counters: plain cells, summed across shards when read.
#[derive(Default)]
pub struct Counters {
    pub published: Cell<u64>,
    pub delivered: Cell<u64>,
    pub acked: Cell<u64>,
    pub redelivered: Cell<u64>,
    pub confirmed: Cell<u64>,
    /// Dead-lettered messages handed to their exchange, and the ones
    /// dropped instead (cycle, unknown exchange, unmarkable properties).
    pub dead_lettered: Cell<u64>,
    pub dead_lettered_dropped: Cell<u64>,
    /// Publish handled to confirm sent (`ringmq_publish_confirm_latency_seconds`).
    pub confirm_latency: crate::server::stats::LatencyHistogram,
    /// Logins refused (`ringmq_auth_failures_total`), and logins let in
    /// (`ringmq_auth_successes_total`): per login, never per message.
    pub auth_failures: Cell<u64>,
    pub auth_successes: Cell<u64>,
    /// Messages a queue removed without an ack, by reason (expired, over
    /// a length limit, rejected), split by whether the queue has a
    /// dead-letter exchange (RabbitMQ's `at_most_once` strategy) or not
    /// (`disabled`, dropped): `[reason][has_dlx]`, per message removed.
    pub dead_by_reason: [[Cell<u64>; 2]; 3],
    /// TLS handshakes that failed or timed out
    /// (`ringmq_tls_handshake_failures_total`).
    pub tls_handshake_failures: Cell<u64>,
    /// Queue declares (passive and existing ones too), queues created by
    /// them, and queues deleted (by a client, auto-delete, exclusive
    /// owner gone, `x-expires`, vhost deleted): per declare or delete,
    /// never per message.
    pub queues_declared: Cell<u64>,
    pub queues_created: Cell<u64>,
    pub queues_deleted: Cell<u64>,
    /// Of `delivered`: pushed to auto-ack (AMQP no-ack) consumers, and
    /// taken by gets with and without acks; the rest went to consumers
    /// that ack. Counted per dispatch pass or per get.
    pub delivered_consume_auto_ack: Cell<u64>,
    pub delivered_get_auto_ack: Cell<u64>,
    pub delivered_get_manual_ack: Cell<u64>,
    /// Gets that found the queue empty.
    pub get_empty: Cell<u64>,
    /// Messages received from publishers (native and AMQP), counted by
    /// the front end per publish batch on the connection's shard; of
    /// them, those published in confirm mode.
    pub received: Cell<u64>,
    pub received_confirm: Cell<u64>,
    /// Client messages routed to at least one queue, and the unroutable
    /// ones dropped or returned (mandatory): counted where the route is
    /// decided, per batch (`routing_replica.rs` for exchanges, the
    /// queue's owner for a queue named directly).
    pub routed: Cell<u64>,
    pub unroutable_dropped: Cell<u64>,
    pub unroutable_returned: Cell<u64>,
    /// AMQP channels opened (`rabbitmq_channels_opened_total`); the ones
    /// closed are these less the ones open now.
    pub channels_opened: Cell<u64>,
}

pub(crate) fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

impl Shard {
    /// Counts `count` client messages that reached no queue: returned to
    /// a mandatory publisher, dropped otherwise (`None`: not a client's).
    pub(crate) fn count_unroutable(&self, mandatory: Option<bool>, count: u64) {
        match mandatory {
            Some(true) => bump(&self.counters.unroutable_returned, count),
            Some(false) => bump(&self.counters.unroutable_dropped, count),
            None => {}
        }
    }

    /// Counts a publish batch a client sent (`received`, and
    /// `received_confirm` in confirm mode): one call per batch.
    #[inline]
    pub fn count_received(&self, count: u64, confirm: bool) {
        bump(&self.counters.received, count);
        if confirm {
            bump(&self.counters.received_confirm, count);
        }
    }
}
