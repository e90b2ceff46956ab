//! AMQP basic properties as stored in a message entry's `props`: the
//! property flags (`u16`, big-endian) then the present fields in flag
//! order. AMQP messages are stored this way, and native publishers use the
//! same encoding when they want the broker to act on properties (priority,
//! per-message TTL, dead-letter headers). Anything else in `props` is
//! opaque to the broker.
//!
//! - [`scan`]: the fields the broker acts on, cheaply (no table walk).
//! - [`Props::parse`]: every field, the headers as a [`Table`].
//! - [`rewrite`]: new headers and no `expiration` (dead-lettering).
//! - [`has_reply_to`], [`reply_to`], [`with_reply_to`]: direct reply-to
//!   (`protocol::reply_to`) reads and replaces the `reply_to` property.
//! - [`PropsBuilder`]: properties for a native publisher.

use super::field_table::{Table, TableError};
use crate::protocol::wire::len32;
use bytes::BufMut;
use std::ops::Range;

pub const CONTENT_TYPE: usize = 0;
pub const CONTENT_ENCODING: usize = 1;
pub const HEADERS: usize = 2;
pub const DELIVERY_MODE: usize = 3;
pub const PRIORITY: usize = 4;
pub const CORRELATION_ID: usize = 5;
pub const REPLY_TO: usize = 6;
pub const EXPIRATION: usize = 7;
pub const MESSAGE_ID: usize = 8;
pub const TIMESTAMP: usize = 9;
pub const TYPE: usize = 10;
pub const USER_ID: usize = 11;
pub const APP_ID: usize = 12;
pub const CLUSTER_ID: usize = 13;
pub const FIELDS: usize = 14;

/// The short-string properties by the names RabbitMQ's JSON uses (its
/// management API, and `ringmq sub --format json`), in wire order.
pub const SHORT_STRING_NAMES: [(&str, usize); 10] = [
    ("content_type", CONTENT_TYPE),
    ("content_encoding", CONTENT_ENCODING),
    ("correlation_id", CORRELATION_ID),
    ("reply_to", REPLY_TO),
    ("expiration", EXPIRATION),
    ("message_id", MESSAGE_ID),
    ("type", TYPE),
    ("user_id", USER_ID),
    ("app_id", APP_ID),
    ("cluster_id", CLUSTER_ID),
];

#[derive(Clone, Copy)]
enum Kind {
    ShortStr,
    Table,
    Octet,
    U64,
}

/// Field `i` is flag bit `15 - i`.
const KINDS: [Kind; FIELDS] = {
    use Kind::*;
    [
        ShortStr, ShortStr, Table, Octet, Octet, ShortStr, ShortStr, ShortStr, ShortStr, U64, ShortStr, ShortStr,
        ShortStr, ShortStr,
    ]
};

fn bit(i: usize) -> u16 {
    1 << (15 - i)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropsError {
    #[error("properties are not an AMQP property list: {0}")]
    Syntax(&'static str),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Byte ranges of every present field (length prefixes included).
type Spans = [Option<Range<usize>>; FIELDS];

/// Walks the property list; `Err` unless it is exactly one well-formed
/// list (table contents are only checked by length here).
fn spans(raw: &[u8]) -> Result<(u16, Spans), PropsError> {
    let short = PropsError::Syntax("a field runs past the end");
    if raw.len() < 2 {
        return Err(PropsError::Syntax("shorter than the property flags"));
    }
    let flags = u16::from_be_bytes([raw[0], raw[1]]);
    if flags & 1 != 0 {
        return Err(PropsError::Syntax("property flags continuation is not supported"));
    }
    if flags & 0b10 != 0 {
        return Err(PropsError::Syntax("undefined property flag bit 1"));
    }
    let mut at = 2usize;
    let mut out: Spans = Default::default();
    for (i, kind) in KINDS.iter().enumerate() {
        if flags & bit(i) == 0 {
            continue;
        }
        let len = match kind {
            Kind::ShortStr => 1 + usize::from(*raw.get(at).ok_or(short.clone())?),
            Kind::Table => {
                let b = raw.get(at..at.saturating_add(4)).ok_or(short.clone())?;
                let n = usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).map_err(|_| short.clone())?;
                n.checked_add(4).ok_or(short.clone())?
            }
            Kind::Octet => 1,
            Kind::U64 => 8,
        };
        let end = at.checked_add(len).filter(|e| *e <= raw.len()).ok_or(short.clone())?;
        out[i] = Some(at..end);
        at = end;
    }
    if at != raw.len() {
        return Err(PropsError::Syntax("trailing bytes after the last property"));
    }
    Ok((flags, out))
}

/// What the broker acts on when a message is enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan<'a> {
    pub priority: Option<u8>,
    /// The `expiration` property's text (RabbitMQ: milliseconds).
    pub expiration: Option<&'a [u8]>,
    pub delivery_mode: Option<u8>,
}

/// Reads priority, expiration and delivery mode; `None` when `raw` is not
/// an AMQP property list (opaque native properties). Cheap: no table walk.
pub fn scan(raw: &[u8]) -> Option<Scan<'_>> {
    let (_, s) = spans(raw).ok()?;
    let octet = |i: usize| s[i].as_ref().map(|r| raw[r.start]);
    Some(Scan {
        priority: octet(PRIORITY),
        delivery_mode: octet(DELIVERY_MODE),
        expiration: s[EXPIRATION].as_ref().map(|r| &raw[r.start + 1..r.end]),
    })
}

