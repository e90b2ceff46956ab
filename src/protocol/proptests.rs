//! Property tests for the codec: round trips for every command, no panics on
//! arbitrary input, incremental decoding, the size limit, and `BatchWriter`.
#![allow(clippy::cast_possible_truncation)] // generated sizes are small

use super::batch::{put_entry, BatchWriter, Entries, Entry, Ranges, ENTRY_HAS_PROPS, ENTRY_REDELIVERED};
use super::error::{DecodeError, ErrorCode};
use super::frame::{decode, encode_ack, peek_len, Cmd, Decoded, DeliverOrigin, Frame, HelloOk, StreamAt};
use super::header::{FrameHeader, HEADER_BYTES};
use super::op;
use bytes::BytesMut;
use proptest::prelude::*;
use zerocopy::IntoBytes;

const MAX: usize = 1 << 20;

/// A message entry as generated: (redelivered, props, body).
type OwnedEntry = (bool, Vec<u8>, Vec<u8>);

/// An owned mirror of `Cmd`, so proptest can generate it; `with_frame`
/// builds the borrowed `Frame` from it.
#[derive(Debug, Clone)]
enum O {
    Hello {
        version: u16,
        user: String,
        password: String,
        heartbeat_ms: Option<u32>,
        vhost: Option<String>,
    },
    HelloOk {
        version: u16,
        shard_id: u16,
        hash_id: u8,
        limits: (u32, u32, u32),
        addrs: Vec<String>,
        heartbeat_ms: Option<u32>,
    },
    Ok {
        value: u64,
    },
    Error {
        fatal: bool,
        code: u16,
        message: String,
    },
    ConsumerCancelled {
        consumer_id: u32,
        code: u16,
        message: String,
    },
    ReplyTo {
        consumer_id: u32,
        name: String,
    },
    Ping,
    Pong,
    Blocked {
        reason: String,
    },
    Unblocked,
    /// `args`: a raw field table, empty for none; `flags` carries
    /// `DECLARE_HAS_ARGS` exactly when it is not empty.
    Declare {
        flags: u8,
        queue: String,
        args: Vec<u8>,
    },
    Delete {
        flags: u8,
        queue: String,
    },
    Purge {
        queue: String,
    },
    Publish {
        flags: u8,
        queue: String,
        entries: Vec<OwnedEntry>,
    },
    ExchangeDeclare {
        flags: u8,
        exchange: String,
        kind: String,
        args: Vec<u8>,
    },
    ExchangeDelete {
        flags: u8,
        exchange: String,
    },
    Bind {
        unbind: bool,
        flags: u8,
        source: String,
        destination: String,
        key: String,
        args: Vec<u8>,
    },
    PublishTo {
        flags: u8,
        exchange: String,
        key: String,
        entries: Vec<OwnedEntry>,
    },
    Confirm {
        count: u32,
    },
    Subscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: String,
        priority: i64,
        origin: bool,
    },
    StreamSubscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: String,
        at: StreamAt,
        origin: bool,
    },
    StoreOffset {
        queue: String,
        reference: String,
        offset: u64,
    },
    QueryOffset {
        queue: String,
        reference: String,
    },
    Unsubscribe {
        consumer_id: u32,
    },
    Deliver {
        consumer_id: u32,
        first_tag: u64,
        /// Exchange and routing key (`DELIVER_ORIGIN`).
        origin: Option<(String, String)>,
        entries: Vec<OwnedEntry>,
    },
    Ack {
        consumer_id: u32,
        ranges: Vec<(u64, u64)>,
    },
    Nack {
        requeue: bool,
        consumer_id: u32,
        ranges: Vec<(u64, u64)>,
    },
    Get {
        no_ack: bool,
        consumer_id: u32,
        queue: String,
    },
    GetOk {
        consumer_id: u32,
        tag: u64,
        remaining: u32,
        entry: OwnedEntry,
    },
    GetEmpty,
    Admin {
        command: u8,
        arg: String,
    },
    AdminOk {
        json: String,
    },
    MapGet,
    /// version, this, nodes (name, shard addresses).
    Map(u32, u16, Vec<(String, Vec<String>)>),
    MapChanged(u32),
    Locate(String),
}

fn queue() -> impl Strategy<Value = String> {
    // At most 255 bytes: 60 chars of up to 4 bytes, or a full-length name.
    prop_oneof![4 => "\\PC{0,60}", 1 => "[a-z.]{250,255}"]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,80}"
}

