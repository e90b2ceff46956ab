//! The metrics and management listener: hyper's HTTP/1 server on glommio
//! sockets, served by shard 0. Each request gathers a snapshot from every
//! shard over the mesh ([`Shard::gather_stats`]), so no counter is shared
//! between cores.
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text: ringmq's series (per-queue ones only while there are at most [`PER_QUEUE_SERIES_MAX`] queues), RabbitMQ's names aggregated ([`stats_rabbit`]), `process_*` |
//! | `GET /metrics/per-object` | the same with every per-queue series, ringmq's and RabbitMQ's |
//! | `GET /api/overview`, `/api/queues`, `/api/queues/{vhost}/{name}`, `/api/connections`, `/api/exchanges`, `/api/exchanges/{vhost}/{name}`, `/api/bindings`, `/api/vhosts` | a JSON subset of RabbitMQ's management API (basic auth) |
//! | `GET /api/channels`, `/api/vhosts/{vhost}/channels`, `/api/connections/{name}/channels` | AMQP channels: number, user, vhost, prefetch, unacked, unconfirmed, consumers, confirm and tx mode ([`channels`]) |
//! | `DELETE /api/queues/{vhost}/{name}`, `/api/connections/{name}` | delete a queue, close a connection (basic auth) |
//! | `GET /api/nodes`, `/api/nodes/{name}` | memory and disk against their alarms ([`nodes`]) |
//! | `GET /api/health/checks/alarms`, `local-alarms`, `port-listener/{port}`, `/api/aliveness-test/{vhost}` | RabbitMQ's health checks ([`health`]; the cluster-wide one asks the other members, [`peers`]) |
//! | `GET /api/users`, `GET`, `PUT`, `DELETE /api/users/{name}` | users, administrator only ([`users`]) |
//! | `GET /api/permissions`, `GET`, `PUT`, `DELETE /api/permissions/{vhost}/{user}` | permissions, administrator only ([`users`]) |
//! | `GET /api/whoami` | the caller's name and tags (the UI offers what they allow) |
//! | `POST /api/exchanges/{vhost}/{name}/publish`, `POST /api/queues/{vhost}/{name}/get`, `DELETE /api/queues/{vhost}/{name}/contents` | publish, get, purge, administrator only ([`messages`]) |
//! | `GET /`, `/ui/*` | the management web UI's static files ([`ui`]) |
//! | `GET`, `POST /api/definitions`, `/api/definitions/{vhost}` | definitions export and import in RabbitMQ's JSON format, administrator only ([`definitions`]) |

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

mod channels;
mod conn;
mod definitions;
mod health;
mod messages;
mod nodes;
mod peers;
mod ui;
mod users;

pub use conn::{Body, HEADERS_MAX, HEADER_BYTES_MAX};

use crate::auth::Access;
use crate::server::admin::{admin_on_owner, close_connection, exchanges_json, json_array, FORMAT_CHUNK};
use crate::server::process_stats::ProcessStats;
use crate::server::shard::Shard;
use crate::server::stats::{
    per_queue_header, per_queue_sample, prometheus_alarms, prometheus_totals, AdminReply, AdminReq, ConnStats,
    PerQueue, QueueStats, ShardStats, PER_QUEUE_SERIES, PER_QUEUE_SERIES_MAX,
};
use crate::server::stats_rabbit;
use crate::server::tls::ListenerTls;
use base64::Engine;
use bytes::Bytes;
use glommio::net::TcpListener;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::rc::Rc;
use std::sync::Arc;

/// Accepts (plain, or HTTPS when the listener has TLS) until the task is
/// dropped at shutdown.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, tls: Option<Arc<ListenerTls>>) {
    let what = if tls.is_some() { "https" } else { "metrics" };
    crate::server::listener::accept_each(shard, listener, tls, what, conn::serve).await
}

type Resp = Response<Body>;

/// The vhosts (or the one named) as RabbitMQ's `/api/vhosts` shows them,
/// with their messages (summed from every queue's row).
async fn vhosts(shard: &Rc<Shard>, only: Option<&str>) -> Value {
    let stats = shard.gather_stats(true).await;
    let mut counts: std::collections::HashMap<&str, (u64, u64)> = std::collections::HashMap::new();
    for q in queues(&stats) {
        let c = counts.entry(crate::protocol::vhost::vhost_of(&q.name)).or_default();
        *c = (c.0 + q.ready, c.1 + q.unacked);
    }
    let names = shard.vhost_names().into_iter().filter(|v| only.is_none_or(|o| o == v));
    let rows = names.map(|name| {
        let (ready, unacked) = counts.get(name.as_str()).copied().unwrap_or_default();
        json!({ "name": name, "tracing": false, "messages": ready + unacked,
                "messages_ready": ready, "messages_unacknowledged": unacked })
    });
    Value::Array(rows.collect())
}

