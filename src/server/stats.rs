//! What a shard reports about itself to an operator: a snapshot taken on
//! the shard's own thread (plain reads of its cells and queues), sent over
//! the mesh to the shard serving the request, and summed there. Nothing
//! here is touched on the hot path except [`LatencyHistogram::observe`],
//! a handful of `Cell` writes per confirm.

use serde::Serialize;
use std::cell::Cell;
use std::time::Duration;

/// Upper bounds (seconds) of the publish-to-confirm histogram buckets.
pub const CONFIRM_BUCKETS_SECONDS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A fixed-bucket latency histogram, one per shard, no atomics.
#[derive(Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last one is `+Inf`.
    buckets: [Cell<u64>; CONFIRM_BUCKETS_SECONDS.len() + 1],
    sum_nanos: Cell<u64>,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration, count: u64) {
        let s = d.as_secs_f64();
        let i = CONFIRM_BUCKETS_SECONDS.iter().position(|b| s <= *b).unwrap_or(CONFIRM_BUCKETS_SECONDS.len());
        self.buckets[i].set(self.buckets[i].get() + count);
        let nanos = crate::protocol::wire::u64_of(d.as_nanos()).saturating_mul(count);
        self.sum_nanos.set(self.sum_nanos.get().saturating_add(nanos));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot { buckets: self.buckets.iter().map(Cell::get).collect(), sum_nanos: self.sum_nanos.get() }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistogramSnapshot {
    /// Non-cumulative, one per bound in `CONFIRM_BUCKETS_SECONDS` plus `+Inf`.
    pub buckets: Vec<u64>,
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    pub fn add(&mut self, o: &HistogramSnapshot) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.sum_nanos += o.sum_nanos;
    }
}

pub use super::stats_rows::{ChannelRow, ChannelStats, ConnStats, ConsumerStats, QueueStats};

/// One shard's report. Counters are totals since the shard started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardStats {
    pub shard: u16,
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub redelivered: u64,
    pub confirmed: u64,
    pub dead_lettered: u64,
    pub dead_lettered_dropped: u64,
    pub auth_failures: u64,
    pub auth_successes: u64,
    /// Messages removed without an ack: `[expired, maxlen, rejected]` by
    /// `[no dead-letter exchange, one]` (`deadletter::Reason::index`).
    pub dead_by_reason: [[u64; 2]; 3],
    pub tls_handshake_failures: u64,
    /// Queue declares, queues created and deleted; client connections
    /// accepted (`connections` of them are open now).
    pub queues_declared: u64,
    pub queues_created: u64,
    pub queues_deleted: u64,
    pub connections_opened: u64,
    /// Of `delivered`: to auto-ack consumers, and by gets with and
    /// without acks (the rest went to consumers that ack); gets that
    /// found nothing.
    pub delivered_consume_auto_ack: u64,
    pub delivered_get_auto_ack: u64,
    pub delivered_get_manual_ack: u64,
    pub get_empty: u64,
    /// Messages received from publishers (of them in confirm mode),
    /// routed to a queue, and unroutable (dropped or returned).
    pub received: u64,
    pub received_confirm: u64,
    pub routed: u64,
    pub unroutable_dropped: u64,
    pub unroutable_returned: u64,
    /// AMQP channels opened, ever (`channels` of them are open now).
    pub channels_opened: u64,
    /// HTTP connections open now (not in `connections`).
    pub http_connections: u64,
    /// The most client sockets the shard holds at once:
    /// `connections_per_shard_max` logged in plus
    /// `unauthenticated_connections_max` (HTTP ones among them).
    pub sockets_max: u64,
    pub forwarded: u64,
    /// Requests sent to other nodes' shards, and taken from them, over
    /// data links (`server::remote`); the data links up now, both ways.
    pub node_forwarded: u64,
    pub node_served: u64,
    pub data_links: u64,
    pub queue_count: u64,
    pub messages_ready: u64,
    pub messages_unacked: u64,
    /// Bytes of the ready messages in all its queues.
    pub ready_bytes: u64,
    /// Of all its queues (as `QueueStats`): unacked bytes, persistent
    /// messages and bytes, spilled bytes.
    pub unacked_bytes: u64,
    pub persistent: u64,
    pub persistent_bytes: u64,
    pub spilled_bytes: u64,
    /// The oldest `timestamp` property among its queues' head messages
    /// (seconds; 0: none has one).
    pub head_timestamp_min: u64,
    pub consumers: u64,
    pub connections: u64,
    /// Open AMQP channels of its connections.
    pub channels: u64,
    pub fsyncs: u64,
    pub fsync_nanos: u64,
    /// The log's reads (spilled messages, compaction) and writes.
    pub io: crate::storage::io_stats::IoTotals,
    /// Dead log segments reused as new ones (instead of deleted).
    pub segments_reused: u64,
    pub disk_bytes: u64,
    /// Bytes of ready entries held in memory (against `memory_budget_bytes`).
    pub resident_bytes: u64,
    /// Ready messages whose entry is on disk only.
    pub messages_spilled: u64,
    /// Bytes counted against the memory alarm (`shard/alarm.rs`).
    pub accounted_bytes: u64,
    /// Connections blocked by a resource alarm right now.
    pub blocked_connections: u64,
    pub confirm_latency: HistogramSnapshot,
    /// Per task queue: scheduling delay and run lengths (`server::sched`).
    pub sched: Vec<super::sched::QueueSchedSnapshot>,
    /// Filled only when the request asked for per-object detail.
    pub queues: Vec<QueueStats>,
    pub conns: Vec<ConnStats>,
}