fn args() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn entry() -> impl Strategy<Value = OwnedEntry> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..24), prop::collection::vec(any::<u8>(), 0..96))
}

fn entries() -> impl Strategy<Value = Vec<OwnedEntry>> {
    prop::collection::vec(entry(), 0..24)
}

/// Ascending, disjoint ranges (what `Ranges::parse` accepts): each starts
/// a random gap after the last one ends; the last may reach `u64::MAX`.
fn ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    (1..u64::MAX, prop::collection::vec((any::<u64>(), any::<u64>()), 0..16)).prop_map(|(start, v)| {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut next = Some(start);
        for (gap, len) in v {
            let Some(a) = next else { break };
            let b = a.saturating_add(len % 1000);
            out.push((a, b));
            next = b.checked_add(1).and_then(|n| n.checked_add(gap % 1_000_000));
        }
        out
    })
}

/// Queue arguments: none, or a table of integers, strings and booleans
/// (the types queue arguments use), nested one level.
fn declare_args() -> impl Strategy<Value = Vec<u8>> {
    use crate::protocol::field_table::{Table, Value};
    let value = prop_oneof![
        any::<i64>().prop_map(Value::I64),
        any::<i32>().prop_map(Value::I32),
        any::<bool>().prop_map(Value::Bool),
        "\\PC{0,20}".prop_map(|s| Value::str(&s)),
    ];
    let entry = ("[a-z-]{1,20}", value);
    let table = prop::collection::vec(entry, 0..6).prop_map(|v| Table(v.into_iter().collect()));
    (table.clone(), prop::option::of(table)).prop_map(|(mut t, inner)| {
        if let Some(inner) = inner {
            t.0.push(("nested".into(), Value::Table(inner)));
        }
        t.encode()
    })
}