/// The rows of a JSON array whose `vhost` is `vhost`.
fn in_vhost(all: Value, vhost: &str) -> Value {
    match all {
        Value::Array(rows) => Value::Array(rows.into_iter().filter(|r| r["vhost"] == vhost).collect()),
        other => other,
    }
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Resp {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_str(content_type).expect("ascii"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    text(status, "application/json", v.to_string())
}

fn error(status: StatusCode, reason: &str) -> Resp {
    json_resp(status, &json!({ "error": status.canonical_reason().unwrap_or("error"), "reason": reason }))
}

fn no_content() -> Resp {
    empty(StatusCode::NO_CONTENT)
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Body::new(Vec::new()));
    *r.status_mut() = status;
    r
}

/// What the request's basic credentials let it do; `None` without valid
/// credentials of a configured user.
fn authorised(shard: &Shard, req: &Request<Incoming>, peer: Option<std::net::SocketAddr>) -> Option<Access> {
    let (user, password) = basic_credentials(req)?;
    shard.authenticate("http", &user, password.as_bytes(), peer).ok()
}

/// The user name and password of the request's basic credentials.
fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (user, password) = raw.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A login with a management tag or more: 401 without valid credentials,
/// 403 without the tag.
fn refusal(access: Option<Access>) -> Option<Resp> {
    match access {
        None => {
            let mut r = error(StatusCode::UNAUTHORIZED, "bad user name or password");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"ringmq\""));
            Some(r)
        }
        Some(Access::None) => Some(error(
            StatusCode::FORBIDDEN,
            "this user has no management tag (management, monitoring, administrator)",
        )),
        Some(_) => None,
    }
}

