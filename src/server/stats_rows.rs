//! The rows of an operator's snapshot: a queue, a consumer, a channel, a
//! connection, as a shard reports them (`server::stats` re-exports them).

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    pub name: String,
    pub shard: u16,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
    pub ready_bytes: u64,
    /// Entry bytes of the unacked messages (always in memory); persistent
    /// messages (ready and unacked) and their bytes; ready messages on
    /// disk only (spilled) and their bytes. RabbitMQ's `messages_ram*`
    /// and `messages_paged_out*` follow from these.
    pub unacked_bytes: u64,
    pub persistent: u64,
    pub persistent_bytes: u64,
    pub spilled: u64,
    pub spilled_bytes: u64,
    /// The head message's `timestamp` property, seconds; 0: none.
    pub head_timestamp: u64,
    /// Totals since the queue was created on this run of its shard.
    pub published: u64,
    pub delivered: u64,
    /// The declare's arguments (a field table, no length prefix): what
    /// the definitions export and `/api/queues` show.
    #[serde(skip)]
    pub args: bytes::Bytes,
}

/// One push consumer, as `ctl list-consumers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStats {
    /// The queue's qualified name (vhost and name).
    pub queue: String,
    pub shard: u16,
    /// Its connection, `shard:conn_id` as `list-connections` names it.
    pub connection: String,
    pub consumer_id: u32,
    /// 0: no limit.
    pub prefetch: u32,
    pub unacked: u32,
    pub priority: i64,
    pub exclusive: bool,
}

/// One AMQP channel, as `/api/channels` shows it (RabbitMQ's fields).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelRow {
    pub number: u16,
    /// basic.qos: the per-consumer prefetch (`prefetch_count`) and the
    /// channel-wide one (`global_prefetch_count`); 0 is no limit.
    pub prefetch_count: u16,
    pub global_prefetch_count: u16,
    /// Deliveries on the channel not acked yet.
    pub messages_unacknowledged: u32,
    /// Messages published on it so far.
    pub published: u64,
    /// Publishes waiting for their confirm.
    pub messages_unconfirmed: u64,
    /// Its consumers (push, not cancelled).
    pub consumer_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    /// In a transaction: publishes and acks held until tx.commit.
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    /// channel.flow from the client (false: deliveries stopped).
    pub flow: bool,
    /// `running`, or `closing` after a channel.close.
    pub state: &'static str,
}

/// A shard's channels: with their connection's name, user, vhost, peer.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    /// `shard:conn_id` (as `ConnStats::name`).
    pub connection: String,
    pub user: String,
    pub vhost: String,
    pub peer: String,
    #[serde(flatten)]
    pub row: ChannelRow,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnStats {
    /// `shard:conn_id`: what `close-connection` and the HTTP API take.
    pub name: String,
    pub shard: u16,
    pub protocol: &'static str,
    pub peer: String,
    /// The vhost it works in (`/` before login).
    pub vhost: String,
    /// Bytes held for its socket, queued and being written (bounded by
    /// `outbox_bytes_max` plus one dispatch, see `server/gate.rs`).
    pub outbox_bytes: u64,
    /// Its open channels (AMQP; 0 for the native protocol, which has none).
    pub channels: u64,
    /// Bytes received from the peer and the reads that took them, bytes
    /// sent and the writes (RabbitMQ's `recv_oct`, `recv_cnt`, `send_oct`,
    /// `send_cnt`).
    pub recv_oct: u64,
    pub recv_cnt: u64,
    pub send_oct: u64,
    pub send_cnt: u64,
    /// Its channels (metrics only; `/api/channels` lists them itself).
    #[serde(skip)]
    pub channel_rows: Vec<ChannelRow>,
    /// It publishes: a native connection that has, or as many of its AMQP
    /// channels as have (RabbitMQ's `publishers`).
    pub publishers: u64,
}