/// How connections are counted per protocol (label values).
pub const PROTOCOLS: [&str; 2] = ["native", "amqp"];

/// `/metrics` leaves out per-queue series when the broker holds more
/// queues than this; `/metrics/per-object` always has them.
pub const PER_QUEUE_SERIES_MAX: u64 = 100;

/// Appends a label value, escaped (`\\`, `\"`, `\n`); most names need
/// none, and those are copied as they are.
pub(crate) fn push_escaped(o: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        o.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
}

/// The Prometheus text exposition (format 0.0.4) of every shard's totals:
/// everything but the per-queue series ([`PER_QUEUE_SERIES`]), which the
/// HTTP shard appends in slices.
pub fn prometheus_totals(shards: &[ShardStats]) -> String {
    let mut o = String::with_capacity(4096);
    // Series in the order scrapers have always seen them.
    message_counters(&mut o, shards);
    storage_and_memory_series(&mut o, shards);
    connection_gauges(&mut o, shards);
    queue_gauges(&mut o, shards);
    lifecycle_counters(&mut o, shards);
    confirm_latency_histogram(&mut o, shards);
    super::sched::prometheus(&mut o, shards);
    o
}

/// The sum of one counter over every shard.
fn total(shards: &[ShardStats], f: fn(&ShardStats) -> u64) -> u64 {
    shards.iter().map(f).sum::<u64>()
}

/// Messages through the queues, and requests across the mesh.
fn message_counters(o: &mut String, shards: &[ShardStats]) {
    let sum = |f| total(shards, f);
    counter(o, "ringmq_messages_published_total", "Messages published into queues.", sum(|s| s.published));
    counter(
        o,
        "ringmq_messages_delivered_total",
        "Messages delivered to consumers (push and get).",
        sum(|s| s.delivered),
    );
    counter(
        o,
        "ringmq_messages_acked_total",
        "Messages acknowledged by consumers (an auto-ack consumer's are not counted).",
        sum(|s| s.acked),
    );
    counter(
        o,
        "ringmq_messages_redelivered_total",
        "Messages requeued for redelivery after their consumer's connection closed.",
        sum(|s| s.redelivered),
    );
    counter(o, "ringmq_messages_confirmed_total", "Published messages confirmed to publishers.", sum(|s| s.confirmed));
    counter(
        o,
        "ringmq_messages_dead_lettered_total",
        "Messages dead-lettered (expired, over a length limit, rejected) and republished to their dead-letter exchange.",
        sum(|s| s.dead_lettered),
    );
    counter(
        o,
        "ringmq_messages_dead_lettered_dropped_total",
        "Dead-lettered messages dropped instead: a dead-letter cycle without a rejection, an unknown dead-letter exchange, or properties that cannot carry x-death.",
        sum(|s| s.dead_lettered_dropped),
    );
    counter(
        o,
        "ringmq_auth_failures_total",
        "Logins refused, on every listener: a bad user name or password, or a loopback-only user from elsewhere.",
        sum(|s| s.auth_failures),
    );
    counter(
        o,
        "ringmq_tls_handshake_failures_total",
        "TLS handshakes that failed (a wrong or expired certificate, a client that is not TLS) or did not finish within handshake_timeout_ms.",
        sum(|s| s.tls_handshake_failures),
    );
    counter(
        o,
        "ringmq_forwarded_requests_total",
        "Requests and replies sent from one shard to another over the mesh.",
        sum(|s| s.forwarded),
    );
    counter(
        o,
        "ringmq_cluster_forwarded_requests_total",
        "Requests sent to another node's shard over a data link (a queue that lives there).",
        sum(|s| s.node_forwarded),
    );
    counter(
        o,
        "ringmq_cluster_served_requests_total",
        "Requests taken from other nodes' shards over data links (for queues of this node).",
        sum(|s| s.node_served),
    );
    gauge_header(o, "ringmq_cluster_data_links", "Data links to and from other nodes' shards, up now.");
    o.push_str(&format!("ringmq_cluster_data_links {}\n", sum(|s| s.data_links)));
}

