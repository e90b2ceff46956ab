//! Messages over HTTP, in RabbitMQ's shapes (what its management UI's
//! queue and exchange pages use):
//!
//! - `POST /api/exchanges/VHOST/NAME/publish` with `{"routing_key",
//!   "payload", "payload_encoding": "string" | "base64", "properties"}`
//!   answers `{"routed": bool}`;
//! - `POST /api/queues/VHOST/NAME/get` with `{"count", "ackmode",
//!   "encoding": "auto" | "base64", "truncate"}` answers the messages;
//! - `DELETE /api/queues/VHOST/NAME/contents` purges the queue.
//!
//! Publish and get go through the node's own native listener as the
//! requesting user, as the aliveness test does ([`super::health`]): the
//! user's vhost permissions (write on the exchange, read on the queue)
//! are checked by the same code that checks any client's. `handle` has
//! already required the administrator tag (every change does). Bodies are
//! hostile: bounded in size and time, parsed as JSON, every field checked.

use super::health::{native_addr, self_client};
use super::{error, json_resp, no_content, users::read_body, Resp};
use crate::client::{Client, ClientError, Delivery, ProducerOptions};
use crate::protocol::props::{self, Props, PropsBuilder};
use crate::protocol::ErrorCode;
use crate::server::admin::admin_on_owner;
use crate::server::shard::Shard;
use crate::server::stats::AdminReq;
use base64::Engine;
use hyper::body::Incoming;
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use std::rc::Rc;
use std::time::Duration;

/// Messages one `get` may take.
pub const GET_COUNT_MAX: u64 = 100;
/// Payload bytes one `get` answers with, over all its messages: past it,
/// the messages not yet taken stay in the queue.
pub const GET_ANSWER_BYTES_MAX: usize = 8 << 20;
/// A `get` request's body (a few small fields).
const GET_BODY_BYTES_MAX: usize = 4 << 10;
/// A publish request's body beyond its payload (names, properties, JSON).
const PUBLISH_OVERHEAD_BYTES_MAX: usize = 64 << 10;

/// `DELETE /api/queues/VHOST/NAME/contents`: 204, or 404 without the queue.
pub async fn purge(shard: &Rc<Shard>, vhost: &str, name: &str) -> Resp {
    if !shard.has_vhost(vhost) {
        return error(StatusCode::NOT_FOUND, "no such vhost");
    }
    let name = crate::protocol::vhost::qualify(vhost, name);
    match admin_on_owner(shard, AdminReq::Purge { queue: name.to_string() }, &name).await {
        Ok(_) => no_content(),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// A refusal by the broker, as the HTTP status that says whose fault it is.
fn client_error(e: &ClientError) -> Resp {
    let status = match e.code() {
        Some(ErrorCode::AuthFailed | ErrorCode::AccessRefused) => StatusCode::FORBIDDEN,
        Some(ErrorCode::VhostNotFound | ErrorCode::QueueNotFound | ErrorCode::ExchangeNotFound) => {
            StatusCode::NOT_FOUND
        }
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

/// A client of the node's native listener, logged in as the requester.
async fn connect(shard: &Shard, vhost: &str, (user, password): (&str, &str)) -> Result<Client, Refused> {
    let Some(addr) = native_addr(shard) else {
        return Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, "the node has no native listener")));
    };
    let opts = self_client(addr, vhost, (user, password));
    Client::connect(opts).await.map_err(|e| Box::new(client_error(&e)))
}

/// Runs `work` bounded by `http_request_timeout_ms`.
async fn within(shard: &Shard, work: impl std::future::Future<Output = Resp>) -> Resp {
    let limit = Duration::from_millis(shard.config.http_request_timeout_ms);
    let late = async {
        glommio::timer::sleep(limit).await;
        error(StatusCode::SERVICE_UNAVAILABLE, "no answer within http_request_timeout_ms")
    };
    futures_lite::future::or(work, late).await
}

/// The JSON object of a bounded body, or the response refusing it.
async fn object_body(shard: &Shard, body: Incoming, max: usize) -> Result<Map<String, Value>, Refused> {
    let timeout = Duration::from_millis(shard.config.http_request_timeout_ms);
    let raw = read_body(body, max, timeout).await.map_err(Box::new)?;
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(bad("the body is not a JSON object")),
    }
}

/// A refused request's answer, boxed: a `Result` carrying a whole
/// response stays small.
type Refused = Box<Resp>;

