//! What the node knows about itself as a whole, for health checks and
//! `ringmq ctl status`: the listeners it bound (their real ports, 0
//! resolved), whether the start has finished, and since when it runs.
//! One value per node behind an `Arc`, written once at start; the only
//! thing that changes is the `ready` flag, set once.

use super::shard::Shard;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A bound listener: what it serves (`native`, `native-shard`, `amqp`,
/// `http`, `native-tls`, `native-tls-shard`, `amqps`, `https`,
/// `clustering`) and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: &'static str,
    pub addr: SocketAddr,
}

/// The node's listeners and start state.
#[derive(Debug)]
pub struct NodeStatus {
    listeners: Vec<Listener>,
    /// Set once every shard serves its listeners and, clustered, the node
    /// has caught up with the group (`Broker::start_with`).
    ready: AtomicBool,
    started: Instant,
    started_unix_ms: u64,
}

impl NodeStatus {
    pub fn new(listeners: Vec<Listener>) -> Self {
        let started_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| crate::protocol::wire::u64_of(d.as_millis()));
        Self { listeners, ready: AtomicBool::new(false), started: Instant::now(), started_unix_ms }
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Whether a listener of this node is bound to `port`.
    pub fn listens_on(&self, port: u16) -> bool {
        self.listeners.iter().any(|l| l.addr.port() == port)
    }

    /// Every distinct port listened on, in ascending order.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.iter().map(|l| l.addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn uptime_ms(&self) -> u64 {
        crate::protocol::wire::u64_of(self.started.elapsed().as_millis())
    }
}

/// `ringmq ctl status` (the native `Admin` command `ADMIN_STATUS`): the
/// node, whether it is ready, its listeners, alarms and object totals.
pub async fn status_json(shard: &Rc<Shard>) -> Value {
    let node = shard.node_status();
    let a = shard.alarms().snapshot();
    let stats = shard.gather_stats(false).await;
    let sum = |f: fn(&super::stats::ShardStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (late, worst) = super::sched::latency_queue_lateness(&stats);
    let listeners: Vec<Value> =
        node.listeners().iter().map(|l| json!({ "protocol": l.protocol, "address": l.addr.to_string() })).collect();
    json!({
        "node": shard.config.node_name(),
        "product_name": "ringmq",
        "product_version": env!("CARGO_PKG_VERSION"),
        "ready": node.is_ready(),
        "uptime_ms": node.uptime_ms(),
        "started_at_unix_ms": node.started_unix_ms,
        "shards": shard.count,
        "shards_answering": stats.len(),
        "clustered": shard.config.cluster_listen.is_some(),
        "listeners": listeners,
        "alarms": a.in_effect(),
        "mem_used": a.memory_accounted_bytes,
        "mem_limit": a.memory_high_watermark_bytes,
        "disk_free": a.disk_free_bytes,
        "disk_free_limit": a.disk_free_limit_bytes,
        "connections": sum(|s| s.connections),
        "channels": sum(|s| s.channels),
        "queues": sum(|s| s.queue_count),
        "consumers": sum(|s| s.consumers),
        "exchanges": shard.exchange_count(),
        "messages_ready": sum(|s| s.messages_ready),
        "messages_unacknowledged": sum(|s| s.messages_unacked),
        // Shard scheduling (`ringmq_sched_delay_seconds`, latency queue):
        // probes that ran over 1 ms late, and the worst bucket reached.
        "sched_late_1ms": late,
        "sched_delay_max_s": if worst.is_finite() { json!(worst) } else { json!("+Inf") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_the_bound_ones_once_each() {
        let l = |protocol, a: &str| Listener { protocol, addr: a.parse().unwrap_or_else(|_| unreachable!()) };
        let s = NodeStatus::new(vec![l("native", "127.0.0.1:5680"), l("amqp", "0.0.0.0:5672"), l("amqp", "[::]:5672")]);
        assert!(s.listens_on(5672) && s.listens_on(5680) && !s.listens_on(5671));
        assert_eq!(s.ports(), vec![5672, 5680]);
        assert!(!s.is_ready());
        s.set_ready();
        assert!(s.is_ready());
    }
}