/// The storage logs (fsyncs, segments, bytes on disk) and the memory
/// budget (entries held in memory, messages spilled past it).
fn storage_and_memory_series(o: &mut String, shards: &[ShardStats]) {
    use std::fmt::Write;
    let sum = |f| total(shards, f);
    counter(o, "ringmq_storage_fsyncs_total", "fdatasync calls on the storage logs.", sum(|s| s.fsyncs));
    counter_f(o, "ringmq_storage_fsync_seconds_total", "Time spent in fdatasync.", sum(|s| s.fsync_nanos) as f64 / 1e9);
    counter(
        o,
        "ringmq_storage_segments_reused_total",
        "Dead log segments reused as new segments instead of deleted.",
        sum(|s| s.segments_reused),
    );
    gauge_header(o, "ringmq_storage_disk_bytes", "Bytes of storage log segments on disk.");
    let _ = writeln!(o, "ringmq_storage_disk_bytes {}", sum(|s| s.disk_bytes));
    gauge_header(o, "ringmq_memory_ready_bytes", "Bytes of ready message entries held in memory, per shard.");
    for s in shards {
        let _ = writeln!(o, "ringmq_memory_ready_bytes{{shard=\"{}\"}} {}", s.shard, s.resident_bytes);
    }
    gauge_header(o, "ringmq_messages_spilled", "Ready messages whose entry is on disk only (past the memory budget).");
    let _ = writeln!(o, "ringmq_messages_spilled {}", sum(|s| s.messages_spilled));
}

/// Client connections by protocol, and the bytes held for their sockets.
fn connection_gauges(o: &mut String, shards: &[ShardStats]) {
    use std::fmt::Write;
    let conns = || shards.iter().flat_map(|s| &s.conns);
    gauge_header(o, "ringmq_connections", "Open client connections, by protocol.");
    for p in PROTOCOLS {
        let n: u64 = conns().filter(|c| c.protocol == p).count() as u64;
        let _ = writeln!(o, "ringmq_connections{{protocol=\"{p}\"}} {n}");
    }
    gauge_header(o, "ringmq_outbox_bytes", "Bytes held for client sockets (queued and being written).");
    let _ = writeln!(o, "ringmq_outbox_bytes {}", conns().map(|c| c.outbox_bytes).sum::<u64>());
    gauge_header(o, "ringmq_outbox_bytes_largest", "Bytes held for the one client socket holding most.");
    let largest = conns().map(|c| c.outbox_bytes).max().unwrap_or(0);
    let _ = writeln!(o, "ringmq_outbox_bytes_largest {largest}");
}

/// Queues (in all, and per owning shard) and the messages they hold.
fn queue_gauges(o: &mut String, shards: &[ShardStats]) {
    use std::fmt::Write;
    let sum = |f| total(shards, f);
    gauge_header(o, "ringmq_queues", "Queues.");
    let _ = writeln!(o, "ringmq_queues {}", sum(|s| s.queue_count));
    gauge_header(o, "ringmq_shard_queues", "Queues owned by each shard.");
    for s in shards {
        let _ = writeln!(o, "ringmq_shard_queues{{shard=\"{}\"}} {}", s.shard, s.queue_count);
    }
    gauge_header(o, "ringmq_messages_ready", "Ready messages in all queues.");
    let _ = writeln!(o, "ringmq_messages_ready {}", sum(|s| s.messages_ready));
    gauge_header(o, "ringmq_messages_unacked", "Delivered, unacknowledged messages in all queues.");
    let _ = writeln!(o, "ringmq_messages_unacked {}", sum(|s| s.messages_unacked));
}