fn owned_cmd() -> impl Strategy<Value = O> {
    prop_oneof![
        (any::<u16>(), text(), text(), any::<Option<u32>>(), proptest::option::of(text())).prop_map(
            |(version, user, password, heartbeat_ms, vhost)| {
                // With a vhost, a heartbeat of 0 is how "none" is sent.
                let heartbeat_ms = heartbeat_ms.filter(|h| vhost.is_none() || *h > 0);
                O::Hello { version, user, password, heartbeat_ms, vhost }
            }
        ),
        (
            any::<u16>(),
            any::<u8>(),
            any::<(u32, u32, u32)>(),
            prop::collection::vec(text(), 1..8),
            any::<u16>(),
            any::<Option<u32>>()
        )
            .prop_map(|(version, hash_id, limits, addrs, s, heartbeat_ms)| O::HelloOk {
                version,
                shard_id: s % addrs.len() as u16,
                hash_id,
                limits,
                addrs,
                heartbeat_ms
            }),
        any::<u64>().prop_map(|value| O::Ok { value }),
        (any::<bool>(), any::<u16>(), text()).prop_map(|(fatal, code, message)| O::Error { fatal, code, message }),
        Just(O::Ping),
        Just(O::Pong),
        "\\PC{0,100}".prop_map(|reason| O::Blocked { reason }),
        Just(O::Unblocked),
        (0..=(op::DECLARE_DURABLE | op::DECLARE_PASSIVE), queue(), declare_args()).prop_map(|(flags, queue, args)| {
            let flags = if args.is_empty() { flags } else { flags | op::DECLARE_HAS_ARGS };
            O::Declare { flags, queue, args }
        }),
        (0..=op::DELETE_KNOWN, queue()).prop_map(|(flags, queue)| O::Delete { flags, queue }),
        queue().prop_map(|queue| O::Purge { queue }),
        (0..=op::PUBLISH_KNOWN, queue(), entries()).prop_map(|(flags, queue, entries)| O::Publish {
            flags,
            queue,
            entries
        }),
        (0..=op::EXCHANGE_DECLARE_KNOWN, queue(), queue(), args())
            .prop_map(|(flags, exchange, kind, args)| { O::ExchangeDeclare { flags, exchange, kind, args } }),
        (0..=op::EXCHANGE_IF_UNUSED, queue()).prop_map(|(flags, exchange)| O::ExchangeDelete { flags, exchange }),
        (any::<bool>(), 0..=op::BIND_TO_EXCHANGE, queue(), queue(), queue(), args()).prop_map(
            |(unbind, flags, source, destination, key, args)| O::Bind { unbind, flags, source, destination, key, args }
        ),
        (0..=op::PUBLISH_TO_KNOWN, queue(), queue(), entries())
            .prop_map(|(flags, exchange, key, entries)| { O::PublishTo { flags, exchange, key, entries } }),
        any::<u32>().prop_map(|count| O::Confirm { count }),
        // Priority 0 (no flag) as often as any other.
        (any::<u32>(), any::<u32>(), queue(), prop_oneof![Just(0i64), any::<i64>()], any::<bool>()).prop_map(
            |(consumer_id, prefetch, queue, priority, origin)| O::Subscribe {
                consumer_id,
                prefetch,
                queue,
                priority,
                origin
            }
        ),
        (any::<u32>(), any::<u32>(), queue(), stream_at(), any::<bool>()).prop_map(
            |(consumer_id, prefetch, queue, at, origin)| O::StreamSubscribe {
                consumer_id,
                prefetch,
                queue,
                at,
                origin
            }
        ),
        (queue(), queue(), any::<u64>()).prop_map(|(queue, reference, offset)| O::StoreOffset {
            queue,
            reference,
            offset
        }),
        (queue(), queue()).prop_map(|(queue, reference)| O::QueryOffset { queue, reference }),
        any::<u32>().prop_map(|consumer_id| O::Unsubscribe { consumer_id }),
        // The empty exchange (the default one) as often as a name.
        (
            any::<u32>(),
            any::<u64>(),
            proptest::option::of((prop_oneof![Just(String::new()), queue()], queue())),
            entries()
        )
            .prop_map(|(consumer_id, first_tag, origin, entries)| O::Deliver {
                consumer_id,
                first_tag,
                origin,
                entries
            }),
        (any::<u32>(), ranges()).prop_map(|(consumer_id, ranges)| O::Ack { consumer_id, ranges }),
        (any::<bool>(), any::<u32>(), ranges()).prop_map(|(requeue, consumer_id, ranges)| O::Nack {
            requeue,
            consumer_id,
            ranges
        }),
        (any::<bool>(), any::<u32>(), queue()).prop_map(|(no_ack, consumer_id, queue)| O::Get {
            no_ack,
            consumer_id,
            queue
        }),
        (any::<u32>(), any::<u64>(), any::<u32>(), entry())
            .prop_map(|(consumer_id, tag, remaining, entry)| { O::GetOk { consumer_id, tag, remaining, entry } }),
        Just(O::GetEmpty),
        (any::<u32>(), any::<u16>(), text()).prop_map(|(consumer_id, code, message)| O::ConsumerCancelled {
            consumer_id,
            code,
            message
        }),
        (any::<u32>(), queue()).prop_map(|(consumer_id, name)| O::ReplyTo { consumer_id, name }),
        (1..=op::ADMIN_COMMAND_MAX, queue()).prop_map(|(command, arg)| O::Admin { command, arg }),
        "\\PC{0,200}".prop_map(|json| O::AdminOk { json }),
        Just(O::MapGet),
        (
            any::<u32>(),
            prop::collection::vec(("[a-z0-9@.-]{0,40}", prop::collection::vec("[0-9.:]{1,21}", 1..4)), 0..5)
        )
            .prop_flat_map(|(version, nodes)| {
                let n = nodes.len() as u16;
                let this = if n == 0 { Just(u16::MAX).boxed() } else { prop_oneof![Just(u16::MAX), 0..n].boxed() };
                this.prop_map(move |this| O::Map(version, this, nodes.clone()))
            }),
        any::<u32>().prop_map(O::MapChanged),
        queue().prop_map(O::Locate),
    ]
}

/// The flags byte `put_entry` writes and the decoder reports.
fn entry_flags(e: &OwnedEntry) -> u8 {
    (if e.0 { ENTRY_REDELIVERED } else { 0 }) | if e.1.is_empty() { 0 } else { ENTRY_HAS_PROPS }
}

fn entries_raw(es: &[OwnedEntry]) -> BytesMut {
    let mut b = BytesMut::new();
    for e in es {
        put_entry(&mut b, entry_flags(e), &e.1, &e.2);
    }
    b
}

fn ranges_raw(rs: &[(u64, u64)]) -> Vec<u8> {
    rs.iter().flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes())).collect()
}

