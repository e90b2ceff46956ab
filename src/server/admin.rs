//! The server side of `ringmq ctl`: the native protocol's `Admin` frame,
//! answered with an `AdminOk` JSON document gathered from every shard over
//! the mesh (the same snapshots the metrics use). A failed action answers
//! `{"error": "..."}`; see `docs/protocol.md`. The asking of every shard
//! over the mesh (`AdminReq`, `AdminReply`) is `server::shard::admin`.

use super::shard::Shard;
use super::stats::{AdminReply, AdminReq, ClusterAsk, QueueStats};
use super::types::{ConnRef, Reply};
use crate::protocol::field_table::{entries, items, TABLE_DEPTH_CEILING};
use crate::protocol::op;
use crate::protocol::ErrorCode;
use crate::routing::Dest;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;

/// Starts a native `Admin` request as its own task (it gathers from every
/// shard), answered with `AdminOk`: one at a time per connection (`busy`),
/// and at most `admin_requests_per_shard_max` per shard. Refused with
/// `AdminBusy` otherwise.
pub fn start(
    shard: &Rc<Shard>,
    me: ConnRef,
    rid: u64,
    (command, arg): (u8, &str),
    busy: &Rc<Cell<bool>>,
) -> Result<(), (ErrorCode, String)> {
    if busy.get() {
        let why = "an Admin request of this connection is still in flight; wait for its answer";
        return Err((ErrorCode::AdminBusy, why.into()));
    }
    let Some(permit) = shard.admin_permit() else {
        let max = shard.config.admin_requests_per_shard_max;
        return Err((
            ErrorCode::AdminBusy,
            format!("admin_requests_per_shard_max ({max}) operator requests in flight; try again"),
        ));
    };
    let (sh, arg, flag) = (shard.clone(), arg.to_string(), busy.clone());
    // On the bulk queue (`server::sched`), not the connection's.
    let task = shard.sched.spawn(super::sched::Class::Bulk, async move {
        let json = match command {
            op::ADMIN_IMPORT_DEFINITIONS => super::definitions::import_part(&sh, me, &arg).await.to_string(),
            _ => run(&sh, command, &arg).await,
        };
        sh.route_reply(me, Reply::AdminOk { request_id: rid, json });
        flag.set(false);
        drop(permit);
    });
    match task {
        Ok(t) => {
            busy.set(true);
            t.detach();
            Ok(())
        }
        Err(e) => Err((ErrorCode::Internal, e.to_string())),
    }
}

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
                let (vhost, name) = crate::protocol::vhost::split(&q.name);
                json!({
                    "name": name, "vhost": vhost, "shard": q.shard, "durable": q.durable,
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
                    .map(|c| {
                        json!({ "name": c.name, "shard": c.shard, "protocol": c.protocol, "peer": c.peer, "vhost": c.vhost })
                    })
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
            // `arg` is the queue's qualified name (`ctl --vhost` scopes it).
            let (vhost, name) = crate::protocol::vhost::split(arg);
            match admin_on_owner(shard, req, arg).await {
                Ok(n) => json!({ "queue": name, "vhost": vhost, "messages": n }),
                Err(e) => json!({ "error": e.to_string() }),
            }
        }
        op::ADMIN_CLOSE_CONNECTION => match close_connection(shard, arg).await {
            Ok(_) => json!({ "connection": arg, "closed": true }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        op::ADMIN_ALARMS => alarms_json(shard).await,
        op::ADMIN_SET_MEMORY_HIGH_WATERMARK | op::ADMIN_SET_DISK_FREE_LIMIT => set_alarm_limit(shard, command, arg),
        op::ADMIN_LIST_EXCHANGES => exchanges_json(shard),
        op::ADMIN_LIST_BINDINGS => bindings_json(shard),
        op::ADMIN_LIST_USERS
        | op::ADMIN_ADD_USER
        | op::ADMIN_DELETE_USER
        | op::ADMIN_CHANGE_PASSWORD
        | op::ADMIN_SET_USER_TAGS
        | op::ADMIN_LIST_PERMISSIONS
        | op::ADMIN_SET_PERMISSIONS
        | op::ADMIN_CLEAR_PERMISSIONS
        | op::ADMIN_LIST_VHOSTS
        | op::ADMIN_ADD_VHOST
        | op::ADMIN_DELETE_VHOST => super::admin_users::run(shard, command, arg).await,
        op::ADMIN_CLUSTER_STATUS => cluster(shard, ClusterAsk::Status).await,
        op::ADMIN_FORGET_NODE => cluster(shard, ClusterAsk::Forget { name: arg.to_string() }).await,
        op::ADMIN_JOIN_CLUSTER => cluster(shard, ClusterAsk::Join { addr: arg.to_string() }).await,
        op::ADMIN_STATUS => super::health::status_json(shard).await,
        op::ADMIN_LIST_CONSUMERS => consumers_json(shard, arg).await,
        op::ADMIN_EXPORT_DEFINITIONS => super::definitions::export(shard, None).await,
        op::ADMIN_IMPORT_DEFINITIONS => json!({ "error": "an import needs its connection (bug)" }),
        other => json!({ "error": format!("unknown admin command {other}") }),
    };
    v.to_string()
}

/// `ctl list-consumers`: every push consumer of every shard, sorted by
/// queue. The request takes no argument: anything else is refused.
async fn consumers_json(shard: &Rc<Shard>, arg: &str) -> Value {
    if !arg.is_empty() {
        return json!({ "error": "list-consumers takes no argument" });
    }
    let all: Vec<u16> = (0..shard.count).collect();
    let mut rows: Vec<super::stats::ConsumerStats> = shard
        .admin(&all, |_| AdminReq::Consumers)
        .await
        .into_iter()
        .flat_map(|(_, r)| match r {
            AdminReply::Consumers(rows) => rows,
            _ => Vec::new(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.queue, &a.connection, a.consumer_id).cmp(&(&b.queue, &b.connection, b.consumer_id)));
    let row = |c: &super::stats::ConsumerStats| {
        let (vhost, name) = crate::protocol::vhost::split(&c.queue);
        json!({
            "queue": name, "vhost": vhost, "shard": c.shard, "connection": c.connection,
            "consumer_id": c.consumer_id, "prefetch": c.prefetch, "unacked": c.unacked,
            "priority": c.priority, "exclusive": c.exclusive,
        })
    };
    Value::Array(rows.iter().map(row).collect())
}

/// A cluster command, answered by shard 0 (where the member runs).
pub async fn cluster(shard: &Shard, ask: ClusterAsk) -> Value {
    let metadata = crate::server::shard::routing_replica::METADATA_SHARD;
    let wait = crate::server::cluster::node::CLUSTER_COMMAND_WAIT;
    let reply = shard.admin_within(&[metadata], wait, |_| AdminReq::Cluster(ask.clone())).await;
    match reply.into_iter().next() {
        Some((_, AdminReply::Cluster(v))) => v,
        Some((_, AdminReply::Done(Err(e)))) => json!({ "error": e }),
        _ => json!({ "error": "shard 0 did not answer" }),
    }
}

/// `ctl alarms`: one row per resource alarm.
async fn alarms_json(shard: &Rc<Shard>) -> Value {
    let a = shard.alarms().snapshot();
    let stats = shard.gather_stats(false).await;
    let blocked: u64 = stats.iter().map(|s| s.blocked_connections).sum();
    json!([
        {
            "kind": "memory", "alarm": a.memory_alarm, "bytes": a.memory_accounted_bytes,
            "limit_bytes": a.memory_high_watermark_bytes, "blocked_connections": blocked,
            "note": format!("accounted bytes (process RSS {})", a.rss_bytes),
        },
        {
            "kind": "disk", "alarm": a.disk_alarm, "bytes": a.disk_free_bytes,
            "limit_bytes": a.disk_free_limit_bytes, "blocked_connections": blocked,
            "note": format!("free bytes on {}", a.data_dir),
        },
    ])
}

/// `ctl set-memory-high-watermark` / `set-disk-free-limit`: until restart,
/// as RabbitMQ's `set_vm_memory_high_watermark` / `set_disk_free_limit`.
fn set_alarm_limit(shard: &Shard, command: u8, arg: &str) -> Value {
    let Ok(bytes) = arg.trim().parse::<u64>() else {
        return json!({ "error": format!("expected a number of bytes, got {arg:?}") });
    };
    let alarms = shard.alarms();
    if command == op::ADMIN_SET_MEMORY_HIGH_WATERMARK {
        let min = crate::server::alarm::MIN_WATERMARK_BYTES;
        if bytes < min {
            return json!({ "error": format!("the memory watermark must be at least {min} bytes") });
        }
        alarms.set_memory_limit(bytes);
        tracing::info!(memory_high_watermark_bytes = bytes, "memory watermark set by an operator");
        json!({ "setting": "memory_high_watermark_bytes", "bytes": bytes })
    } else {
        alarms.set_disk_limit(bytes);
        tracing::info!(disk_free_limit_bytes = bytes, "disk free limit set by an operator");
        json!({ "setting": "disk_free_limit_bytes", "bytes": bytes })
    }
}

/// Every exchange, from this shard's copy of the routing table (every
/// shard has the same), as RabbitMQ's management API shows them.
pub fn exchanges_json(shard: &Shard) -> Value {
    let table = shard.routing.table.borrow();
    let mut xs: Vec<Value> = table
        .exchanges()
        .map(|x| {
            let (vhost, name) = crate::protocol::vhost::split(&x.name);
            let alternate = x.alternate.as_deref().map(crate::protocol::vhost::name_of);
            json!({
                "name": name, "vhost": vhost, "type": x.kind.as_str(), "durable": x.durable,
                "auto_delete": x.auto_delete, "internal": x.internal,
                "alternate_exchange": alternate, "arguments": table_json(&x.args),
            })
        })
        .collect();
    xs.sort_by(|a, b| (a["vhost"].as_str(), a["name"].as_str()).cmp(&(b["vhost"].as_str(), b["name"].as_str())));
    Value::Array(xs)
}

/// Every binding, sorted by source, destination and key.
pub fn bindings_json(shard: &Shard) -> Value {
    let table = shard.routing.table.borrow();
    let mut bs: Vec<Value> = table
        .bindings()
        .map(|b| {
            let kind = match b.dest {
                Dest::Queue(_) => "queue",
                Dest::Exchange(_) => "exchange",
            };
            let (vhost, source) = crate::protocol::vhost::split(&b.source);
            json!({
                "source": source, "vhost": vhost, "destination": crate::protocol::vhost::name_of(b.dest.name()),
                "destination_type": kind, "routing_key": b.key, "arguments": table_json(&b.args),
            })
        })
        .collect();
    let key = |v: &Value| {
        let f = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (f("source"), f("destination"), f("routing_key"))
    };
    bs.sort_by_key(key);
    Value::Array(bs)
}

/// An AMQP field table (validated) as JSON: numbers, strings, booleans,
/// nested tables and arrays; other types as their raw bytes in hex.
pub fn table_json(raw: &[u8]) -> Value {
    table_json_at(raw, 1)
}

/// Recursion is bounded: past the deepest table the broker can accept, a
/// value is shown as a note (stored bytes are not trusted blindly).
fn table_json_at(raw: &[u8], depth: usize) -> Value {
    let mut m = serde_json::Map::new();
    for (k, kind, v) in entries(raw) {
        m.insert(String::from_utf8_lossy(k).into_owned(), value_json(kind, v, depth + 1));
    }
    Value::Object(m)
}

fn value_json(kind: u8, v: &[u8], depth: usize) -> Value {
    if matches!(kind, b'F' | b'A') && depth > TABLE_DEPTH_CEILING {
        return Value::String("(nested too deep)".into());
    }
    let int = |b: &[u8]| -> i64 {
        match (kind, b.len()) {
            (b'b', 1) => i64::from(b[0] as i8),
            (b'B', 1) => i64::from(b[0]),
            (b's', 2) => i64::from(i16::from_be_bytes([b[0], b[1]])),
            (b'u', 2) => i64::from(u16::from_be_bytes([b[0], b[1]])),
            (b'I', 4) => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (b'i', 4) => i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (b'l' | b'L' | b'T', 8) => i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            _ => 0,
        }
    };
    match kind {
        b't' => Value::Bool(v.first().is_some_and(|b| *b != 0)),
        b'b' | b'B' | b's' | b'u' | b'I' | b'i' | b'l' | b'L' | b'T' => json!(int(v)),
        b'S' | b'x' => Value::String(String::from_utf8_lossy(v).into_owned()),
        b'F' => table_json_at(v, depth),
        b'A' => Value::Array(items(v).map(|(k, item)| value_json(k, item, depth + 1)).collect()),
        b'V' => Value::Null,
        b'd' if v.len() == 8 => {
            let f = f64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        b'f' if v.len() == 4 => serde_json::Number::from_f64(f64::from(f32::from_be_bytes([v[0], v[1], v[2], v[3]])))
            .map_or(Value::Null, Value::Number),
        _ => Value::String(v.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// Queues per slice when a large answer is formatted: the HTTP shard serves
/// its sockets between slices.
pub const FORMAT_CHUNK: usize = 256;

/// A JSON array of `items`, serialised [`FORMAT_CHUNK`] at a time with the
/// shard's sockets served between slices: the text, in slices.
pub async fn json_array<'a, T: 'a>(items: impl Iterator<Item = &'a T>, f: impl Fn(&T) -> Value) -> Vec<String> {
    use std::fmt::Write;
    let mut parts = Vec::new();
    let mut o = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            o.push(',');
            if i % FORMAT_CHUNK == 0 {
                parts.push(std::mem::take(&mut o));
                crate::rt::yield_to_io().await;
            }
        }
        let _ = write!(o, "{}", f(item));
    }
    o.push(']');
    parts.push(o);
    parts
}

/// Why an operator's request on one queue or connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The shard that owns it refused (no such queue, and the like).
    #[error("{0}")]
    Refused(String),
    #[error("no connection '{0}' (names are shard:id)")]
    NoConnection(String),
    #[error("the shard did not answer as expected")]
    NoAnswer,
}

/// Runs a queue request on the queue's owning shard.
/// On a clustered node, the queues of this node: an operator manages each
/// node's own (as `rabbitmqctl` is run against the queue's node).
pub async fn admin_on_owner(shard: &Rc<Shard>, req: AdminReq, queue: &str) -> Result<u64, AdminError> {
    let owner = shard.local_owner(queue);
    let mut req = Some(req);
    let r = shard.admin(&[owner], |_| req.take().expect("one target")).await;
    done(r)
}

/// Closes the connection named `shard:conn_id`.
pub async fn close_connection(shard: &Rc<Shard>, name: &str) -> Result<u64, AdminError> {
    let parsed = name.split_once(':').and_then(|(s, c)| Some((s.parse::<u16>().ok()?, c.parse::<u64>().ok()?)));
    let Some((s, conn_id)) = parsed.filter(|(s, _)| *s < shard.count) else {
        return Err(AdminError::NoConnection(name.to_string()));
    };
    done(shard.admin(&[s], |_| AdminReq::CloseConn { conn_id }).await)
}

fn done(r: Vec<(u16, AdminReply)>) -> Result<u64, AdminError> {
    match r.into_iter().next() {
        Some((_, AdminReply::Done(r))) => r.map_err(AdminError::Refused),
        _ => Err(AdminError::NoAnswer),
    }
}