fn bad(why: &str) -> Refused {
    Box::new(error(StatusCode::BAD_REQUEST, why))
}

/// An optional string field, at most `max` bytes.
fn text_field<'a>(o: &'a Map<String, Value>, key: &str, max: usize) -> Result<Option<&'a str>, Refused> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        Some(Value::String(_)) => Err(bad(&format!("{key} is longer than {max} bytes"))),
        Some(_) => Err(bad(&format!("{key} must be a string"))),
    }
}

/// The properties a publish may set, as a native property list (RabbitMQ's
/// JSON shape): `content_type`, `correlation_id`, `message_id`,
/// `reply_to`, `delivery_mode` (1 or 2), `priority` (0..=255),
/// `expiration` (milliseconds, as digits), `timestamp` (seconds) and
/// `headers` ([`headers_table`]). Any other property is refused by name.
fn publish_props(v: Option<&Value>) -> Result<(Vec<u8>, bool), Refused> {
    let o = match v {
        None | Some(Value::Null) => return Ok((Vec::new(), false)),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("properties must be an object")),
    };
    let mut b = PropsBuilder::new();
    let mut persistent = false;
    for (key, value) in o {
        let short = || match value {
            Value::String(s) if s.len() <= 255 => Ok(s.as_str()),
            _ => Err(bad(&format!("properties.{key} must be a string of at most 255 bytes"))),
        };
        let small =
            |max: u64| value.as_u64().filter(|n| *n <= max).ok_or_else(|| bad(&format!("bad properties.{key}")));
        b = match key.as_str() {
            "content_type" => b.content_type(short()?),
            "correlation_id" => b.correlation_id(short()?),
            "message_id" => b.message_id(short()?),
            "reply_to" => b.reply_to(short()?),
            "delivery_mode" => {
                let mode = small(2)?;
                persistent = mode == 2;
                b.delivery_mode(u8::try_from(mode).unwrap_or(1))
            }
            "priority" => b.priority(u8::try_from(small(255)?).unwrap_or(u8::MAX)),
            "expiration" => match props::expiration_ms(short()?.as_bytes()).and_then(|ms| u32::try_from(ms).ok()) {
                Some(ms) => b.expiration_ms(ms),
                None => return Err(bad("properties.expiration must be milliseconds, as digits")),
            },
            "timestamp" => b.timestamp(value.as_u64().ok_or_else(|| bad("properties.timestamp must be seconds"))?),
            "headers" => match value {
                Value::Object(h) if h.is_empty() => b,
                Value::Object(h) => b.headers(headers_table(h)?),
                _ => return Err(bad("properties.headers must be an object")),
            },
            other => return Err(bad(&format!("properties.{other} is not supported here"))),
        };
    }
    Ok((b.build(), persistent))
}

/// Headers a publish may carry.
pub const HEADERS_MAX: usize = 128;

/// `properties.headers` as a field table: each value a string (long
/// string), a whole number (64-bit signed), another number (double) or a
/// boolean, as RabbitMQ's form sends them; names of 1 to 255 bytes. A
/// nested table, an array or null is refused with the header's name.
fn headers_table(h: &Map<String, Value>) -> Result<crate::protocol::field_table::Table, Refused> {
    use crate::protocol::field_table::{Table, Value as V};
    if h.len() > HEADERS_MAX {
        return Err(bad(&format!("at most {HEADERS_MAX} headers")));
    }
    let mut t = Table::default();
    for (k, v) in h {
        if k.is_empty() || k.len() > 255 {
            return Err(bad("a header name is 1 to 255 bytes"));
        }
        let v = match v {
            Value::String(s) => V::LongStr(s.as_bytes().to_vec()),
            Value::Bool(b) => V::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => V::I64(i),
                (None, Some(f)) => V::F64(f),
                _ => return Err(bad(&format!("header {k}: a number out of range"))),
            },
            _ => return Err(bad(&format!("header {k} must be a string, a number or a boolean"))),
        };
        t.set(k, v);
    }
    Ok(t)
}

