//! RabbitMQ's `rabbitmq_prometheus` names for what ringmq has an
//! equivalent of, so that the stock Grafana dashboards (RabbitMQ-Overview)
//! and alerts written for RabbitMQ read ringmq unchanged. They are served
//! beside the `ringmq_*` series, from the same snapshot: the shards'
//! plain counters (`server::shard::Counters`), bumped per publish batch,
//! dispatch pass, get or routing decision, never per message.
//!
//! As RabbitMQ does, `/metrics` has them aggregated (no per-object
//! labels) and `/metrics/per-object` has the queue series per queue
//! (`queue`, `vhost`). [`aggregated_names`] and [`per_object_names`] list the names
//! each endpoint claims; `tests/metrics_names.rs` checks them, with their
//! types and label names, against a capture from RabbitMQ 3.10
//! (`tests/data/rabbitmq_prometheus_names.txt`), and docs/operations.md
//! maps them to the `ringmq_*` names and lists what is not provided.

use super::alarm::AlarmSnapshot;
use super::process_stats::ProcessStats;
use super::stats::{push_escaped, ShardStats};
use super::stats_rabbit_detail as detail;
use std::fmt::Write;

/// Who this broker is, for `rabbitmq_identity_info`: RabbitMQ's stock
/// dashboards join every series to it on `instance`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `node_name` (default `ringmq@HOSTNAME`).
    pub node: String,
    /// The cluster's id on a clustered node; the node's name otherwise
    /// (RabbitMQ's default cluster name is its first node's name).
    pub cluster: String,
}

/// RabbitMQ labels its global counters by protocol; ringmq counts per
/// shard, over both of its protocols (AMQP 0-9-1 and native), so one
/// series carries them all.
const PROTOCOL: &str = "protocol=\"all\"";
/// ringmq's queues show as classic queues (`/api/queues` says `classic`).
const QUEUE_TYPE: &str = "queue_type=\"rabbit_classic_queue\"";

type Totals = fn(&[ShardStats]) -> u64;

fn sum(shards: &[ShardStats], f: fn(&ShardStats) -> u64) -> u64 {
    shards.iter().map(f).sum()
}

/// Unlabelled gauges served on both endpoints: name, help, value.
const GAUGES: [(&str, &str, Totals); 4] = [
    ("rabbitmq_queues", "Queues available", |s| sum(s, |x| x.queue_count)),
    ("rabbitmq_connections", "Connections currently open", |s| sum(s, |x| x.connections)),
    ("rabbitmq_channels", "Channels currently open", |s| sum(s, |x| x.channels)),
    ("rabbitmq_consumers", "Consumers currently connected", |s| sum(s, |x| x.consumers)),
];

/// Unlabelled counters served on both endpoints: name, help, value. The
/// storage logs' fdatasync calls are what RabbitMQ counts as syncs.
const COUNTERS: [(&str, &str, Totals); 8] = [
    ("rabbitmq_io_sync_ops_total", "Total number of I/O sync operations", |s| sum(s, |x| x.fsyncs)),
    ("rabbitmq_queues_declared_total", "Total number of queues declared", |s| sum(s, |x| x.queues_declared)),
    ("rabbitmq_queues_created_total", "Total number of queues created", |s| sum(s, |x| x.queues_created)),
    ("rabbitmq_queues_deleted_total", "Total number of queues deleted", |s| sum(s, |x| x.queues_deleted)),
    ("rabbitmq_connections_opened_total", "Total number of connections opened", |s| sum(s, |x| x.connections_opened)),
    ("rabbitmq_connections_closed_total", "Total number of connections closed or terminated", |s| {
        sum(s, |x| x.connections_opened.saturating_sub(x.connections))
    }),
    ("rabbitmq_channels_opened_total", "Total number of channels opened", |s| sum(s, |x| x.channels_opened)),
    // A channel open now on a connection of the shard that opened it.
    ("rabbitmq_channels_closed_total", "Total number of channels closed", |s| {
        sum(s, |x| x.channels_opened.saturating_sub(x.channels))
    }),
];

/// Deliveries to consumers that ack (the rest of `delivered` once the
/// auto-ack and get ones are taken out: each is counted with it).
fn consume_manual(s: &[ShardStats]) -> u64 {
    sum(s, |x| {
        x.delivered.saturating_sub(x.delivered_consume_auto_ack + x.delivered_get_auto_ack + x.delivered_get_manual_ack)
    })
}