/// Builds the borrowed `Frame` for `o` and hands it to `f`.
fn with_frame<R>(request_id: u64, o: &O, f: impl FnOnce(&Frame<'_>) -> R) -> R {
    let raw_entries = match o {
        O::Publish { entries, .. } | O::Deliver { entries, .. } | O::PublishTo { entries, .. } => entries_raw(entries),
        _ => BytesMut::new(),
    };
    let raw_ranges = match o {
        O::Ack { ranges, .. } | O::Nack { ranges, .. } => ranges_raw(ranges),
        _ => Vec::new(),
    };
    let es = |n: usize| Entries::parse(&raw_entries, n as u32).expect("generated entries are valid");
    let rs = |n: usize| Ranges::parse(&raw_ranges, n as u32).expect("generated ranges are valid");
    let cmd = match o {
        O::Hello { version, user, password, heartbeat_ms, vhost } => {
            Cmd::Hello { version: *version, user, password, heartbeat_ms: *heartbeat_ms, vhost: vhost.as_deref() }
        }
        O::HelloOk { version, shard_id, hash_id, limits, addrs, heartbeat_ms } => Cmd::HelloOk(HelloOk {
            version: *version,
            shard_id: *shard_id,
            hash_id: *hash_id,
            frame_bytes_max: limits.0,
            message_bytes_max: limits.1,
            prefetch_max: limits.2,
            shard_addrs: addrs.iter().map(String::as_str).collect(),
            heartbeat_ms: *heartbeat_ms,
        }),
        O::Ok { value } => Cmd::Ok { value: *value },
        O::Error { fatal, code, message } => Cmd::Error { fatal: *fatal, code: *code, message },
        O::ReplyTo { consumer_id, name } => Cmd::ReplyTo { consumer_id: *consumer_id, name },
        O::ConsumerCancelled { consumer_id, code, message } => {
            Cmd::ConsumerCancelled { consumer_id: *consumer_id, code: *code, message }
        }
        O::Ping => Cmd::Ping,
        O::Pong => Cmd::Pong,
        O::Blocked { reason } => Cmd::Blocked { reason },
        O::Unblocked => Cmd::Unblocked,
        O::Declare { flags, queue, args } => Cmd::Declare { flags: *flags, queue, args },
        O::Delete { flags, queue } => Cmd::Delete { flags: *flags, queue },
        O::Purge { queue } => Cmd::Purge { queue },
        O::Publish { flags, queue, entries } => Cmd::Publish { flags: *flags, queue, entries: es(entries.len()) },
        O::ExchangeDeclare { flags, exchange, kind, args } => {
            Cmd::ExchangeDeclare { flags: *flags, exchange, kind, args }
        }
        O::ExchangeDelete { flags, exchange } => Cmd::ExchangeDelete { flags: *flags, exchange },
        O::Bind { unbind: false, flags, source, destination, key, args } => {
            Cmd::Bind { flags: *flags, source, destination, routing_key: key, args }
        }
        O::Bind { unbind: true, flags, source, destination, key, args } => {
            Cmd::Unbind { flags: *flags, source, destination, routing_key: key, args }
        }
        O::PublishTo { flags, exchange, key, entries } => {
            Cmd::PublishTo { flags: *flags, exchange, routing_key: key, entries: es(entries.len()) }
        }
        O::Confirm { count } => Cmd::Confirm { count: *count },
        O::Subscribe { consumer_id, prefetch, queue, priority, origin } => Cmd::Subscribe {
            consumer_id: *consumer_id,
            prefetch: *prefetch,
            queue,
            priority: *priority,
            origin: *origin,
        },
        O::StreamSubscribe { consumer_id, prefetch, queue, at, origin } => {
            Cmd::StreamSubscribe { consumer_id: *consumer_id, prefetch: *prefetch, queue, at: *at, origin: *origin }
        }
        O::StoreOffset { queue, reference, offset } => Cmd::StoreOffset { queue, reference, offset: *offset },
        O::QueryOffset { queue, reference } => Cmd::QueryOffset { queue, reference },
        O::Unsubscribe { consumer_id } => Cmd::Unsubscribe { consumer_id: *consumer_id },
        O::Deliver { consumer_id, first_tag, origin, entries } => Cmd::Deliver {
            consumer_id: *consumer_id,
            first_tag: *first_tag,
            origin: origin.as_ref().map(|(exchange, routing_key)| DeliverOrigin { exchange, routing_key }),
            entries: es(entries.len()),
        },
        O::Ack { consumer_id, ranges } => Cmd::Ack { consumer_id: *consumer_id, ranges: rs(ranges.len()) },
        O::Nack { requeue, consumer_id, ranges } => {
            Cmd::Nack { requeue: *requeue, consumer_id: *consumer_id, ranges: rs(ranges.len()) }
        }
        O::Get { no_ack, consumer_id, queue } => Cmd::Get { no_ack: *no_ack, consumer_id: *consumer_id, queue },
        O::GetOk { consumer_id, tag, remaining, entry } => Cmd::GetOk {
            consumer_id: *consumer_id,
            tag: *tag,
            remaining: *remaining,
            entry: Entry { flags: entry_flags(entry), props: &entry.1, body: &entry.2 },
        },
        O::GetEmpty => Cmd::GetEmpty,
        O::Admin { command, arg } => Cmd::Admin { command: *command, arg },
        O::AdminOk { json } => Cmd::AdminOk { json },
        O::MapGet => Cmd::MapGet,
        O::Map(version, this, nodes) => Cmd::Map(super::cluster_map::ClusterMap {
            version: *version,
            this: *this,
            nodes: nodes
                .iter()
                .map(|(name, addrs)| super::cluster_map::MapNode {
                    name,
                    shard_addrs: addrs.iter().map(String::as_str).collect(),
                })
                .collect(),
        }),
        O::MapChanged(version) => Cmd::MapChanged { version: *version },
        O::Locate(queue) => Cmd::Locate { queue },
    };
    f(&Frame { request_id, cmd })
}

fn encoded(request_id: u64, o: &O) -> BytesMut {
    with_frame(request_id, o, |f| {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        b
    })
}

/// Decodes exactly one whole frame from `buf`, or fails the test.
fn decode_whole(buf: &[u8]) -> Result<Frame<'_>, TestCaseError> {
    match decode(buf, MAX) {
        Ok(Decoded::Frame(f, n)) => {
            prop_assert_eq!(n, buf.len(), "consumed length");
            Ok(f)
        }
        Ok(Decoded::Incomplete) => Err(TestCaseError::fail("whole frame decoded as Incomplete")),
        Err(e) => Err(TestCaseError::fail(format!("valid frame rejected: {e}"))),
    }
}

