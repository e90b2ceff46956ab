//! Queue policies set through declare arguments, with RabbitMQ's names
//! and limits (docs/policies.md): parsed and checked once at the
//! connection that receives the declare, carried to the owner as a
//! `QueueArgs`, logged raw for durable queues.

use crate::protocol::field_table::{Table, Value};
use crate::protocol::ErrorCode;
use bytes::Bytes;

/// What a queue does with a publish that finds it full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Accept the new message, drop (dead-letter) the oldest.
    #[default]
    DropHead,
    /// Refuse the new message (AMQP: basic.nack; native: `QueueFull`).
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

impl Overflow {
    pub fn name(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// A queue's parsed arguments. `Default` is a plain classic queue.
#[derive(Debug, Clone, Default)]
pub struct QueueArgs {
    /// `x-message-ttl`, milliseconds.
    pub message_ttl: Option<u32>,
    /// `x-expires`, milliseconds unused before the queue is deleted.
    pub expires: Option<u32>,
    /// `x-max-length`: ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: bytes of ready message bodies.
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// `x-max-priority`: priorities 0..=this are honoured.
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-queue-leader-locator: balanced`: a clustered node places the
    /// queue on the member with the fewest (`client-local`, the default:
    /// on the node that declares it).
    pub balanced: bool,
    /// `x-queue-type: stream` (`queue/stream.rs`): an append-only log read
    /// from offsets, kept by retention, never emptied by acks.
    pub stream: bool,
    /// A stream's `x-max-age`, in milliseconds (RabbitMQ's `7D`, `12h`, ...).
    pub max_age_ms: Option<u64>,
    /// A stream's `x-stream-max-segment-size-bytes`: retention drops whole
    /// segments of this many entry bytes.
    pub stream_segment_bytes: Option<u64>,
    /// The table as declared (no length prefix): what the storage log
    /// keeps, so a restarted durable queue is parsed exactly as before.
    pub raw: Bytes,
}

/// Why a declare's arguments are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// `InvalidArgument` (AMQP 406); `unsupported` marks an argument this
    /// broker does not implement (AMQP 540, as before policies existed).
    pub code: ErrorCode,
    pub unsupported: bool,
    pub message: String,
}

fn invalid(queue: &str, key: &str, why: impl std::fmt::Display) -> ArgError {
    ArgError {
        code: ErrorCode::InvalidArgument,
        unsupported: false,
        message: format!("invalid arg '{key}' for queue {}: {why}", crate::routing::vhost::describe(queue)),
    }
}

/// An integer argument in `lo..=hi`, as the field's type (the range is
/// within the type's, so the conversion cannot fail once it is checked).
fn int_in<T: TryFrom<i128>>(queue: &str, key: &str, v: &Value, lo: i128, hi: i128) -> Result<T, ArgError> {
    match v.as_int() {
        Some(i) if (lo..=hi).contains(&i) => {
            T::try_from(i).map_err(|_| invalid(queue, key, format!("{i} does not fit the argument's type")))
        }
        Some(i) => Err(invalid(queue, key, format!("{i} is outside {lo}..={hi}"))),
        None => Err(invalid(queue, key, format!("expected an integer, got {}", v.describe()))),
    }
}

fn string(queue: &str, key: &str, v: &Value) -> Result<String, ArgError> {
    match v.as_str() {
        Some(s) if s.len() <= 255 => Ok(s.to_string()),
        Some(_) => Err(invalid(queue, key, "longer than 255 bytes")),
        None => Err(invalid(queue, key, format!("expected a string, got {}", v.describe()))),
    }
}

/// On the inter-node link a queue's arguments travel as the table the
/// client declared, and are parsed and checked again where they arrive.
impl serde::Serialize for QueueArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for QueueArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Bytes::deserialize(d)?;
        QueueArgs::parse(&raw, "").map_err(|e| serde::de::Error::custom(e.message))
    }
}

const U32: i128 = u32::MAX as i128;
const I64: i128 = i64::MAX as i128;

impl QueueArgs {
    /// Parses and checks a raw table (a declare's `arguments`). Unknown
    /// arguments are ignored, as RabbitMQ does.
    pub fn parse(raw: &[u8], queue: &str) -> Result<QueueArgs, ArgError> {
        let mut a = QueueArgs { raw: Bytes::copy_from_slice(raw), ..Default::default() };
        if raw.is_empty() {
            return Ok(a);
        }
        // Held to `table_depth_max` where they came in (the connection's
        // decode); any depth the broker could accept parses here, so
        // stored queues recover whatever the limit is now.
        let t = Table::parse_limited(raw, crate::protocol::field_table::TABLE_DEPTH_CEILING)
            .map_err(|e| invalid(queue, "arguments", e))?;
        // Stream-only arguments are read once the type is known: a classic
        // queue ignores them, as RabbitMQ does.
        let (mut max_age, mut segment) = (None, None);
        let mut given: Vec<&str> = Vec::new();
        for (key, v) in &t.0 {
            let k = key.as_str();
            given.push(k);
            match k {
                "x-max-age" => max_age = Some(v),
                "x-stream-max-segment-size-bytes" => segment = Some(v),
                "x-message-ttl" => a.message_ttl = Some(int_in(queue, k, v, 0, U32)?),
                "x-expires" => a.expires = Some(int_in(queue, k, v, 1, U32)?),
                "x-max-length" => a.max_length = Some(int_in(queue, k, v, 0, I64)?),
                "x-max-length-bytes" => a.max_length_bytes = Some(int_in(queue, k, v, 0, I64)?),
                "x-max-priority" => a.max_priority = Some(int_in(queue, k, v, 0, 255)?),
                "x-overflow" => {
                    a.overflow = match string(queue, k, v)?.as_str() {
                        "drop-head" => Overflow::DropHead,
                        "reject-publish" => Overflow::RejectPublish,
                        "reject-publish-dlx" => Overflow::RejectPublishDlx,
                        other => {
                            return Err(invalid(
                                queue,
                                k,
                                format!("{other:?} is not one of drop-head, reject-publish, reject-publish-dlx"),
                            ))
                        }
                    }
                }
                "x-dead-letter-exchange" => a.dead_letter_exchange = Some(string(queue, k, v)?),
                "x-dead-letter-routing-key" => a.dead_letter_routing_key = Some(string(queue, k, v)?),
                "x-single-active-consumer" => match v {
                    Value::Bool(b) => a.single_active_consumer = *b,
                    _ => return Err(invalid(queue, k, format!("expected a boolean, got {}", v.describe()))),
                },
                "x-queue-leader-locator" => {
                    a.balanced = match string(queue, k, v)?.as_str() {
                        "client-local" => false,
                        "balanced" => true,
                        other => {
                            return Err(invalid(queue, k, format!("{other:?} is not one of client-local, balanced")))
                        }
                    }
                }
                "x-queue-type" => match v.as_str() {
                    Some("classic") => {}
                    Some("stream") => a.stream = true,
                    Some(other) => {
                        return Err(ArgError {
                            code: ErrorCode::InvalidArgument,
                            unsupported: true,
                            message: format!(
                                "queue type '{other}' is not implemented; only 'classic' and 'stream' queues exist"
                            ),
                        })
                    }
                    None => return Err(invalid(queue, k, format!("expected a string, got {}", v.describe()))),
                },
                _ => {}
            }
        }
        if a.stream {
            a.stream_args(queue, &given, max_age, segment)?;
        }
        if a.dead_letter_routing_key.is_some() && a.dead_letter_exchange.is_none() {
            return Err(invalid(
                queue,
                "x-dead-letter-routing-key",
                "x-dead-letter-routing-key must be specified together with x-dead-letter-exchange",
            ));
        }
        Ok(a)
    }

    /// Whether a redeclare's arguments match: `Err` names the first one
    /// that differs (RabbitMQ's "inequivalent arg").
    pub fn equivalent(&self, other: &QueueArgs, queue: &str) -> Result<(), Inequivalent> {
        let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        let kind = |a: &QueueArgs| Some(if a.stream { "stream" } else { "classic" }.to_string());
        let fields: [(&str, Option<String>, Option<String>); 12] = [
            ("x-queue-type", kind(self), kind(other)),
            ("x-max-age", self.max_age_ms.map(|v| format!("{v} ms")), other.max_age_ms.map(|v| format!("{v} ms"))),
            (
                "x-stream-max-segment-size-bytes",
                self.stream_segment_bytes.map(|v| v.to_string()),
                other.stream_segment_bytes.map(|v| v.to_string()),
            ),
            ("x-message-ttl", self.message_ttl.map(|v| v.to_string()), other.message_ttl.map(|v| v.to_string())),
            ("x-expires", self.expires.map(|v| v.to_string()), other.expires.map(|v| v.to_string())),
            ("x-max-length", self.max_length.map(|v| v.to_string()), other.max_length.map(|v| v.to_string())),
            (
                "x-max-length-bytes",
                self.max_length_bytes.map(|v| v.to_string()),
                other.max_length_bytes.map(|v| v.to_string()),
            ),
            ("x-overflow", Some(self.overflow.name().into()), Some(other.overflow.name().into())),
            ("x-dead-letter-exchange", self.dead_letter_exchange.clone(), other.dead_letter_exchange.clone()),
            ("x-dead-letter-routing-key", self.dead_letter_routing_key.clone(), other.dead_letter_routing_key.clone()),
            ("x-max-priority", self.max_priority.map(|v| v.to_string()), other.max_priority.map(|v| v.to_string())),
            (
                "x-single-active-consumer",
                Some(self.single_active_consumer.to_string()),
                Some(other.single_active_consumer.to_string()),
            ),
        ];
        for (key, current, received) in fields {
            if current != received {
                let queue = crate::routing::vhost::describe(queue);
                return Err(Inequivalent { key, queue, received: show(received), current: show(current) });
            }
        }
        Ok(())
    }

    /// A stream's own checks: the arguments RabbitMQ refuses for a stream,
    /// the ones it ignores cleared (a stream never dead-letters, and
    /// `x-max-length` does not apply to it), and its retention parsed.
    fn stream_args(
        &mut self,
        queue: &str,
        given: &[&str],
        max_age: Option<&Value>,
        segment: Option<&Value>,
    ) -> Result<(), ArgError> {
        const REFUSED: [&str; 6] =
            ["x-expires", "x-message-ttl", "x-max-priority", "x-overflow", "x-single-active-consumer", "x-queue-mode"];
        if let Some(k) = given.iter().find(|k| REFUSED.contains(k)) {
            return Err(invalid(queue, k, "not supported by stream queues"));
        }
        self.max_length = None;
        self.dead_letter_exchange = None;
        self.dead_letter_routing_key = None;
        if let Some(v) = max_age {
            let text = string(queue, "x-max-age", v)?;
            self.max_age_ms = Some(max_age_ms(&text).ok_or_else(|| {
                invalid(queue, "x-max-age", format!("{text:?} is not a number followed by one of Y M D h m s"))
            })?);
        }
        if let Some(v) = segment {
            self.stream_segment_bytes = Some(int_in(queue, "x-stream-max-segment-size-bytes", v, 1, I64)?);
        }
        Ok(())
    }

    /// Whether the queue keeps messages in priority levels.
    pub fn priority_levels(&self) -> usize {
        self.max_priority.map_or(1, |m| usize::from(m) + 1)
    }
}

/// RabbitMQ's `x-max-age`: a positive number and a unit (`Y` years of
/// 365 days, `M` months of 30, `D`, `h`, `m`, `s`), in milliseconds;
/// `None` when it is not one, or past `u64` milliseconds.
pub fn max_age_ms(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let n: u64 = text.get(..text.len().checked_sub(1)?)?.parse().ok()?;
    let secs: u64 = match unit {
        'Y' => 365 * 86_400,
        'M' => 30 * 86_400,
        'D' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1000).filter(|&ms| ms > 0)
}

/// A redeclare whose argument `key` differs from the queue's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inequivalent arg '{key}' for queue {queue}: received {received} but current is {current}")]
pub struct Inequivalent {
    pub key: &'static str,
    /// `'name' in vhost 'v'`.
    pub queue: String,
    pub received: String,
    pub current: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::field_table::TableBuilder;

    fn parse(b: TableBuilder) -> Result<QueueArgs, ArgError> {
        QueueArgs::parse(&b.build(), "q")
    }

    #[test]
    fn every_argument_parses() {
        let a = parse(
            TableBuilder::new()
                .int("x-message-ttl", 0)
                .int("x-expires", 1000)
                .int("x-max-length", 5)
                .int("x-max-length-bytes", 100)
                .str("x-overflow", "reject-publish-dlx")
                .str("x-dead-letter-exchange", "")
                .str("x-dead-letter-routing-key", "dlq")
                .int("x-max-priority", 255)
                .bool("x-single-active-consumer", true)
                .str("x-queue-type", "classic")
                .str("x-queue-mode", "lazy"),
        )
        .unwrap();
        assert_eq!(a.message_ttl, Some(0));
        assert_eq!(a.expires, Some(1000));
        assert_eq!((a.max_length, a.max_length_bytes), (Some(5), Some(100)));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some(""));
        assert_eq!(a.dead_letter_routing_key.as_deref(), Some("dlq"));
        assert_eq!(a.priority_levels(), 256);
        assert!(a.single_active_consumer);
        // Any integer type will do.
        let raw = Table(vec![("x-max-length".into(), Value::U8(3))]).encode();
        assert_eq!(QueueArgs::parse(&raw, "q").unwrap().max_length, Some(3));
    }

    #[test]
    fn every_limit_is_checked() {
        let bad = [
            TableBuilder::new().int("x-message-ttl", -1),
            TableBuilder::new().int("x-message-ttl", i64::from(u32::MAX) + 1),
            TableBuilder::new().int("x-expires", 0),
            TableBuilder::new().int("x-max-length", -1),
            TableBuilder::new().int("x-max-length-bytes", -5),
            TableBuilder::new().int("x-max-priority", 256),
            TableBuilder::new().str("x-max-length", "10"),
            TableBuilder::new().str("x-overflow", "drop-tail"),
            TableBuilder::new().int("x-single-active-consumer", 1),
            TableBuilder::new().str("x-dead-letter-routing-key", "k"),
            TableBuilder::new().int("x-dead-letter-exchange", 1),
        ];
        for b in bad {
            let e = parse(b.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{b:?}");
            assert!(!e.unsupported);
            assert!(e.message.starts_with("invalid arg 'x-"), "{}", e.message);
        }
        let e = parse(TableBuilder::new().str("x-queue-type", "quorum")).unwrap_err();
        assert!(e.unsupported);
    }

    #[test]
    fn stream_arguments() {
        let a = parse(
            TableBuilder::new()
                .str("x-max-age", "7D")
                .str("x-queue-type", "stream")
                .int("x-stream-max-segment-size-bytes", 1000)
                .int("x-max-length-bytes", 5000)
                .int("x-max-length", 3)
                .str("x-dead-letter-exchange", "dlx"),
        )
        .unwrap();
        assert!(a.stream);
        assert_eq!(a.max_age_ms, Some(7 * 86_400_000));
        assert_eq!((a.stream_segment_bytes, a.max_length_bytes), (Some(1000), Some(5000)));
        // Ignored for a stream, as RabbitMQ does.
        assert_eq!((a.max_length, a.dead_letter_exchange.as_deref()), (None, None));
        // A classic queue ignores the stream's arguments, whatever they hold.
        let c = parse(TableBuilder::new().str("x-max-age", "soon").int("x-stream-max-segment-size-bytes", -1)).unwrap();
        assert_eq!((c.stream, c.max_age_ms, c.stream_segment_bytes), (false, None, None));
        for bad in [
            TableBuilder::new().str("x-queue-type", "stream").str("x-max-age", "7"),
            TableBuilder::new().str("x-queue-type", "stream").str("x-max-age", "0D"),
            TableBuilder::new().str("x-queue-type", "stream").str("x-max-age", "99999999999999999Y"),
            TableBuilder::new().str("x-queue-type", "stream").int("x-max-age", 7),
            TableBuilder::new().str("x-queue-type", "stream").int("x-stream-max-segment-size-bytes", 0),
            TableBuilder::new().str("x-queue-type", "stream").int("x-message-ttl", 10),
            TableBuilder::new().str("x-queue-type", "stream").int("x-max-priority", 10),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}");
            assert!(e.message.starts_with("invalid arg 'x-"), "{}", e.message);
        }
        let e = a.equivalent(&QueueArgs::default(), "q").unwrap_err();
        assert_eq!((e.key, e.received.as_str(), e.current.as_str()), ("x-queue-type", "classic", "stream"));
        assert_eq!(max_age_ms("12h"), Some(12 * 3_600_000));
        assert_eq!(max_age_ms("h"), None);
        assert_eq!(max_age_ms("-1s"), None);
    }

    #[test]
    fn equivalence_is_by_value_not_encoding() {
        let a = parse(TableBuilder::new().int("x-max-length", 10)).unwrap();
        let raw = Table(vec![("x-max-length".into(), Value::I32(10))]).encode();
        let b = QueueArgs::parse(&raw, "q").unwrap();
        assert!(a.equivalent(&b, "q").is_ok());
        let e = a.equivalent(&QueueArgs::default(), "q").unwrap_err();
        assert_eq!((e.key, e.received.as_str(), e.current.as_str()), ("x-max-length", "none", "10"));
        assert!(e.to_string().contains("inequivalent arg 'x-max-length'"), "{e}");
    }
}