/// Time in fdatasync, in seconds (both endpoints).
const SYNC_SECONDS: &str = "rabbitmq_io_sync_time_seconds_total";

/// The global counters (both endpoints): name, help, labels, value.
const GLOBAL: [(&str, &str, &str, Totals); 16] = [
    ("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers", "both", |s| {
        sum(s, |x| x.delivered)
    }),
    (
        "rabbitmq_global_messages_acknowledged_total",
        "Total number of messages acknowledged by consumers",
        "both",
        |s| sum(s, |x| x.acked),
    ),
    ("rabbitmq_global_messages_redelivered_total", "Total number of messages redelivered to consumers", "both", |s| {
        sum(s, |x| x.redelivered)
    }),
    ("rabbitmq_global_messages_confirmed_total", "Total number of messages confirmed to publishers", "protocol", |s| {
        sum(s, |x| x.confirmed)
    }),
    ("rabbitmq_global_consumers", "Current number of consumers", "protocol", |s| sum(s, |x| x.consumers)),
    ("rabbitmq_auth_attempts_failed_total", "Total number of failed authentication attempts", "protocol", |s| {
        sum(s, |x| x.auth_failures)
    }),
    (
        "rabbitmq_global_messages_delivered_consume_auto_ack_total",
        "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
        "both",
        |s| sum(s, |x| x.delivered_consume_auto_ack),
    ),
    (
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
        "both",
        consume_manual,
    ),
    (
        "rabbitmq_global_messages_delivered_get_auto_ack_total",
        "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
        "both",
        |s| sum(s, |x| x.delivered_get_auto_ack),
    ),
    (
        "rabbitmq_global_messages_delivered_get_manual_ack_total",
        "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
        "both",
        |s| sum(s, |x| x.delivered_get_manual_ack),
    ),
    (
        "rabbitmq_global_messages_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        "both",
        |s| sum(s, |x| x.get_empty),
    ),
    ("rabbitmq_global_messages_received_total", "Total number of messages received from publishers", "protocol", |s| {
        sum(s, |x| x.received)
    }),
    (
        "rabbitmq_global_messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        "protocol",
        |s| sum(s, |x| x.received_confirm),
    ),
    (
        "rabbitmq_global_messages_routed_total",
        "Total number of messages routed to queues or streams",
        "protocol",
        |s| sum(s, |x| x.routed),
    ),
    (
        "rabbitmq_global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        "protocol",
        |s| sum(s, |x| x.unroutable_dropped),
    ),
    (
        "rabbitmq_global_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        "protocol",
        |s| sum(s, |x| x.unroutable_returned),
    ),
];

/// Aggregated queue and channel series, `/metrics` only (on
/// `/metrics/per-object` RabbitMQ labels them by queue or channel):
/// name, type, help, value.
const AGGREGATED_ONLY: [(&str, &str, &str, Totals); 20] = [
    ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered to consumers", |s| {
        sum(s, |x| x.messages_ready)
    }),
    ("rabbitmq_queue_messages_unacked", "gauge", "Messages delivered to consumers but not yet acknowledged", |s| {
        sum(s, |x| x.messages_unacked)
    }),
    ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth", |s| {
        sum(s, |x| x.messages_ready + x.messages_unacked)
    }),
    ("rabbitmq_queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages", |s| sum(s, |x| x.ready_bytes)),
    ("rabbitmq_queue_messages_paged_out", "gauge", "Messages paged out to disk", |s| sum(s, |x| x.messages_spilled)),
    ("rabbitmq_queue_messages_ready_ram", "gauge", "Ready messages stored in memory", |s| {
        sum(s, |x| x.messages_ready.saturating_sub(x.messages_spilled))
    }),
    ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", |s| sum(s, |x| x.consumers)),
    ("rabbitmq_queue_messages_published_total", "counter", "Total number of messages published to queues", |s| {
        sum(s, |x| x.published)
    }),
    ("rabbitmq_channel_consumers", "gauge", "Consumers on a channel", |s| sum(s, |x| x.consumers)),
    ("rabbitmq_channel_messages_unacked", "gauge", "Delivered but not yet acknowledged messages", |s| {
        sum(s, |x| x.messages_unacked)
    }),
    ("rabbitmq_channel_messages_acked_total", "counter", "Total number of messages acknowledged by consumers", |s| {
        sum(s, |x| x.acked)
    }),
    (
        "rabbitmq_channel_messages_redelivered_total",
        "counter",
        "Total number of messages redelivered to consumers",
        |s| sum(s, |x| x.redelivered),
    ),
    (
        "rabbitmq_channel_messages_published_total",
        "counter",
        "Total number of messages published into an exchange on a channel",
        |s| sum(s, |x| x.received),
    ),
    (
        "rabbitmq_channel_messages_delivered_ack_total",
        "counter",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
        consume_manual,
    ),
    (
        "rabbitmq_channel_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
        |s| sum(s, |x| x.delivered_consume_auto_ack),
    ),
    (
        "rabbitmq_channel_get_ack_total",
        "counter",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
        |s| sum(s, |x| x.delivered_get_manual_ack),
    ),
    (
        "rabbitmq_channel_get_total",
        "counter",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
        |s| sum(s, |x| x.delivered_get_auto_ack),
    ),
    (
        "rabbitmq_channel_get_empty_total",
        "counter",
        "Total number of times basic.get operations fetched no message",
        |s| sum(s, |x| x.get_empty),
    ),
    (
        "rabbitmq_channel_messages_unroutable_dropped_total",
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        |s| sum(s, |x| x.unroutable_dropped),
    ),
    (
        "rabbitmq_channel_messages_unroutable_returned_total",
        "counter",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        |s| sum(s, |x| x.unroutable_returned),
    ),
];