/// Parses an `expiration` property: a decimal number of milliseconds, as
/// RabbitMQ requires (no sign, no spaces), at most `u32::MAX`.
pub fn expiration_ms(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse::<u64>().ok().filter(|v| *v <= u64::from(u32::MAX))
}

/// The `timestamp` field of a property list (seconds since the epoch),
/// without parsing its headers: no allocation.
pub fn timestamp_of(raw: &[u8]) -> Option<u64> {
    let (_, spans) = spans(raw).ok()?;
    timestamp_in(raw, &spans)
}

fn timestamp_in(raw: &[u8], spans: &Spans) -> Option<u64> {
    let r = spans[TIMESTAMP].as_ref()?;
    let b: [u8; 8] = raw.get(r.start..r.end)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// A whole property list with its headers parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Props<'a> {
    raw: &'a [u8],
    flags: u16,
    spans: Spans,
    pub headers: Option<Table>,
}

impl<'a> Props<'a> {
    /// Parses a property list; its headers may nest up to
    /// [`super::field_table::TABLE_DEPTH_CEILING`] levels.
    pub fn parse(raw: &'a [u8]) -> Result<Self, PropsError> {
        let (flags, spans) = spans(raw)?;
        let headers = match &spans[HEADERS] {
            // Reading, not admitting: any depth the broker may have accepted
            // (its `table_depth_max` applied where the message came in).
            Some(r) => Some(Table::parse_limited(&raw[r.start + 4..r.end], super::field_table::TABLE_DEPTH_CEILING)?),
            None => None,
        };
        Ok(Self { raw, flags, spans, headers })
    }

    /// A short-string field's text.
    pub fn short(&self, field: usize) -> Option<&'a [u8]> {
        let r = self.spans.get(field)?.as_ref()?;
        matches!(KINDS[field], Kind::ShortStr).then(|| &self.raw[r.start + 1..r.end])
    }

    pub fn is_set(&self, field: usize) -> bool {
        field < FIELDS && self.flags & bit(field) != 0
    }

    /// An octet field's value (`delivery_mode`, `priority`).
    pub fn octet(&self, field: usize) -> Option<u8> {
        let r = self.spans.get(field)?.as_ref()?;
        matches!(KINDS[field], Kind::Octet).then(|| self.raw[r.start])
    }

    /// The `timestamp` field (seconds since the epoch).
    pub fn timestamp(&self) -> Option<u64> {
        timestamp_in(self.raw, &self.spans)
    }
}