/// The payload of a publish, decoded as its `payload_encoding` says.
fn payload(o: &Map<String, Value>, max: usize) -> Result<Vec<u8>, Refused> {
    let text = text_field(o, "payload", usize::MAX)?.unwrap_or_default();
    let raw = match text_field(o, "payload_encoding", 16)?.unwrap_or("string") {
        "string" => text.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| bad("payload is not base64"))?,
        _ => return Err(bad("payload_encoding must be string or base64")),
    };
    if raw.len() > max {
        return Err(Box::new(error(StatusCode::PAYLOAD_TOO_LARGE, &format!("a message is at most {max} bytes"))));
    }
    Ok(raw)
}

/// `POST /api/exchanges/VHOST/NAME/publish`: `{"routed": true}` when the
/// message reached a queue, `false` when it reached none.
pub async fn publish(shard: &Rc<Shard>, (vhost, exchange): (&str, &str), creds: (&str, &str), body: Incoming) -> Resp {
    if !shard.has_vhost(vhost) {
        return error(StatusCode::NOT_FOUND, "no such vhost");
    }
    let max = usize::try_from(shard.config.message_bytes_max).unwrap_or(usize::MAX);
    // Base64 takes 4 bytes for 3; JSON escapes may take more (refused).
    let body_max = max.saturating_mul(2).saturating_add(PUBLISH_OVERHEAD_BYTES_MAX);
    let o = match object_body(shard, body, body_max).await {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let parsed = (|| {
        let key = text_field(&o, "routing_key", 255)?.unwrap_or_default().to_string();
        let (props, persistent) = publish_props(o.get("properties"))?;
        Ok::<_, Refused>((key, props, persistent, payload(&o, max)?))
    })();
    let (key, props, persistent, message) = match parsed {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let exchange = if exchange == "amq.default" { "" } else { exchange };
    within(shard, async {
        let client = match connect(shard, vhost, creds).await {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let opts = ProducerOptions { persistent, mandatory: true, batch_max: 1, ..Default::default() };
        let sent = async {
            let producer = client.exchange_producer(exchange, &key, opts).await?;
            producer.publish_with(&props, &message).await?.await
        }
        .await;
        client.close().await;
        match sent {
            Ok(()) => json_resp(StatusCode::OK, &json!({ "routed": true })),
            Err(e) if e.code() == Some(ErrorCode::NoRoute) => json_resp(StatusCode::OK, &json!({ "routed": false })),
            Err(e) => client_error(&e),
        }
    })
    .await
}

/// What a `get` does with the messages it took.
#[derive(Clone, Copy)]
struct AckMode {
    /// Back into the queue (a peek) rather than removed.
    requeue: bool,
    /// Removed by a reject (dead-lettered where the queue says so) rather
    /// than an ack.
    reject: bool,
}

struct GetAsk {
    count: u64,
    mode: AckMode,
    base64: bool,
    truncate: usize,
}

fn get_ask(o: &Map<String, Value>) -> Result<GetAsk, Refused> {
    let count = match o.get("count") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=GET_COUNT_MAX).contains(n))
            .ok_or_else(|| bad(&format!("count must be a whole number from 1 to {GET_COUNT_MAX}")))?,
    };
    let mode = match text_field(o, "ackmode", 32)?.unwrap_or("ack_requeue_true") {
        "ack_requeue_true" => AckMode { requeue: true, reject: false },
        "reject_requeue_true" => AckMode { requeue: true, reject: true },
        "ack_requeue_false" => AckMode { requeue: false, reject: false },
        "reject_requeue_false" => AckMode { requeue: false, reject: true },
        _ => {
            return Err(bad(
                "ackmode must be ack_requeue_true, reject_requeue_true, ack_requeue_false or reject_requeue_false",
            ))
        }
    };
    let base64 = match text_field(o, "encoding", 16)?.unwrap_or("auto") {
        "auto" => false,
        "base64" => true,
        _ => return Err(bad("encoding must be auto or base64")),
    };
    let truncate = match o.get("truncate") {
        None | Some(Value::Null) => GET_ANSWER_BYTES_MAX,
        Some(v) => v.as_u64().map_or(GET_ANSWER_BYTES_MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    Ok(GetAsk { count, mode, base64, truncate: truncate.min(GET_ANSWER_BYTES_MAX) })
}

/// `POST /api/queues/VHOST/NAME/get`: up to `count` messages, oldest
/// first, each `{"payload", "payload_encoding", "payload_bytes",
/// "redelivered", "properties"}`; `[]` when the queue is empty.
pub async fn get(shard: &Rc<Shard>, (vhost, queue): (&str, &str), creds: (&str, &str), body: Incoming) -> Resp {
    if !shard.has_vhost(vhost) {
        return error(StatusCode::NOT_FOUND, "no such vhost");
    }
    let ask = match object_body(shard, body, GET_BODY_BYTES_MAX).await.and_then(|o| get_ask(&o)) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    within(shard, async {
        let client = match connect(shard, vhost, creds).await {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let got = take(&client, queue, &ask).await;
        client.close().await;
        match got {
            Ok(rows) => json_resp(StatusCode::OK, &Value::Array(rows)),
            Err(e) => client_error(&e),
        }
    })
    .await
}

/// Takes the messages, then settles them as the ack mode says. Each is
/// held unacked until every one is taken, so a requeued one is not taken
/// twice.
async fn take(client: &Client, queue: &str, ask: &GetAsk) -> Result<Vec<Value>, ClientError> {
    let mut taken: Vec<Delivery> = Vec::new();
    let mut bytes = 0usize;
    while (taken.len() as u64) < ask.count && bytes < GET_ANSWER_BYTES_MAX {
        match client.get(queue, false).await? {
            Some(d) => {
                bytes = bytes.saturating_add(d.body.len());
                taken.push(d);
            }
            None => break,
        }
    }
    let conn = client.conn_for(queue).await?;
    for d in &taken {
        let nack = (ask.mode.requeue || ask.mode.reject).then_some(ask.mode.requeue);
        conn.ack_now(d.consumer_id, d.tag, nack).await?;
    }
    if !taken.is_empty() {
        // Acks have no reply. A request to the same owner on the same
        // connection is answered after them, so the answer below tells
        // of a queue that has settled (a requeued message is ready again).
        conn.declare(queue, crate::protocol::op::DECLARE_PASSIVE, &[]).await?;
    }
    Ok(taken.iter().map(|d| message_json(d, ask)).collect())
}

fn message_json(d: &Delivery, ask: &GetAsk) -> Value {
    let shown = &d.body[..d.body.len().min(ask.truncate)];
    let (payload, encoding) = match std::str::from_utf8(shown) {
        Ok(s) if !ask.base64 => (s.to_string(), "string"),
        _ => (base64::engine::general_purpose::STANDARD.encode(shown), "base64"),
    };
    json!({
        "payload": payload,
        "payload_encoding": encoding,
        "payload_bytes": d.body.len(),
        "redelivered": d.redelivered,
        "properties": props_json(&d.props),
    })
}

/// A message's properties in RabbitMQ's JSON shape: the short strings,
/// `delivery_mode`, `priority`, `timestamp` and `headers`.
fn props_json(raw: &[u8]) -> Value {
    let mut o = Map::new();
    let Ok(p) = Props::parse(raw) else { return Value::Object(o) };
    for (name, field) in props::SHORT_STRING_NAMES {
        if let Some(v) = p.short(field) {
            o.insert(name.into(), Value::String(String::from_utf8_lossy(v).into_owned()));
        }
    }
    for (name, field) in [("delivery_mode", props::DELIVERY_MODE), ("priority", props::PRIORITY)] {
        if let Some(v) = p.octet(field) {
            o.insert(name.into(), json!(v));
        }
    }
    if let Some(t) = p.timestamp() {
        o.insert("timestamp".into(), json!(t));
    }
    if let Some(h) = &p.headers {
        o.insert("headers".into(), Value::Object(h.0.iter().map(|(k, v)| (k.clone(), header_json(v))).collect()));
    }
    Value::Object(o)
}

/// A header's value as JSON: strings and numbers as themselves, bytes as
/// lossy UTF-8, tables and arrays nested; others as their description.
fn header_json(v: &crate::protocol::field_table::Value) -> Value {
    use crate::protocol::field_table::Value as V;
    match v {
        V::Bool(b) => json!(b),
        V::LongStr(s) | V::Bytes(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
        V::F32(f) => json!(f),
        V::F64(f) => json!(f),
        V::Timestamp(t) => json!(t),
        V::Array(a) => Value::Array(a.iter().map(header_json).collect()),
        V::Table(t) => Value::Object(t.0.iter().map(|(k, v)| (k.clone(), header_json(v))).collect()),
        V::Void => Value::Null,
        other => match other.as_int() {
            Some(i) => i64::try_from(i).map_or_else(|_| json!(other.describe()), |i| json!(i)),
            None => json!(other.describe()),
        },
    }
}
