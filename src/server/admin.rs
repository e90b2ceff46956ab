//! The server side of `ringmq ctl`: the native protocol's `Admin` frame,
//! answered with an `AdminOk` JSON document gathered from every shard over
//! the mesh (the same snapshots the metrics use). A failed action answers
//! `{"error": "..."}`; see `docs/protocol.md`.

use super::http::{admin_on_owner, close_connection, json_array};
use super::shard::Shard;
use super::stats::{AdminReq, QueueStats};
use crate::protocol::op;
use serde_json::{json, Value};
use std::rc::Rc;

/// Runs one admin command; the JSON text of its answer.
pub async fn run(shard: &Rc<Shard>, command: u8, arg: &str) -> String {
    let v = match command {
        op::ADMIN_LIST_QUEUES => {
            // Built in slices (the shard serves its sockets between them):
            // with many queues this is the largest answer the broker gives.
            let stats = shard.gather_stats(true).await;
            let mut qs: Vec<&QueueStats> = stats.iter().flat_map(|s| &s.queues).collect();
            qs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            let row = |q: &&QueueStats| {
                json!({
                    "name": q.name, "shard": q.shard, "durable": q.durable,
                    "ready": q.ready, "unacked": q.unacked, "consumers": q.consumers,
                    "ready_bytes": q.ready_bytes, "published": q.published, "delivered": q.delivered,
                })
            };
            return json_array(qs.iter(), row).await.concat();
        }
        op::ADMIN_LIST_CONNECTIONS => {
            let stats = shard.gather_stats(false).await;
            Value::Array(
                stats
                    .iter()
                    .flat_map(|s| &s.conns)
                    .map(|c| json!({ "name": c.name, "shard": c.shard, "protocol": c.protocol, "peer": c.peer }))
                    .collect(),
            )
        }
        op::ADMIN_SHARDS => {
            let stats = shard.gather_stats(false).await;
            Value::Array(
                stats
                    .iter()
                    .map(|s| {
                        json!({
                            "shard": s.shard, "queues": s.queue_count, "ready": s.messages_ready,
                            "unacked": s.messages_unacked, "consumers": s.consumers,
                            "connections": s.connections, "published": s.published,
                            "delivered": s.delivered, "acked": s.acked, "forwarded": s.forwarded,
                            "fsyncs": s.fsyncs, "disk_bytes": s.disk_bytes,
                        })
                    })
                    .collect(),
            )
        }
        op::ADMIN_PURGE_QUEUE | op::ADMIN_DELETE_QUEUE => {
            let req = if command == op::ADMIN_PURGE_QUEUE {
                AdminReq::Purge { queue: arg.to_string() }
            } else {
                AdminReq::Delete { queue: arg.to_string() }
            };
            match admin_on_owner(shard, req, arg).await {
                Ok(n) => json!({ "queue": arg, "messages": n }),
                Err(e) => json!({ "error": e }),
            }
        }
        op::ADMIN_CLOSE_CONNECTION => match close_connection(shard, arg).await {
            Ok(_) => json!({ "connection": arg, "closed": true }),
            Err(e) => json!({ "error": e }),
        },
        other => json!({ "error": format!("unknown admin command {other}") }),
    };
    v.to_string()
}