/// `raw` (an AMQP property list, or empty for none) with its headers
/// replaced by `headers` and, when `drop_expiration`, no `expiration`.
/// Every other field is copied as it was.
pub fn rewrite(raw: &[u8], headers: &Table, drop_expiration: bool) -> Result<Vec<u8>, PropsError> {
    let (flags, spans) = if raw.is_empty() { (0, Default::default()) } else { spans(raw)? };
    let mut flags = flags | bit(HEADERS);
    if drop_expiration {
        flags &= !bit(EXPIRATION);
    }
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.put_u16(flags);
    for (i, span) in spans.iter().enumerate() {
        if i == HEADERS {
            let t = headers.encode();
            out.put_u32(len32(t.len()));
            out.put_slice(&t);
        } else if let Some(r) = span.as_ref().filter(|_| flags & bit(i) != 0) {
            out.put_slice(&raw[r.clone()]);
        }
    }
    Ok(out)
}

/// Whether the flags say `reply_to` is set: one bit test, so a publish
/// without it pays nothing more (`raw` may be opaque native properties).
#[inline]
pub fn has_reply_to(raw: &[u8]) -> bool {
    matches!(raw, [hi, lo, ..] if u16::from_be_bytes([*hi, *lo]) & bit(REPLY_TO) != 0)
}

/// The `reply_to` property's text, when `raw` is an AMQP property list
/// that has one.
pub fn reply_to(raw: &[u8]) -> Option<&[u8]> {
    let (_, s) = spans(raw).ok()?;
    s[REPLY_TO].as_ref().map(|r| &raw[r.start + 1..r.end])
}

/// `raw` (an AMQP property list) with `reply_to` set to `value` (at most
/// 255 bytes); every other field is copied as it was.
pub fn with_reply_to(raw: &[u8], value: &str) -> Result<Vec<u8>, PropsError> {
    let len = u8::try_from(value.len()).map_err(|_| PropsError::Syntax("reply_to longer than 255 bytes"))?;
    let (flags, spans) = if raw.is_empty() { (0, Default::default()) } else { spans(raw)? };
    let flags = flags | bit(REPLY_TO);
    let mut out = Vec::with_capacity(raw.len() + value.len() + 1);
    out.put_u16(flags);
    for (i, span) in spans.iter().enumerate() {
        if i == REPLY_TO {
            out.put_u8(len);
            out.put_slice(value.as_bytes());
        } else if let Some(r) = span {
            out.put_slice(&raw[r.clone()]);
        }
    }
    Ok(out)
}

/// Properties for a native publisher, encoded like AMQP's.
#[derive(Debug, Clone, Default)]
pub struct PropsBuilder {
    content_type: Option<String>,
    content_encoding: Option<String>,
    headers: Option<Table>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    expiration: Option<String>,
    message_id: Option<String>,
    timestamp: Option<u64>,
    kind: Option<String>,
    user_id: Option<String>,
    app_id: Option<String>,
}

