//! RabbitMQ's detail series, beside `stats_rabbit`'s dashboard ones:
//! logins let in, publishers, dead letters by reason, the log's reads
//! and writes (`rabbitmq_io_*`), where queues hold their messages (bytes,
//! memory, disk, persistent), and per-connection traffic and per-channel
//! figures. Every figure is read from the shards' snapshot
//! (`ShardStats`), counted per login, per removal, per log write or read,
//! per socket read or write, or held by the queue and channel state:
//! nothing here is counted per message on the publish path.
//!
//! On `/metrics` connection and channel series are sums (RabbitMQ's
//! aggregation: over what is open now); on `/metrics/per-object` they are
//! per connection and per channel, labelled `channel` as RabbitMQ labels
//! both (a connection by its name, `shard:conn_id`; a channel as
//! `shard:conn_id (N)`).

use super::stats::{push_escaped, ChannelRow, ConnStats, QueueStats, ShardStats};
use std::fmt::Write;

type Totals = fn(&[ShardStats]) -> u64;
/// A per-connection series: name, type, help, value.
type ConnSeries = (&'static str, &'static str, &'static str, fn(&ConnStats) -> u64);
/// A per-channel gauge: name, help, value.
type ChannelSeries = (&'static str, &'static str, fn(&ChannelRow) -> u64);

fn sum(shards: &[ShardStats], f: fn(&ShardStats) -> u64) -> u64 {
    shards.iter().map(f).sum()
}

fn conns(shards: &[ShardStats]) -> impl Iterator<Item = &ConnStats> {
    shards.iter().flat_map(|s| &s.conns)
}

fn conn_sum(shards: &[ShardStats], f: fn(&ConnStats) -> u64) -> u64 {
    conns(shards).map(f).sum()
}

fn channel_sum(shards: &[ShardStats], f: fn(&ChannelRow) -> u64) -> u64 {
    conns(shards).flat_map(|c| &c.channel_rows).map(f).sum()
}

/// Labelled `protocol` (both endpoints): name, type, help, value.
const BY_PROTOCOL: [(&str, &str, &str, Totals); 3] = [
    ("rabbitmq_auth_attempts_succeeded_total", "counter", "Total number of successful authentication attempts", |s| {
        sum(s, |x| x.auth_successes)
    }),
    ("rabbitmq_auth_attempts_total", "counter", "Total number of authentication attempts", |s| {
        sum(s, |x| x.auth_successes + x.auth_failures)
    }),
    ("rabbitmq_global_publishers", "gauge", "Current number of publishers", |s| conn_sum(s, |c| c.publishers)),
];

/// RabbitMQ's dead-letter reasons, in `deadletter::Reason::ALL` order.
const DEAD_LETTERED: [(&str, &str); 3] = [
    (
        "rabbitmq_global_messages_dead_lettered_expired_total",
        "Total number of messages dead-lettered due to message TTL exceeded",
    ),
    (
        "rabbitmq_global_messages_dead_lettered_maxlen_total",
        "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
    ),
    (
        "rabbitmq_global_messages_dead_lettered_rejected_total",
        "Total number of messages dead-lettered due to basic.reject or basic.nack",
    ),
];

/// `dead_letter_strategy` by whether the queue has a dead-letter exchange:
/// without one the message is dropped (`disabled`); with one it is
/// republished without confirms (`at_most_once`, RabbitMQ's only strategy
/// for classic queues).
const STRATEGIES: [&str; 2] = ["disabled", "at_most_once"];

/// The log's I/O (both endpoints): name, help, value.
const IO: [(&str, &str, Totals); 4] = [
    ("rabbitmq_io_read_ops_total", "Total number of I/O read operations", |s| sum(s, |x| x.io.read_ops)),
    ("rabbitmq_io_read_bytes_total", "Total number of I/O bytes read", |s| sum(s, |x| x.io.read_bytes)),
    ("rabbitmq_io_write_ops_total", "Total number of I/O write operations", |s| sum(s, |x| x.io.write_ops)),
    ("rabbitmq_io_write_bytes_total", "Total number of I/O bytes written", |s| sum(s, |x| x.io.write_bytes)),
];

/// Seconds in the log's reads and writes (both endpoints).
const IO_SECONDS: [(&str, &str, Totals); 2] = [
    ("rabbitmq_io_read_time_seconds_total", "Total I/O read time", |s| sum(s, |x| x.io.read_nanos)),
    ("rabbitmq_io_write_time_seconds_total", "Total I/O write time", |s| sum(s, |x| x.io.write_nanos)),
];

/// Where a queue's messages are: name, help, value. Unacked messages are
/// always in memory; ready ones are in memory unless spilled. The last
/// [`AGGREGATED_ELSEWHERE`] are summed on `/metrics` by `stats_rabbit`.
pub const PER_QUEUE: [super::stats::PerQueue; 10] = [
    ("rabbitmq_queue_messages_bytes", "Size in bytes of ready and unacknowledged messages", "gauge", |q| {
        q.ready_bytes + q.unacked_bytes
    }),
    ("rabbitmq_queue_messages_unacked_bytes", "Size in bytes of all unacknowledged messages", "gauge", |q| {
        q.unacked_bytes
    }),
    ("rabbitmq_queue_messages_persistent", "Persistent messages", "gauge", |q| q.persistent),
    ("rabbitmq_queue_messages_persistent_bytes", "Size in bytes of persistent messages", "gauge", |q| {
        q.persistent_bytes
    }),
    ("rabbitmq_queue_messages_ram", "Ready and unacknowledged messages stored in memory", "gauge", ram),
    ("rabbitmq_queue_messages_ram_bytes", "Size of ready and unacknowledged messages stored in memory", "gauge", |q| {
        q.ready_bytes.saturating_sub(q.spilled_bytes) + q.unacked_bytes
    }),
    ("rabbitmq_queue_messages_unacked_ram", "Unacknowledged messages stored in memory", "gauge", |q| q.unacked),
    ("rabbitmq_queue_messages_paged_out_bytes", "Size in bytes of messages paged out to disk", "gauge", |q| {
        q.spilled_bytes
    }),
    ("rabbitmq_queue_messages_ready_ram", "Ready messages stored in memory", "gauge", |q| {
        q.ready.saturating_sub(q.spilled)
    }),
    ("rabbitmq_queue_messages_paged_out", "Messages paged out to disk", "gauge", |q| q.spilled),
];

/// The head message's `timestamp` property, per queue where the head has
/// one (a queue without is left out, as RabbitMQ leaves it); on
/// `/metrics`, the oldest of them.
pub const HEAD_TIMESTAMP: super::stats::PerQueue =
    ("rabbitmq_queue_head_message_timestamp", "Timestamp of the first message in the queue, if any", "gauge", |q| {
        q.head_timestamp
    });

/// `PER_QUEUE`'s last ones, which `stats_rabbit` serves summed.
const AGGREGATED_ELSEWHERE: usize = 2;
const PER_QUEUE_SUMMED: usize = PER_QUEUE.len() - AGGREGATED_ELSEWHERE;

const CHANNEL_SUMMED: usize = PER_CHANNEL.len() - 2;

fn ram(q: &QueueStats) -> u64 {
    q.ready.saturating_sub(q.spilled) + q.unacked
}

/// Per connection (label `channel` per object): name, type, help, value.
const PER_CONNECTION: [ConnSeries; 5] = [
    ("rabbitmq_connection_channels", "gauge", "Channels on a connection", |c| c.channels),
    ("rabbitmq_connection_incoming_bytes_total", "counter", "Total number of bytes received on a connection", |c| {
        c.recv_oct
    }),
    ("rabbitmq_connection_outgoing_bytes_total", "counter", "Total number of bytes sent on a connection", |c| {
        c.send_oct
    }),
    (
        "rabbitmq_connection_incoming_packets_total",
        "counter",
        "Total number of packets received on a connection",
        |c| c.recv_cnt,
    ),
    ("rabbitmq_connection_outgoing_packets_total", "counter", "Total number of packets sent on a connection", |c| {
        c.send_cnt
    }),
];

/// Per channel (label `channel` per object), gauges: name, help, value.
/// The first [`CHANNEL_SUMMED`] are summed here on `/metrics`; the last
/// two are summed there by `stats_rabbit`.
const PER_CHANNEL: [ChannelSeries; 7] = [
    ("rabbitmq_channel_messages_unconfirmed", "Published but not yet confirmed messages", |c| c.messages_unconfirmed),
    ("rabbitmq_channel_messages_uncommitted", "Messages received in a transaction but not yet committed", |c| {
        c.messages_uncommitted
    }),
    ("rabbitmq_channel_acks_uncommitted", "Message acknowledgements in a transaction not yet committed", |c| {
        c.acks_uncommitted
    }),
    ("rabbitmq_channel_prefetch", "Total limit of unacknowledged messages for all consumers on a channel", |c| {
        u64::from(c.global_prefetch_count)
    }),
    ("rabbitmq_consumer_prefetch", "Limit of unacknowledged messages for each consumer", |c| {
        u64::from(c.prefetch_count)
    }),
    ("rabbitmq_channel_consumers", "Consumers on a channel", |c| u64::from(c.consumer_count)),
    ("rabbitmq_channel_messages_unacked", "Delivered but not yet acknowledged messages", |c| {
        u64::from(c.messages_unacknowledged)
    }),
];

/// On both endpoints.
pub fn common(o: &mut String, shards: &[ShardStats]) {
    for (name, kind, help, f) in BY_PROTOCOL {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name}{{protocol=\"all\"}} {}", f(shards));
    }
    for (reason, (name, help)) in DEAD_LETTERED.into_iter().enumerate() {
        header(o, name, "counter", help);
        for (dlx, strategy) in STRATEGIES.into_iter().enumerate() {
            let v: u64 = shards.iter().map(|s| s.dead_by_reason[reason][dlx]).sum();
            let labels = format!("queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"{strategy}\"");
            let _ = writeln!(o, "{name}{{{labels}}} {v}");
        }
    }
    for (name, help, f) in IO {
        header(o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", f(shards));
    }
    for (name, help, f) in IO_SECONDS {
        header(o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", f(shards) as f64 / 1e9);
    }
}

/// `/metrics` only: the per-queue, per-connection and per-channel series
/// summed (the per-channel consumers and unacked are in `stats_rabbit`).
pub fn aggregated(o: &mut String, shards: &[ShardStats]) {
    let queues = queue_totals(shards);
    for (name, help, kind, f) in &PER_QUEUE[..PER_QUEUE_SUMMED] {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name} {}", f(&queues));
    }
    let (name, help, kind, _) = HEAD_TIMESTAMP;
    header(o, name, kind, help);
    let oldest = shards.iter().map(|s| s.head_timestamp_min).filter(|t| *t != 0).min();
    if let Some(t) = oldest {
        let _ = writeln!(o, "{name} {t}");
    }
    for (name, kind, help, f) in PER_CONNECTION {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name} {}", conn_sum(shards, f));
    }
    for (name, help, f) in &PER_CHANNEL[..CHANNEL_SUMMED] {
        header(o, name, "gauge", help);
        let _ = writeln!(o, "{name} {}", channel_sum(shards, *f));
    }
}

/// `/metrics/per-object` only: a sample per connection and per channel.
pub fn per_object(o: &mut String, shards: &[ShardStats]) {
    for (name, kind, help, f) in PER_CONNECTION {
        header(o, name, kind, help);
        for c in conns(shards) {
            let _ = write!(o, "{name}{{channel=\"");
            push_escaped(o, &c.name);
            let _ = writeln!(o, "\"}} {}", f(c));
        }
    }
    for (name, help, f) in PER_CHANNEL {
        header(o, name, "gauge", help);
        for c in conns(shards) {
            for ch in &c.channel_rows {
                let _ = write!(o, "{name}{{channel=\"");
                push_escaped(o, &c.name);
                let _ = writeln!(o, " ({})\"}} {}", ch.number, f(ch));
            }
        }
    }
}

/// Every name `common` serves.
pub fn common_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = BY_PROTOCOL.iter().map(|s| s.0).collect();
    v.extend(DEAD_LETTERED.iter().map(|s| s.0));
    v.extend(IO.iter().map(|s| s.0));
    v.extend(IO_SECONDS.iter().map(|s| s.0));
    v
}

