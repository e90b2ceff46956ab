//! The broker's definitions as RabbitMQ exports them: `users` with their
//! `password_hash` and `hashing_algorithm`, `vhosts`, `permissions`,
//! `queues` (not exclusive ones: they belong to a connection),
//! `exchanges` (not the default and `amq.*` ones: every vhost has them),
//! `bindings` (not to exclusive queues), and RabbitMQ's empty
//! `policies`, `parameters`, `global_parameters`, `topic_permissions`.

use crate::protocol::vhost::split;
use crate::routing::Dest;
use crate::server::admin::table_json;
use crate::server::shard::Shard;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The RabbitMQ release whose format this follows (a RabbitMQ import
/// reads `rabbit_version`).
const RABBIT_FORMAT_VERSION: &str = "3.10.0";

/// Everything, or one vhost's queues, exchanges and bindings (without
/// their `vhost` fields, as RabbitMQ's `/api/definitions/VHOST`).
pub async fn export(shard: &Shard, only_vhost: Option<&str>) -> Value {
    let stats = shard.gather_stats(true).await;
    let mut queues: Vec<_> = stats.iter().flat_map(|s| &s.queues).filter(|q| !q.exclusive).collect();
    queues.sort_by(|a, b| split(&a.name).cmp(&split(&b.name)));
    let exclusive: HashSet<&str> =
        stats.iter().flat_map(|s| &s.queues).filter(|q| q.exclusive).map(|q| q.name.as_str()).collect();
    let in_scope = |vhost: &str| only_vhost.is_none_or(|o| o == vhost);
    let queues: Vec<Value> = queues
        .into_iter()
        .filter(|q| in_scope(split(&q.name).0))
        .map(|q| {
            let (vhost, name) = split(&q.name);
            json!({ "name": name, "vhost": vhost, "type": "classic", "durable": q.durable,
                    "auto_delete": q.auto_delete, "arguments": table_json(&q.args) })
        })
        .collect();
    let (exchanges, bindings) = routing(shard, &exclusive, &in_scope);
    let mut doc = json!({
        "rabbit_version": RABBIT_FORMAT_VERSION,
        "rabbitmq_version": RABBIT_FORMAT_VERSION,
        "product_name": "ringmq",
        "product_version": env!("CARGO_PKG_VERSION"),
        "parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    });
    match only_vhost {
        Some(_) => {
            for k in ["queues", "exchanges", "bindings"] {
                for item in doc[k].as_array_mut().into_iter().flatten() {
                    if let Some(o) = item.as_object_mut() {
                        o.remove("vhost");
                    }
                }
            }
        }
        None => {
            doc["users"] = users(shard);
            doc["vhosts"] = Value::Array(
                shard
                    .vhost_names()
                    .into_iter()
                    .map(|name| json!({ "name": name, "limits": [], "metadata": { "description": "", "tags": [] } }))
                    .collect(),
            );
            doc["permissions"] = shard.permissions_json();
            doc["topic_permissions"] = json!([]);
            doc["global_parameters"] = json!([]);
        }
    }
    doc
}

/// Users in RabbitMQ 3.10's shape (`tags` a list, `limits` empty).
fn users(shard: &Shard) -> Value {
    let mut all = shard.users_json();
    for u in all.as_array_mut().into_iter().flatten() {
        u["limits"] = json!({});
    }
    all
}

/// The exchanges and bindings in scope, sorted as RabbitMQ lists them.
fn routing(shard: &Shard, exclusive: &HashSet<&str>, in_scope: &dyn Fn(&str) -> bool) -> (Vec<Value>, Vec<Value>) {
    let table = shard.routing.table.borrow();
    let mut xs: Vec<_> = table
        .exchanges()
        .filter(|x| {
            let (vhost, name) = split(&x.name);
            !name.is_empty() && !name.starts_with("amq.") && in_scope(vhost)
        })
        .collect();
    xs.sort_by(|a, b| split(&a.name).cmp(&split(&b.name)));
    let exchanges = xs
        .into_iter()
        .map(|x| {
            let (vhost, name) = split(&x.name);
            json!({ "name": name, "vhost": vhost, "type": x.kind.as_str(), "durable": x.durable,
                    "auto_delete": x.auto_delete, "internal": x.internal, "arguments": table_json(&x.args) })
        })
        .collect();
    let mut bs: Vec<_> = table
        .bindings()
        .filter(|b| {
            in_scope(split(&b.source).0) && !matches!(&b.dest, Dest::Queue(q) if exclusive.contains(q.as_str()))
        })
        .collect();
    bs.sort_by(|a, b| {
        (split(&a.source), split(a.dest.name()), &a.key).cmp(&(split(&b.source), split(b.dest.name()), &b.key))
    });
    let bindings = bs
        .into_iter()
        .map(|b| {
            let (vhost, source) = split(&b.source);
            let kind = if matches!(b.dest, Dest::Queue(_)) { "queue" } else { "exchange" };
            json!({ "source": source, "vhost": vhost, "destination": split(b.dest.name()).1,
                    "destination_type": kind, "routing_key": b.key, "arguments": table_json(&b.args) })
        })
        .collect();
    (exchanges, bindings)
}