/// Queues and client connections opened and closed (counted per declare,
/// delete and accept; derived where they can be).
fn lifecycle_counters(o: &mut String, shards: &[ShardStats]) {
    let sum = |f| total(shards, f);
    counter(
        o,
        "ringmq_queues_declared_total",
        "Queue declares, passive and of existing queues too.",
        sum(|s| s.queues_declared),
    );
    counter(o, "ringmq_queues_created_total", "Queues created by a declare.", sum(|s| s.queues_created));
    counter(
        o,
        "ringmq_queues_deleted_total",
        "Queues deleted: by a client, auto-delete, their exclusive owner closing, x-expires, their vhost deleted.",
        sum(|s| s.queues_deleted),
    );
    counter(
        o,
        "ringmq_connections_opened_total",
        "Client connections accepted (native and AMQP).",
        sum(|s| s.connections_opened),
    );
    counter(
        o,
        "ringmq_connections_closed_total",
        "Client connections closed (native and AMQP).",
        sum(|s| s.connections_opened.saturating_sub(s.connections)),
    );
}

/// Publish-to-confirm latency: every shard's histogram added up, as
/// cumulative buckets.
fn confirm_latency_histogram(o: &mut String, shards: &[ShardStats]) {
    use std::fmt::Write;
    let mut h = HistogramSnapshot::default();
    for s in shards {
        h.add(&s.confirm_latency);
    }
    let name = "ringmq_publish_confirm_latency_seconds";
    let _ = write!(
        o,
        "# HELP {name} Time from a publish being handled to its confirm going out (the log flush for durable messages).\n# TYPE {name} histogram\n"
    );
    let mut acc = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        acc += n;
        let le = CONFIRM_BUCKETS_SECONDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {acc}");
    }
    let _ = writeln!(o, "{name}_sum {}", h.sum_nanos as f64 / 1e9);
    let _ = writeln!(o, "{name}_count {acc}");
}

/// The resource alarm series: the monitor's last readings and the
/// connections each shard holds blocked.
pub fn prometheus_alarms(a: &super::alarm::AlarmSnapshot, shards: &[ShardStats]) -> String {
    use std::fmt::Write;
    let mut o = String::with_capacity(1024);
    gauge_header(
        &mut o,
        "ringmq_alarm",
        "Resource alarms in effect (1) or not (0); while one is, connections that publish are blocked.",
    );
    let _ = writeln!(o, "ringmq_alarm{{kind=\"memory\"}} {}", u8::from(a.memory_alarm));
    let _ = writeln!(o, "ringmq_alarm{{kind=\"disk\"}} {}", u8::from(a.disk_alarm));
    let gauges: [(&str, &str, u64); 6] = [
        (
            "ringmq_memory_accounted_bytes",
            "Memory the alarm counts: ready and unacked messages in memory and connection buffers, all shards.",
            a.memory_accounted_bytes,
        ),
        ("ringmq_memory_high_watermark_bytes", "The memory alarm's threshold.", a.memory_high_watermark_bytes),
        ("ringmq_process_resident_memory_bytes", "Resident set of the broker process (statm).", a.rss_bytes),
        ("ringmq_disk_free_bytes", "Free bytes on the data directory's filesystem (statvfs).", a.disk_free_bytes),
        ("ringmq_disk_free_limit_bytes", "The disk alarm's threshold.", a.disk_free_limit_bytes),
        (
            "ringmq_connections_blocked",
            "Connections not read because a resource alarm is in effect.",
            shards.iter().map(|s| s.blocked_connections).sum(),
        ),
    ];
    for (name, help, v) in gauges {
        gauge_header(&mut o, name, help);
        let _ = writeln!(o, "{name} {v}");
    }
    o
}

