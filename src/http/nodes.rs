//! `GET /api/nodes`. A broker that is not
//! clustered is one node (`ringmq`), described with the fields of
//! RabbitMQ's management API that concern resource alarms
//! (`server/alarm.rs`). A clustered one lists every member as
//! `ctl cluster-status` sees them, this node with its alarm fields.

use super::{error, json_resp, Resp};
use crate::server::shard::Shard;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::rc::Rc;

/// The name `/api/overview` and `/api/nodes` give the broker.
pub const NODE: &str = "ringmq";

/// The node's row: memory and disk use against their alarm thresholds.
pub async fn node_json(shard: &Rc<Shard>) -> Value {
    let a = shard.alarms().snapshot();
    let stats = shard.gather_stats(false).await;
    let blocked: u64 = stats.iter().map(|s| s.blocked_connections).sum();
    json!({
        "name": NODE,
        "type": "disc",
        "running": true,
        "shards": shard.count,
        "mem_used": a.memory_accounted_bytes,
        "mem_limit": a.memory_high_watermark_bytes,
        "mem_alarm": a.memory_alarm,
        "mem_calculation_strategy": "accounted",
        "rss_bytes": a.rss_bytes,
        "rss_baseline_bytes": a.rss_baseline_bytes,
        "disk_free": a.disk_free_bytes,
        "disk_free_limit": a.disk_free_limit_bytes,
        "disk_free_alarm": a.disk_alarm,
        "data_dir": a.data_dir,
        "connections_blocked": blocked,
        "partitions": [],
    })
}

/// The cluster's nodes: each with its state and addresses; this one
/// also with its alarm fields.
async fn cluster_nodes(shard: &Rc<Shard>, status: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for n in status["nodes"].as_array().into_iter().flatten() {
        let mut row = if n["name"] == status["node"] { node_json(shard).await } else { json!({ "type": "disc" }) };
        let fields =
            ["name", "id", "state", "voter", "leader", "cluster_addr", "native_addr", "amqp_addr", "http_addr"];
        for k in fields {
            row[k] = n[k].clone();
        }
        row["shards"] = n["shards"].clone();
        row["running"] = json!(n["state"] == "up");
        rows.push(row);
    }
    rows
}

/// `GET /api/nodes` and `GET /api/nodes/NAME`.
pub async fn nodes(shard: &Rc<Shard>, name: Option<&str>) -> Resp {
    if shard.cluster_node().is_some() {
        let status = crate::server::admin::cluster(shard, crate::server::stats::ClusterAsk::Status).await;
        let rows = cluster_nodes(shard, &status).await;
        return match name {
            None => json_resp(StatusCode::OK, &Value::Array(rows)),
            Some(n) => match rows.into_iter().find(|r| r["name"] == n) {
                Some(r) => json_resp(StatusCode::OK, &r),
                None => error(StatusCode::NOT_FOUND, "no such node in the cluster"),
            },
        };
    }
    match name {
        None => json_resp(StatusCode::OK, &Value::Array(vec![node_json(shard).await])),
        Some(NODE) => json_resp(StatusCode::OK, &node_json(shard).await),
        Some(_) => error(StatusCode::NOT_FOUND, "no such node (the broker is one node, 'ringmq')"),
    }
}
