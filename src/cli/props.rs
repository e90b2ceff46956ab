//! Message properties for the command-line tools: `ringmq pub`'s flags
//! built into an AMQP property list (what native messages carry in their
//! entry's `props`, `protocol::props`), and a delivery shown as one JSON
//! object (`ringmq sub --format json`, `ringmq ctl get`).

use base64::Engine as _;
use clap::Args;
use ringmq::protocol::field_table::{Table, TableBuilder};
use ringmq::protocol::props::{self, Props, PropsBuilder};
use serde_json::{json, Map, Value};

/// `ringmq pub`'s property flags. Every one is carried by the native
/// protocol: the entry's `props` is an AMQP property list, which an AMQP
/// consumer of the same queue receives as its basic properties.
#[derive(Args, Debug, Clone, Default)]
pub struct PropArgs {
    /// A header, KEY=VALUE (repeatable); integers are sent as integers,
    /// `true`/`false` as booleans, anything else as a string.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// The body's MIME type, e.g. `application/json`.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Message priority (0-255; a queue with `x-max-priority` orders by it).
    #[arg(long)]
    pub priority: Option<u8>,
    /// Per-message TTL in milliseconds (the `expiration` property).
    #[arg(long, value_name = "MS")]
    pub ttl: Option<u32>,
    /// Matches a reply to its request (RPC).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Where replies go: a queue, or `amq.rabbitmq.reply-to`.
    #[arg(long)]
    pub reply_to: Option<String>,
}

/// AMQP short strings: at most 255 bytes, refused rather than cut.
const SHORT_STR_MAX: usize = 255;

impl PropArgs {
    fn any(&self) -> bool {
        !self.headers.is_empty()
            || self.content_type.is_some()
            || self.priority.is_some()
            || self.ttl.is_some()
            || self.correlation_id.is_some()
            || self.reply_to.is_some()
    }

    /// The property list; empty (no properties at all, as before these
    /// flags) when none is given. `persistent` adds `delivery_mode` 2.
    pub fn build(&self, persistent: bool) -> Result<Vec<u8>, String> {
        if !self.any() {
            return Ok(Vec::new());
        }
        let mut b = PropsBuilder::new();
        let short = |what: &str, v: &str| {
            if v.len() > SHORT_STR_MAX {
                return Err(format!("--{what} is {} bytes; at most {SHORT_STR_MAX}", v.len()));
            }
            Ok(())
        };
        if let Some(v) = &self.content_type {
            short("content-type", v)?;
            b = b.content_type(v);
        }
        if !self.headers.is_empty() {
            let mut t = TableBuilder::new();
            for h in &self.headers {
                t = t.parse_arg(h).map_err(|e| e.to_string().replace("queue argument", "header"))?;
            }
            b = b.headers(Table::parse(&t.build()).map_err(|e| format!("headers: {e}"))?);
        }
        if persistent {
            b = b.delivery_mode(2);
        }
        if let Some(v) = self.priority {
            b = b.priority(v);
        }
        if let Some(v) = &self.correlation_id {
            short("correlation-id", v)?;
            b = b.correlation_id(v);
        }
        if let Some(v) = &self.reply_to {
            short("reply-to", v)?;
            b = b.reply_to(v);
        }
        if let Some(ms) = self.ttl {
            b = b.expiration_ms(ms);
        }
        Ok(b.build())
    }
}

/// A message body as JSON: the text when it is UTF-8, else base64, and
/// which (`body_encoding`: `utf8` or `base64`).
pub fn body_json(body: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(body) {
        Ok(s) => (Value::String(s.to_string()), "utf8"),
        Err(_) => (Value::String(base64::engine::general_purpose::STANDARD.encode(body)), "base64"),
    }
}

/// A delivery as one JSON object. `exchange` and `routing_key` are null
/// without `origin`: a `GetOk` does not carry them, and a `Deliver` only
/// to a consumer that asked (`sub --format json` does).
pub fn delivery_json(body: &[u8], raw_props: &[u8], redelivered: bool, origin: Option<(&str, &str)>) -> Value {
    let (body, encoding) = body_json(body);
    let (properties, headers) = properties_json(raw_props);
    json!({
        "body": body,
        "body_encoding": encoding,
        "properties": properties,
        "headers": headers,
        "exchange": origin.map_or(Value::Null, |o| json!(o.0)),
        "routing_key": origin.map_or(Value::Null, |o| json!(o.1)),
        "redelivered": redelivered,
    })
}

/// The properties as a JSON object (the fields present, by AMQP's names)
/// and the headers as another (null without). Properties that are not an
/// AMQP property list (opaque bytes a native publisher chose) are shown
/// as `{"raw_base64": ...}`.
pub fn properties_json(raw: &[u8]) -> (Value, Value) {
    if raw.is_empty() {
        return (Value::Object(Map::new()), Value::Null);
    }
    let Ok(p) = Props::parse(raw) else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        return (json!({ "raw_base64": b64 }), Value::Null);
    };
    let mut o = Map::new();
    for (name, field) in props::SHORT_STRING_NAMES {
        if let Some(v) = p.short(field) {
            o.insert(name.into(), body_json(v).0);
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
    let headers = match &p.headers {
        Some(t) => ringmq::server::admin::table_json(&t.encode()),
        None => Value::Null,
    };
    (Value::Object(o), headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_a_property_list_that_reads_back() {
        let a = PropArgs {
            headers: vec!["k=v".into(), "n=7".into(), "yes=true".into()],
            content_type: Some("text/plain".into()),
            priority: Some(5),
            ttl: Some(60000),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
        };
        let raw = a.build(true).unwrap();
        let (p, h) = properties_json(&raw);
        assert_eq!(p["content_type"], "text/plain");
        assert_eq!(p["priority"], 5);
        assert_eq!(p["expiration"], "60000");
        assert_eq!(p["correlation_id"], "c-1");
        assert_eq!(p["reply_to"], "replies");
        assert_eq!(p["delivery_mode"], 2);
        assert_eq!(h, json!({ "k": "v", "n": 7, "yes": true }));
        assert!(PropArgs::default().build(true).unwrap().is_empty(), "no flags, no properties");
    }

    #[test]
    fn bad_flags_are_refused_not_cut() {
        let long = PropArgs { correlation_id: Some("x".repeat(256)), ..Default::default() };
        assert!(long.build(false).unwrap_err().contains("at most 255"));
        let bad = PropArgs { headers: vec!["novalue".into()], ..Default::default() };
        assert!(bad.build(false).unwrap_err().contains("header"));
    }

    #[test]
    fn bodies_are_text_or_base64_and_opaque_props_are_shown_raw() {
        assert_eq!(body_json(b"hi"), (json!("hi"), "utf8"));
        assert_eq!(body_json(&[0xff, 0x00]), (json!("/wA="), "base64"));
        let (p, h) = properties_json(b"\x01opaque");
        assert_eq!((p["raw_base64"].as_str(), h), (Some("AW9wYXF1ZQ=="), Value::Null));
        let d = delivery_json(b"x", &[], true, None);
        assert_eq!(d["redelivered"], true);
        assert_eq!(d["exchange"], Value::Null);
        let d = delivery_json(b"x", &[], false, Some(("", "q")));
        assert_eq!((&d["exchange"], &d["routing_key"]), (&json!(""), &json!("q")));
        assert_eq!(d["properties"], json!({}));
    }
}