/// Also aggregated only: confirms (on a channel and exchange per object).
const CONFIRMED: (&str, &str) = (
    "rabbitmq_channel_messages_confirmed_total",
    "Total number of messages published into an exchange and confirmed on the channel",
);

/// The per-queue series of `/metrics/per-object`, labelled `queue` and
/// `vhost` as RabbitMQ's: name, help, type, value.
pub const PER_QUEUE: [super::stats::PerQueue; 5] = [
    ("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", "gauge", |q| q.ready),
    ("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", "gauge", |q| {
        q.unacked
    }),
    ("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages - total queue depth", "gauge", |q| {
        q.ready + q.unacked
    }),
    ("rabbitmq_queue_messages_ready_bytes", "Size in bytes of ready messages", "gauge", |q| q.ready_bytes),
    ("rabbitmq_queue_consumers", "Consumers on a queue", "gauge", |q| q.consumers),
];

/// Node-level gauges (both endpoints): name, help.
const NODE_GAUGES: [(&str, &str); 8] = [
    ("rabbitmq_process_resident_memory_bytes", "Memory used in bytes"),
    ("rabbitmq_process_open_fds", "Open file descriptors"),
    ("rabbitmq_process_max_fds", "Open file descriptors limit"),
    ("rabbitmq_resident_memory_limit_bytes", "Memory high watermark in bytes"),
    ("rabbitmq_disk_space_available_bytes", "Disk space available in bytes"),
    ("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark in bytes"),
    ("rabbitmq_process_open_tcp_sockets", "Open TCP sockets"),
    ("rabbitmq_process_max_tcp_sockets", "Open TCP sockets limit"),
];

/// The values of [`NODE_GAUGES`], in order; `None` is a figure that could
/// not be read (left out). Sockets are the client connections the shards
/// hold (native, AMQP, HTTP), against the most they hold at once (their
/// caps, or the descriptor limit if lower): what RabbitMQ's dashboard
/// shows as sockets available.
fn node_values(shards: &[ShardStats], a: &AlarmSnapshot, p: &ProcessStats) -> [Option<u64>; 8] {
    let caps = sum(shards, |x| x.sockets_max);
    [
        p.resident_bytes.or(Some(a.rss_bytes)),
        p.open_fds,
        p.max_fds,
        Some(a.memory_high_watermark_bytes),
        Some(a.disk_free_bytes),
        Some(a.disk_free_limit_bytes),
        Some(sum(shards, |x| x.connections + x.http_connections)),
        Some(p.max_fds.map_or(caps, |fds| fds.min(caps))),
    ]
}

/// Every RabbitMQ name `/metrics` serves (the identity and build series
/// included), for the test and the docs.
pub fn aggregated_names() -> Vec<&'static str> {
    let mut v = common_names();
    v.extend(AGGREGATED_ONLY.iter().map(|s| s.0));
    v.extend(detail::aggregated_names());
    v.extend([
        CONFIRMED.0,
        "rabbitmq_alarms_memory_used_watermark",
        "rabbitmq_alarms_free_disk_space_watermark",
        // From `ProcessStats::prometheus`, which the caller appends on
        // both endpoints (RabbitMQ has it on `/metrics` only).
        "process_start_time_seconds",
    ]);
    v
}

