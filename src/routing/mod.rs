//! Exchanges and bindings: which queues a published message goes to.
//!
//! Pure data structures, no I/O. Every shard holds a [`RoutingTable`] and
//! applies the same stream of [`Change`]s to it (the owner of a change
//! applies it first, then broadcasts it), so every copy has the same
//! content and the same [`RoutingTable::version`]. Routing a message is a
//! read of the local copy: no cross-shard hop. `docs/routing.md` describes
//! the matching semantics and the data structures.
//!
//! | piece | module |
//! |---|---|
//! | the routing table: declare, delete, bind, unbind, snapshot | `routing_table` |
//! | routing a message: e2e bindings, alternates, dedup | `route` |
//! | per-kind matchers: default, direct, fanout | `matcher` |
//! | topic patterns: a trie of words, `*` and `#` | `topic` |
//! | headers exchanges, and the headers of a message's properties | `headers` |
//! | short lists kept on the stack while routing | `small` |
//! | names scoped by vhost: the core's key for a queue or exchange | [`vhost`] |

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

mod headers;
mod matcher;
mod route;
mod routing_table;
mod small;
mod topic;
/// Names scoped by vhost: the codec layer's, shared with the client.
pub use crate::protocol::vhost;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;

use bytes::Bytes;
use std::fmt;

/// `Bytes` as a plain byte string in serde (the cluster's log and
/// snapshots), without the `bytes` crate's serde feature.
mod bytes_field {
    use bytes::Bytes;

    pub fn serialize<S: serde::Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_byte_buf(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }
    }
}
use std::str::FromStr;

pub use headers::headers_of;
pub use routing_table::RoutingTable;

/// How an exchange matches a message against its bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExchangeKind {
    /// The routing key equals the binding key.
    Direct,
    /// Every binding matches.
    Fanout,
    /// The binding key is a pattern of dot-separated words, `*` and `#`.
    Topic,
    /// The binding's arguments are compared with the message's headers.
    Headers,
}

impl ExchangeKind {
    /// The AMQP name, as in `exchange.declare`'s `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

impl FromStr for ExchangeKind {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, RouteError> {
        match s {
            "direct" => Ok(ExchangeKind::Direct),
            "fanout" => Ok(ExchangeKind::Fanout),
            "topic" => Ok(ExchangeKind::Topic),
            "headers" => Ok(ExchangeKind::Headers),
            other => Err(RouteError::UnknownKind(other.to_string())),
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exchange as declared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    /// Deleted when its last binding (as a source) goes away.
    pub auto_delete: bool,
    /// Clients cannot publish to it; only exchange-to-exchange bindings and
    /// alternates reach it.
    pub internal: bool,
    /// Where messages that match none of its bindings go instead.
    pub alternate: Option<String>,
    /// The raw AMQP field table of the declare (length prefix excluded);
    /// may be empty.
    #[serde(with = "bytes_field")]
    pub args: Bytes,
}

impl ExchangeDef {
    /// A transient, non-internal exchange with no alternate and no arguments.
    pub fn new(name: impl Into<String>, kind: ExchangeKind) -> Self {
        let name = name.into();
        Self { name, kind, durable: false, auto_delete: false, internal: false, alternate: None, args: Bytes::new() }
    }

    /// The `alternate-exchange` argument of a declare, as RabbitMQ reads it
    /// (a long string), to fill `alternate` from `args`.
    pub fn alternate_from_args(args: &[u8]) -> Option<String> {
        match crate::protocol::field_table::get(args, "alternate-exchange") {
            Some((b'S', name)) => std::str::from_utf8(name).ok().map(str::to_string),
            _ => None,
        }
    }
}

/// Where a binding sends what matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Dest {
    Queue(String),
    /// Exchange-to-exchange binding: the message is routed again there.
    Exchange(String),
}

impl Dest {
    pub fn name(&self) -> &str {
        match self {
            Dest::Queue(n) | Dest::Exchange(n) => n,
        }
    }
}

/// A binding. Two bindings are the same binding when all four fields are
/// equal (as in RabbitMQ), so one queue may be bound to one exchange with
/// several keys, or with one key and different arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BindingDef {
    /// The exchange messages come from.
    pub source: String,
    pub dest: Dest,
    /// The binding key: a word for direct, a pattern for topic, ignored by
    /// fanout and headers.
    pub key: String,
    /// The raw AMQP field table of the bind (length prefix excluded); headers
    /// exchanges read `x-match` and the header pairs from it.
    #[serde(with = "bytes_field")]
    pub args: Bytes,
}

/// One change to the table: what is applied locally and broadcast to peers
/// (and, in a cluster, what the metadata log carries: serde).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Change {
    DeclareExchange(ExchangeDef),
    DeleteExchange(String),
    Bind(BindingDef),
    Unbind(BindingDef),
    /// A queue was deleted: every binding to it goes too.
    QueueGone(String),
}

/// Why a change or a routing decision was refused. The connection layers
/// map it to their codes (`server::shard::routing_replica::route_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RouteError {
    #[error("no exchange '{0}'")]
    NotFound(String),
    /// Redeclare with different properties (PRECONDITION_FAILED).
    #[error("exchange '{0}' exists with different properties")]
    Mismatch(String),
    /// The default exchange and the `amq.` names are reserved.
    #[error("{0}")]
    AccessRefused(String),
    /// A malformed argument table, or a bad `x-match`.
    #[error("{0}")]
    BadArgument(String),
    #[error("unknown exchange type '{0}'")]
    UnknownKind(String),
}