/// Every name `aggregated` serves.
pub fn aggregated_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = PER_QUEUE[..PER_QUEUE_SUMMED].iter().map(|s| s.0).collect();
    v.push(HEAD_TIMESTAMP.0);
    v.extend(PER_CONNECTION.iter().map(|s| s.0));
    v.extend(PER_CHANNEL[..CHANNEL_SUMMED].iter().map(|s| s.0));
    v
}

/// Every name `per_object` serves, and the per-queue ones.
pub fn per_object_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = PER_QUEUE.iter().map(|s| s.0).collect();
    v.push(HEAD_TIMESTAMP.0);
    v.extend(PER_CONNECTION.iter().map(|s| s.0));
    v.extend(PER_CHANNEL.iter().map(|s| s.0));
    v
}

/// The queues' figures summed into one row, so the per-queue functions
/// give the node's totals.
fn queue_totals(shards: &[ShardStats]) -> QueueStats {
    QueueStats {
        ready: sum(shards, |s| s.messages_ready),
        unacked: sum(shards, |s| s.messages_unacked),
        ready_bytes: sum(shards, |s| s.ready_bytes),
        unacked_bytes: sum(shards, |s| s.unacked_bytes),
        persistent: sum(shards, |s| s.persistent),
        persistent_bytes: sum(shards, |s| s.persistent_bytes),
        spilled: sum(shards, |s| s.messages_spilled),
        spilled_bytes: sum(shards, |s| s.spilled_bytes),
        ..QueueStats::default()
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}