/// The per-queue series of `/metrics/per-object`: name, help, type, value.
/// The counters are kept by each queue anyway (`Queue::published_total`,
/// `delivered_total`); the scrape reads them, the hot path adds nothing.
pub const PER_QUEUE_SERIES: [PerQueue; 5] = [
    ("ringmq_queue_messages_ready", "Ready messages, per queue.", "gauge", |q| q.ready),
    ("ringmq_queue_messages_unacked", "Delivered, unacknowledged messages, per queue.", "gauge", |q| q.unacked),
    ("ringmq_queue_consumers", "Consumers, per queue.", "gauge", |q| q.consumers),
    (
        "ringmq_queue_messages_published_total",
        "Messages published into the queue since it was created on this run of its shard.",
        "counter",
        |q| q.published,
    ),
    (
        "ringmq_queue_messages_delivered_total",
        "Messages delivered from the queue (push and get) since it was created on this run of its shard.",
        "counter",
        |q| q.delivered,
    ),
];

/// The `# HELP` and `# TYPE` lines of a per-queue series.
pub fn per_queue_header(o: &mut String, series: &PerQueue) {
    o.push_str(&format!("# HELP {0} {1}\n# TYPE {0} {2}\n", series.0, series.1, series.2));
}

/// One sample of a per-queue series.
pub fn per_queue_sample(o: &mut String, series: &PerQueue, q: &QueueStats) {
    use std::fmt::Write;
    let v = (series.3)(q);
    // A queue whose head has no timestamp has no sample, as in RabbitMQ.
    if v == 0 && series.0 == super::stats_rabbit_detail::HEAD_TIMESTAMP.0 {
        return;
    }
    o.push_str(series.0);
    let (vhost, name) = crate::protocol::vhost::split(&q.name);
    o.push_str("{queue=\"");
    push_escaped(o, name);
    o.push_str("\",vhost=\"");
    push_escaped(o, vhost);
    let _ = writeln!(o, "\"}} {v}");
}

/// A per-queue series: name, help, type (`gauge`, `counter`), value.
pub type PerQueue = (&'static str, &'static str, &'static str, fn(&QueueStats) -> u64);

pub(crate) fn gauge_header(o: &mut String, name: &str, help: &str) {
    o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
}

pub(crate) fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
}

fn counter_f(o: &mut String, name: &str, help: &str, v: f64) {
    o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
}

/// An operator's request to one shard, over the mesh or handled locally.
#[derive(Debug, Clone)]
pub enum AdminReq {
    /// `detail`: include every queue and connection.
    Stats {
        detail: bool,
    },
    /// One queue's row, from its owner.
    Queue {
        queue: String,
    },
    Purge {
        queue: String,
    },
    Delete {
        queue: String,
    },
    CloseConn {
        conn_id: u64,
    },
    /// Every push consumer of the shard's queues (`ctl list-consumers`).
    Consumers,
    /// Every channel of the shard's connections (`/api/channels`).
    Channels,
    /// A user change, for shard 0 (`shard/users.rs`).
    Users(crate::auth::change::UserChange),
    /// A cluster command, for shard 0 (`shard/cluster_admin.rs`).
    Cluster(ClusterAsk),
    /// For shard 0 of a clustered node: place a queue at its first
    /// declare, or (`remove`) drop this node's placement of it
    /// (`shard/remote.rs`).
    Place {
        queue: String,
        balanced: bool,
        remove: bool,
        /// The declare's definition, recorded with the placement.
        def: Box<crate::cluster::meta::QueueDef>,
    },
}

/// What an operator asks of the cluster member.
#[derive(Debug, Clone)]
pub enum ClusterAsk {
    Status,
    Forget { name: String },
    Join { addr: String },
}

#[derive(Debug)]
pub enum AdminReply {
    Stats(Box<ShardStats>),
    /// The row of the queue asked for; `None` when there is no such queue.
    Queue(Option<Box<QueueStats>>),
    /// A count (messages purged or deleted) or why it failed.
    Done(Result<u64, String>),
    /// Shard 0's answer to a user change.
    Users(Result<(), crate::server::admin_users::UserChangeFailed>),
    /// Shard 0's answer to a cluster command (JSON, `{"error"}` if it
    /// failed).
    Cluster(serde_json::Value),
    /// The node a queue is placed on.
    Placed(Result<u64, super::types::QueueError>),
    /// The shard's consumers.
    Consumers(Vec<ConsumerStats>),
    Channels(Vec<ChannelStats>),
}