/// Every RabbitMQ name `/metrics/per-object` serves.
pub fn per_object_names() -> Vec<&'static str> {
    let mut v = common_names();
    v.extend(PER_QUEUE.iter().map(|s| s.0));
    v.extend(detail::per_object_names());
    v
}

fn common_names() -> Vec<&'static str> {
    let mut v = vec!["rabbitmq_build_info", "rabbitmq_identity_info"];
    v.extend(GAUGES.iter().map(|s| s.0));
    v.extend(COUNTERS.iter().map(|s| s.0));
    v.push(SYNC_SECONDS);
    v.extend(GLOBAL.iter().map(|s| s.0));
    v.extend(NODE_GAUGES.iter().map(|s| s.0));
    v.extend(detail::common_names());
    v
}

/// The node-wide RabbitMQ series of an endpoint: everything but the
/// per-queue ones, which the HTTP shard appends in slices.
pub fn prometheus(
    shards: &[ShardStats],
    a: &AlarmSnapshot,
    p: &ProcessStats,
    id: &Identity,
    per_object: bool,
) -> String {
    let mut o = String::with_capacity(8192);
    info_series(&mut o, id);
    for (name, help, f) in GAUGES {
        header(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {}", f(shards));
    }
    for (name, help, f) in COUNTERS {
        header(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", f(shards));
    }
    header(&mut o, SYNC_SECONDS, "counter", "Total I/O sync time");
    let _ = writeln!(o, "{SYNC_SECONDS} {}", sum(shards, |x| x.fsync_nanos) as f64 / 1e9);
    for (name, help, labels, f) in GLOBAL {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        header(&mut o, name, kind, help);
        let labels = if labels == "both" { format!("{PROTOCOL},{QUEUE_TYPE}") } else { PROTOCOL.to_string() };
        let _ = writeln!(o, "{name}{{{labels}}} {}", f(shards));
    }
    for ((name, help), v) in NODE_GAUGES.into_iter().zip(node_values(shards, a, p)) {
        if let Some(v) = v {
            header(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
    }
    detail::common(&mut o, shards);
    if per_object {
        detail::per_object(&mut o, shards);
    } else {
        aggregated_only(&mut o, shards, a);
        detail::aggregated(&mut o, shards);
    }
    o
}

/// What RabbitMQ serves on `/metrics` alone.
fn aggregated_only(o: &mut String, shards: &[ShardStats], a: &AlarmSnapshot) {
    for (name, kind, help, f) in AGGREGATED_ONLY {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name} {}", f(shards));
    }
    header(o, CONFIRMED.0, "counter", CONFIRMED.1);
    let _ = writeln!(o, "{} {}", CONFIRMED.0, sum(shards, |x| x.confirmed));
    // RabbitMQ serves its alarm flags untyped.
    for (name, help, on) in [
        ("rabbitmq_alarms_memory_used_watermark", "is 1 if VM memory watermark alarm is in effect", a.memory_alarm),
        (
            "rabbitmq_alarms_free_disk_space_watermark",
            "is 1 if free disk space watermark alarm is in effect",
            a.disk_alarm,
        ),
    ] {
        header(o, name, "untyped", help);
        let _ = writeln!(o, "{name} {}", u8::from(on));
    }
}

/// `rabbitmq_build_info` and `rabbitmq_identity_info`, and ringmq's own
/// `ringmq_build_info`.
fn info_series(o: &mut String, id: &Identity) {
    let version = env!("CARGO_PKG_VERSION");
    header(o, "ringmq_build_info", "gauge", "ringmq's version; always 1.");
    let _ = writeln!(o, "ringmq_build_info{{version=\"{version}\"}} 1");
    // RabbitMQ's label set, so that dashboards reading it find every
    // label: ringmq runs no Erlang and has no separate plugin.
    header(o, "rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info");
    let _ = writeln!(
        o,
        "rabbitmq_build_info{{rabbitmq_version=\"{version}\",prometheus_plugin_version=\"{version}\",prometheus_client_version=\"ringmq\",erlang_version=\"none\"}} 1"
    );
    header(o, "rabbitmq_identity_info", "untyped", "RabbitMQ node & cluster identity info");
    o.push_str("rabbitmq_identity_info{rabbitmq_node=\"");
    push_escaped(o, &id.node);
    o.push_str("\",rabbitmq_cluster=\"");
    push_escaped(o, &id.cluster);
    o.push_str("\",rabbitmq_cluster_permanent_id=\"");
    push_escaped(o, &id.cluster);
    o.push_str("\"} 1\n");
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}