impl PropsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn content_type(mut self, v: &str) -> Self {
        self.content_type = Some(v.into());
        self
    }

    /// How the body is encoded (`gzip`, ...).
    pub fn content_encoding(mut self, v: &str) -> Self {
        self.content_encoding = Some(v.into());
        self
    }

    pub fn headers(mut self, t: Table) -> Self {
        self.headers = Some(t);
        self
    }

    /// 2 = persistent (informational for native publishers: the Publish
    /// frame's flag decides).
    pub fn delivery_mode(mut self, v: u8) -> Self {
        self.delivery_mode = Some(v);
        self
    }

    pub fn priority(mut self, v: u8) -> Self {
        self.priority = Some(v);
        self
    }

    /// Matches a reply to its request (RPC).
    pub fn correlation_id(mut self, v: &str) -> Self {
        self.correlation_id = Some(v.into());
        self
    }

    /// Where replies go: a queue, or a direct reply-to name
    /// (`protocol::reply_to`).
    pub fn reply_to(mut self, v: &str) -> Self {
        self.reply_to = Some(v.into());
        self
    }

    /// Per-message TTL in milliseconds.
    pub fn expiration_ms(mut self, ms: u32) -> Self {
        self.expiration = Some(ms.to_string());
        self
    }

    pub fn message_id(mut self, v: &str) -> Self {
        self.message_id = Some(v.into());
        self
    }

    pub fn timestamp(mut self, secs: u64) -> Self {
        self.timestamp = Some(secs);
        self
    }

    /// The message's type name (AMQP's `type` property).
    pub fn kind(mut self, v: &str) -> Self {
        self.kind = Some(v.into());
        self
    }

    /// The publishing user, as the application states it (RabbitMQ checks
    /// it against the login; ringmq carries it as is).
    pub fn user_id(mut self, v: &str) -> Self {
        self.user_id = Some(v.into());
        self
    }

    /// The publishing application's name.
    pub fn app_id(mut self, v: &str) -> Self {
        self.app_id = Some(v.into());
        self
    }

    pub fn build(self) -> Vec<u8> {
        let mut flags = 0u16;
        let mut body = Vec::new();
        let short = |b: &mut Vec<u8>, s: &str| {
            let n = s.len().min(255);
            b.put_u8(u8::try_from(n).unwrap_or(u8::MAX));
            b.put_slice(&s.as_bytes()[..n]);
        };
        if let Some(v) = &self.content_type {
            flags |= bit(CONTENT_TYPE);
            short(&mut body, v);
        }
        if let Some(v) = &self.content_encoding {
            flags |= bit(CONTENT_ENCODING);
            short(&mut body, v);
        }
        if let Some(t) = &self.headers {
            flags |= bit(HEADERS);
            let raw = t.encode();
            body.put_u32(len32(raw.len()));
            body.put_slice(&raw);
        }
        if let Some(v) = self.delivery_mode {
            flags |= bit(DELIVERY_MODE);
            body.put_u8(v);
        }
        if let Some(v) = self.priority {
            flags |= bit(PRIORITY);
            body.put_u8(v);
        }
        if let Some(v) = &self.correlation_id {
            flags |= bit(CORRELATION_ID);
            short(&mut body, v);
        }
        if let Some(v) = &self.reply_to {
            flags |= bit(REPLY_TO);
            short(&mut body, v);
        }
        if let Some(v) = &self.expiration {
            flags |= bit(EXPIRATION);
            short(&mut body, v);
        }
        if let Some(v) = &self.message_id {
            flags |= bit(MESSAGE_ID);
            short(&mut body, v);
        }
        if let Some(v) = self.timestamp {
            flags |= bit(TIMESTAMP);
            body.put_u64(v);
        }
        // Flag order: the fields after the timestamp.
        for (field, v) in [(TYPE, &self.kind), (USER_ID, &self.user_id), (APP_ID, &self.app_id)] {
            if let Some(v) = v {
                flags |= bit(field);
                short(&mut body, v);
            }
        }
        let mut out = Vec::with_capacity(2 + body.len());
        out.put_u16(flags);
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::field_table::Value;

    /// Every field a builder sets parses back, in flag order.
    #[test]
    fn every_field_round_trips() {
        let mut h = Table::default();
        h.set("k", Value::str("v"));
        let raw = PropsBuilder::new()
            .content_type("application/json")
            .content_encoding("gzip")
            .headers(h.clone())
            .delivery_mode(2)
            .priority(3)
            .correlation_id("c")
            .reply_to("r")
            .expiration_ms(10)
            .message_id("m")
            .timestamp(7)
            .kind("order.created")
            .user_id("guest")
            .app_id("shop")
            .build();
        let p = Props::parse(&raw).unwrap();
        let expect: [(usize, &[u8]); 9] = [
            (CONTENT_TYPE, b"application/json"),
            (CONTENT_ENCODING, b"gzip"),
            (CORRELATION_ID, b"c"),
            (REPLY_TO, b"r"),
            (EXPIRATION, b"10"),
            (MESSAGE_ID, b"m"),
            (TYPE, b"order.created"),
            (USER_ID, b"guest"),
            (APP_ID, b"shop"),
        ];
        for (field, v) in expect {
            assert_eq!(p.short(field), Some(v), "field {field}");
        }
        assert_eq!((p.octet(DELIVERY_MODE), p.octet(PRIORITY), p.timestamp()), (Some(2), Some(3), Some(7)));
        assert_eq!(p.headers, Some(h));
        assert!(!p.is_set(CLUSTER_ID));
        // The same without parsing the headers; none without the field or a list.
        assert_eq!(timestamp_of(&raw), Some(7));
        assert_eq!(timestamp_of(&PropsBuilder::new().priority(1).build()), None);
        assert_eq!(timestamp_of(&[]), None);
    }

    #[test]
    fn scan_finds_priority_and_expiration() {
        let mut h = Table::default();
        h.set("k", Value::str("v"));
        let raw = PropsBuilder::new()
            .content_type("text/plain")
            .headers(h)
            .delivery_mode(2)
            .priority(7)
            .expiration_ms(1500)
            .message_id("m1")
            .build();
        let s = scan(&raw).unwrap();
        assert_eq!(s.priority, Some(7));
        assert_eq!(s.delivery_mode, Some(2));
        assert_eq!(s.expiration.and_then(expiration_ms), Some(1500));
        let p = Props::parse(&raw).unwrap();
        assert_eq!(p.short(CONTENT_TYPE), Some(&b"text/plain"[..]));
        assert_eq!((p.octet(PRIORITY), p.octet(DELIVERY_MODE), p.octet(CONTENT_TYPE)), (Some(7), Some(2), None));
        assert_eq!(p.timestamp(), None);
        let t = Props::parse(&PropsBuilder::new().timestamp(1_700_000_000).build()).unwrap().timestamp();
        assert_eq!(t, Some(1_700_000_000));
        assert_eq!(p.headers.as_ref().and_then(|h| h.get("k")), Some(&Value::str("v")));
        assert!(scan(b"native opaque").is_none());
        assert!(scan(&raw[..raw.len() - 1]).is_none());
        assert_eq!(scan(&[0, 0]), Some(Scan::default()));
    }

    #[test]
    fn expiration_text_must_be_plain_milliseconds() {
        assert_eq!(expiration_ms(b"0"), Some(0));
        assert_eq!(expiration_ms(b"4294967295"), Some(u64::from(u32::MAX)));
        for bad in [&b""[..], b"-1", b" 5", b"1.5", b"4294967296", b"abc"] {
            assert_eq!(expiration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rewrite_replaces_headers_drops_expiration_keeps_the_rest() {
        let raw = PropsBuilder::new().content_type("a").priority(3).expiration_ms(10).message_id("id").build();
        let mut h = Table::default();
        h.set("x-death", Value::Array(vec![]));
        let out = rewrite(&raw, &h, true).unwrap();
        let p = Props::parse(&out).unwrap();
        assert_eq!(p.headers, Some(h.clone()));
        assert!(!p.is_set(EXPIRATION));
        assert_eq!(p.short(CONTENT_TYPE), Some(&b"a"[..]));
        assert_eq!(p.short(MESSAGE_ID), Some(&b"id"[..]));
        assert_eq!(scan(&out).unwrap().priority, Some(3));
        // No properties at all: headers only.
        let out = rewrite(&[], &h, true).unwrap();
        assert_eq!(Props::parse(&out).unwrap().headers, Some(h));
    }

    #[test]
    fn reply_to_is_read_and_replaced_keeping_the_rest() {
        let raw = PropsBuilder::new()
            .content_type("a")
            .correlation_id("c1")
            .reply_to("amq.rabbitmq.reply-to")
            .message_id("m")
            .build();
        assert!(has_reply_to(&raw));
        assert_eq!(reply_to(&raw), Some(&b"amq.rabbitmq.reply-to"[..]));
        let out = with_reply_to(&raw, "amq.rabbitmq.reply-to.00ff").unwrap();
        let p = Props::parse(&out).unwrap();
        assert_eq!(p.short(REPLY_TO), Some(&b"amq.rabbitmq.reply-to.00ff"[..]));
        assert_eq!(p.short(CORRELATION_ID), Some(&b"c1"[..]));
        assert_eq!(p.short(CONTENT_TYPE), Some(&b"a"[..]));
        assert_eq!(p.short(MESSAGE_ID), Some(&b"m"[..]));
        let none = PropsBuilder::new().priority(1).build();
        assert!(!has_reply_to(&none) && reply_to(&none).is_none());
        assert!(!has_reply_to(b"") && !has_reply_to(b"\x00"));
        assert!(with_reply_to(&raw, &"x".repeat(256)).is_err());
        assert_eq!(reply_to(&with_reply_to(&[], "r").unwrap()), Some(&b"r"[..]));
    }
}