/// Decodes `%XX` escapes (vhost `/` arrives as `%2F`).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `peer`: the client's address, for `loopback_users` and the log.
pub(crate) async fn handle(shard: &Rc<Shard>, req: Request<Incoming>, peer: Option<std::net::SocketAddr>) -> Resp {
    // The UI's files are static: served without a permit.
    if ui::is_ui_path(req.uri().path()) {
        return ui::serve(req.method(), req.uri().path(), req.headers());
    }
    // Each request may gather from every shard: a bounded number at once.
    let Some(_permit) = shard.admin_permit() else {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "too many operator requests in flight; try again");
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/metrics" || path == "/metrics/per-object" {
        if method != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        if shard.config.metrics_auth_required {
            if let Some(r) = refusal(authorised(shard, &req, peer)) {
                return r;
            }
        }
        return metrics(shard, path == "/metrics/per-object").await;
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let access = authorised(shard, &req, peer);
    if let Some(mut r) = refusal(access) {
        // The web UI asks with this header: without the challenge, a
        // browser shows the UI's own login form instead of its dialog.
        if req.headers().get("x-requested-with").is_some_and(|v| v == "XMLHttpRequest") {
            r.headers_mut().remove(header::WWW_AUTHENTICATE);
        }
        return r;
    }
    let access = match access.unwrap_or(Access::None) {
        Access::Read if method != Method::GET => {
            return error(StatusCode::FORBIDDEN, "changes need the administrator tag")
        }
        a => a,
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let decoded: Option<Vec<String>> = parts.iter().map(|p| percent_decode(p)).collect();
    let Some(parts) = decoded else {
        return error(StatusCode::BAD_REQUEST, "bad percent-encoding in the path");
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let vhost_change = matches!(parts.as_slice(), ["vhosts", _]) && method != Method::GET;
    if matches!(parts.first(), Some(&"users" | &"permissions" | &"definitions")) || vhost_change {
        if access != Access::Admin {
            return error(
                StatusCode::FORBIDDEN,
                "users, vhosts, permissions and definitions need the administrator tag",
            );
        }
        // As for publish and get below: a page of another site can make a
        // browser POST a form here with its remembered credentials.
        if method == Method::POST && !is_json(&req) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be sent as Content-Type: application/json",
            );
        }
        return match parts.as_slice() {
            ["definitions"] => definitions::route(shard, &method, None, req.into_body()).await,
            ["definitions", vhost] => definitions::route(shard, &method, Some(vhost), req.into_body()).await,
            ["vhosts", name] => users::vhost(shard, &method, name).await,
            ["users"] => users::route(shard, &method, None, req.into_body()).await,
            ["users", name] => users::route(shard, &method, Some(name), req.into_body()).await,
            ["permissions"] if method == Method::GET => json_resp(StatusCode::OK, &shard.permissions_json()),
            ["permissions", vhost, user] => users::permissions(shard, &method, (vhost, user), req.into_body()).await,
            _ => error(StatusCode::NOT_FOUND, "not found"),
        };
    }
    match (&method, parts.as_slice()) {
        (&Method::GET, ["overview"]) => overview(shard).await,
        (&Method::GET, ["whoami"]) => whoami(shard, &req),
        (&Method::POST, ["exchanges" | "queues", ..]) if !is_json(&req) => {
            error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be sent as Content-Type: application/json")
        }
        (&Method::POST, ["exchanges", vhost, name, "publish"]) => {
            let (user, password) = basic_credentials(&req).unwrap_or_default();
            messages::publish(shard, (vhost, name), (&user, &password), req.into_body()).await
        }
        (&Method::POST, ["queues", vhost, name, "get"]) => {
            let (user, password) = basic_credentials(&req).unwrap_or_default();
            messages::get(shard, (vhost, name), (&user, &password), req.into_body()).await
        }
        (&Method::DELETE, ["queues", vhost, name, "contents"]) => messages::purge(shard, vhost, name).await,
        (&Method::GET, ["nodes"]) => nodes::nodes(shard, None).await,
        (&Method::GET, ["nodes", name]) => nodes::nodes(shard, Some(name)).await,
        (&Method::GET, ["health", "checks", "alarms"]) => {
            let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
            health::alarms(shard, auth).await
        }
        (&Method::GET, ["health", "checks", "local-alarms"]) => health::local_alarms(shard),
        (&Method::GET, ["health", "checks", "port-listener", port]) => health::port_listener(shard, port),
        (&Method::GET, ["aliveness-test", vhost]) => match basic_credentials(&req) {
            Some((user, password)) => health::aliveness(shard, vhost, (&user, &password)).await,
            None => error(StatusCode::UNAUTHORIZED, "bad user name or password"),
        },
        (&Method::GET, ["queues"]) => {
            let stats = shard.gather_stats(true).await;
            let parts = json_array(queues(&stats), queue_json).await;
            text(StatusCode::OK, "application/json", Body::new(parts.into_iter().map(Bytes::from).collect()))
        }
        (&Method::GET, ["queues", vhost]) => {
            if !shard.has_vhost(vhost) {
                return error(StatusCode::NOT_FOUND, "no such vhost");
            }
            let stats = shard.gather_stats(true).await;
            let in_vhost = queues(&stats).filter(|q| crate::protocol::vhost::vhost_of(&q.name) == *vhost);
            let parts = json_array(in_vhost, queue_json).await;
            text(StatusCode::OK, "application/json", Body::new(parts.into_iter().map(Bytes::from).collect()))
        }
        (&Method::GET, ["queues", vhost, name]) => {
            if !shard.has_vhost(vhost) {
                return error(StatusCode::NOT_FOUND, "no such vhost");
            }
            let name = crate::protocol::vhost::qualify(vhost, name);
            // Its owner alone is asked, for its row alone (on a clustered
            // node, a queue of this node).
            let owner = shard.local_owner(&name);
            let reply = shard.admin(&[owner], |_| AdminReq::Queue { queue: name.to_string() }).await;
            match reply.into_iter().next() {
                Some((_, AdminReply::Queue(Some(q)))) => json_resp(StatusCode::OK, &queue_json(&q)),
                Some((_, AdminReply::Queue(None))) => error(StatusCode::NOT_FOUND, "no such queue"),
                _ => error(StatusCode::SERVICE_UNAVAILABLE, &format!("shard {owner} did not answer")),
            }
        }
        (&Method::DELETE, ["queues", vhost, name]) => {
            if !shard.has_vhost(vhost) {
                return error(StatusCode::NOT_FOUND, "no such vhost");
            }
            let name = crate::protocol::vhost::qualify(vhost, name);
            match admin_on_owner(shard, AdminReq::Delete { queue: name.to_string() }, &name).await {
                Ok(_) => no_content(),
                Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
            }
        }
        (&Method::GET, ["connections"]) => {
            let stats = shard.gather_stats(false).await;
            json_resp(StatusCode::OK, &Value::Array(conns(&stats).map(conn_json).collect()))
        }
        (&Method::GET, ["connections", name, "channels"]) => {
            channels::list(shard, channels::Only::Connection(name)).await
        }
        (&Method::GET, ["channels"]) => channels::list(shard, channels::Only::All).await,
        (&Method::GET, ["vhosts", vhost, "channels"]) => channels::list(shard, channels::Only::Vhost(vhost)).await,
        (&Method::DELETE, ["connections", name]) => match close_connection(shard, name).await {
            Ok(_) => no_content(),
            Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
        },
        (&Method::GET, ["exchanges"]) => json_resp(StatusCode::OK, &crate::server::admin::exchanges_json(shard)),
        (&Method::GET, ["exchanges", vhost]) => json_resp(StatusCode::OK, &in_vhost(exchanges_json(shard), vhost)),
        (&Method::GET, ["exchanges", vhost, name]) => {
            let all = in_vhost(exchanges_json(shard), vhost);
            match all.as_array().and_then(|xs| xs.iter().find(|x| x["name"] == *name)) {
                Some(x) => json_resp(StatusCode::OK, x),
                None => error(StatusCode::NOT_FOUND, "no such exchange"),
            }
        }
        (&Method::GET, ["bindings"]) => json_resp(StatusCode::OK, &crate::server::admin::bindings_json(shard)),
        (&Method::GET, ["bindings", vhost]) => {
            json_resp(StatusCode::OK, &in_vhost(crate::server::admin::bindings_json(shard), vhost))
        }
        (&Method::GET, ["vhosts"]) => json_resp(StatusCode::OK, &vhosts(shard, None).await),
        (&Method::GET, ["vhosts", name]) => match vhosts(shard, Some(name)).await {
            Value::Array(mut one) if !one.is_empty() => json_resp(StatusCode::OK, &one.swap_remove(0)),
            _ => error(StatusCode::NOT_FOUND, "no such vhost"),
        },
        // A known path with another method; an unknown GET is a 404.
        (
            m,
            ["overview" | "queues" | "connections" | "exchanges" | "bindings" | "vhosts" | "nodes" | "health"
            | "aliveness-test" | "whoami", ..],
        ) if m != Method::GET => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Whether the request says its body is JSON. A page of another site can
/// make a browser POST a form (with basic credentials the browser keeps
/// for this origin), but not with this type without a CORS preflight,
/// which this API does not answer.
fn is_json(req: &Request<Incoming>) -> bool {
    let v = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /api/whoami`: the caller's name and tags, as RabbitMQ's.
fn whoami(shard: &Shard, req: &Request<Incoming>) -> Resp {
    let (user, _) = basic_credentials(req).unwrap_or_default();
    let tags = shard.user_json(&user).map(|u| u["tags"].clone()).unwrap_or_else(|| json!([]));
    json_resp(StatusCode::OK, &json!({ "name": user, "tags": tags }))
}

async fn metrics(shard: &Rc<Shard>, per_object: bool) -> Resp {
    let mut stats = shard.gather_stats(per_object).await;
    let total: u64 = stats.iter().map(|s| s.queue_count).sum();
    let per_queue = per_object || total <= PER_QUEUE_SERIES_MAX;
    if per_queue && !per_object {
        stats = shard.gather_stats(true).await;
    }
    let alarms = shard.alarms().snapshot();
    let process = ProcessStats::read();
    let mut parts = vec![
        Bytes::from(prometheus_totals(&stats)),
        Bytes::from(prometheus_alarms(&alarms, &stats)),
        Bytes::from(shard.cluster_prometheus()),
        Bytes::from(process.prometheus()),
        Bytes::from(stats_rabbit::prometheus(&stats, &alarms, &process, &identity(shard), per_object)),
    ];
    if per_queue {
        for series in &PER_QUEUE_SERIES {
            per_queue_series(&mut parts, series, &stats).await;
        }
    }
    // RabbitMQ's per-queue names: per-object only, as RabbitMQ serves them
    // (`/metrics` has them aggregated, above).
    if per_object {
        let detail = &crate::server::stats_rabbit_detail::PER_QUEUE;
        let head = std::iter::once(&crate::server::stats_rabbit_detail::HEAD_TIMESTAMP);
        for series in stats_rabbit::PER_QUEUE.iter().chain(detail).chain(head) {
            per_queue_series(&mut parts, series, &stats).await;
        }
    }
    text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", Body::new(parts))
}

/// One per-queue series, every queue, in parts of `FORMAT_CHUNK` samples
/// with the shard's sockets served in between.
async fn per_queue_series(parts: &mut Vec<Bytes>, series: &PerQueue, stats: &[ShardStats]) {
    let mut o = String::new();
    per_queue_header(&mut o, series);
    let mut n = 0;
    for q in queues(stats) {
        per_queue_sample(&mut o, series, q);
        n += 1;
        if n % FORMAT_CHUNK == 0 {
            parts.push(Bytes::from(std::mem::take(&mut o)));
            crate::rt::yield_to_io().await;
        }
    }
    parts.push(Bytes::from(o));
}

/// This node's name and cluster, for `rabbitmq_identity_info`.
fn identity(shard: &Shard) -> stats_rabbit::Identity {
    let node = shard.config.node_name();
    let cluster = shard.cluster_node().map_or_else(|| node.clone(), |n| n.cluster_id.clone());
    stats_rabbit::Identity { node, cluster }
}

fn queues(stats: &[ShardStats]) -> impl Iterator<Item = &QueueStats> {
    stats.iter().flat_map(|s| &s.queues)
}

fn conns(stats: &[ShardStats]) -> impl Iterator<Item = &ConnStats> {
    stats.iter().flat_map(|s| &s.conns)
}

fn queue_json(q: &QueueStats) -> Value {
    let (vhost, name) = crate::protocol::vhost::split(&q.name);
    json!({
        "name": name,
        "vhost": vhost,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive,
        "arguments": crate::server::admin::table_json(&q.args),
        "node": format!("shard-{}", q.shard),
        "shard": q.shard,
        "state": "running",
        "type": "classic",
        "messages": q.ready + q.unacked,
        "messages_ready": q.ready,
        "messages_unacknowledged": q.unacked,
        "message_bytes_ready": q.ready_bytes,
        "consumers": q.consumers,
        "message_stats": { "publish": q.published, "deliver_get": q.delivered },
    })
}

fn conn_json(c: &ConnStats) -> Value {
    let (host, port) = c.peer.rsplit_once(':').map_or((c.peer.as_str(), 0), |(h, p)| (h, p.parse().unwrap_or(0)));
    json!({
        "name": c.name,
        "node": format!("shard-{}", c.shard),
        "shard": c.shard,
        "protocol": if c.protocol == "amqp" { "AMQP 0-9-1" } else { "ringmq" },
        "peer_host": host,
        "peer_port": port,
        "vhost": c.vhost,
        "state": "running",
        "channels": c.channels,
        "outbox_bytes": c.outbox_bytes,
        "recv_oct": c.recv_oct,
        "recv_cnt": c.recv_cnt,
        "send_oct": c.send_oct,
        "send_cnt": c.send_cnt,
    })
}

async fn overview(shard: &Rc<Shard>) -> Resp {
    let stats = shard.gather_stats(false).await;
    let sum = |f: fn(&ShardStats) -> u64| stats.iter().map(f).sum::<u64>();
    let ready = sum(|s| s.messages_ready);
    let unacked = sum(|s| s.messages_unacked);
    json_resp(
        StatusCode::OK,
        &json!({
            "product_name": "ringmq",
            "product_version": env!("CARGO_PKG_VERSION"),
            "management_version": env!("CARGO_PKG_VERSION"),
            "node": nodes::NODE,
            "shards": shard.count,
            // RabbitMQ's fields: `publish` is what publishers sent (a
            // message into two queues is one), the rest split deliveries
            // and unroutable messages as its metrics do (`stats_rabbit`).
            "message_stats": {
                "publish": sum(|s| s.received),
                "deliver_get": sum(|s| s.delivered),
                "deliver": sum(|s| s.delivered.saturating_sub(
                    s.delivered_consume_auto_ack + s.delivered_get_auto_ack + s.delivered_get_manual_ack)),
                "deliver_no_ack": sum(|s| s.delivered_consume_auto_ack),
                "get": sum(|s| s.delivered_get_manual_ack),
                "get_no_ack": sum(|s| s.delivered_get_auto_ack),
                "get_empty": sum(|s| s.get_empty),
                "ack": sum(|s| s.acked),
                "redeliver": sum(|s| s.redelivered),
                "confirm": sum(|s| s.confirmed),
                "drop_unroutable": sum(|s| s.unroutable_dropped),
                "return_unroutable": sum(|s| s.unroutable_returned),
            },
            "queue_totals": {
                "messages": ready + unacked,
                "messages_ready": ready,
                "messages_unacknowledged": unacked,
            },
            "object_totals": {
                "queues": sum(|s| s.queue_count),
                "connections": sum(|s| s.connections),
                "consumers": sum(|s| s.consumers),
                "exchanges": shard.exchange_count(),
                "channels": sum(|s| s.channels),
            },
        }),
    )
}