/// The error a frame's header alone earns, if any (`None`: header valid).
fn header_error(buf: &[u8], max: usize) -> Option<DecodeError> {
    let hdr = &buf[..HEADER_BYTES];
    let reserved = u16::from_le_bytes([hdr[6], hdr[7]]);
    let body_len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if reserved != 0 {
        Some(DecodeError::Reserved(reserved))
    } else if !op::is_known(hdr[4]) {
        Some(DecodeError::UnknownOpcode(hdr[4]))
    } else if HEADER_BYTES + body_len > max {
        Some(DecodeError::TooLarge { len: HEADER_BYTES + body_len, max })
    } else {
        None
    }
}

const OPCODES: [u8; 23] = [
    op::HELLO,
    op::HELLO_OK,
    op::OK,
    op::ERROR,
    op::PING,
    op::PONG,
    op::DECLARE,
    op::DELETE,
    op::PURGE,
    op::PUBLISH,
    op::CONFIRM,
    op::SUBSCRIBE,
    op::UNSUBSCRIBE,
    op::DELIVER,
    op::CONSUMER_CANCELLED,
    op::REPLY_TO,
    op::ACK,
    op::NACK,
    op::GET,
    op::GET_OK,
    op::GET_EMPTY,
    op::ADMIN,
    op::ADMIN_OK,
];

/// A well-formed header (known opcode, any flags) over an arbitrary body:
/// reaches the body decoders far more often than uniform random bytes.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(&OPCODES[..]), any::<u8>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(opcode, flags, rid, body)| {
            let mut v = FrameHeader::new(opcode, flags, rid, body.len() as u32).as_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        })
}

fn stream_at() -> impl Strategy<Value = StreamAt> {
    prop_oneof![
        Just(StreamAt::First),
        Just(StreamAt::Last),
        Just(StreamAt::Next),
        any::<u64>().prop_map(StreamAt::Offset),
        any::<u64>().prop_map(StreamAt::Timestamp),
    ]
}

mod doc_examples;
mod properties;
