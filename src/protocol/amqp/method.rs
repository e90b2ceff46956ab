//! The methods a client sends, parsed over the frame's bytes (strings are
//! borrowed), and builders for the ones the server sends. Class and method
//! ids and reply codes are from the AMQP 0-9-1 spec.

use super::frame::FrameWriter;
use super::wire::{put_bits, put_shortstr, Reader, Result, Syntax};
use bytes::{BufMut, BytesMut};

pub type MethodId = (u16, u16);

pub mod id {
    use super::MethodId;
    pub const CONNECTION_START: MethodId = (10, 10);
    pub const CONNECTION_START_OK: MethodId = (10, 11);
    pub const CONNECTION_SECURE_OK: MethodId = (10, 21);
    pub const CONNECTION_TUNE: MethodId = (10, 30);
    pub const CONNECTION_TUNE_OK: MethodId = (10, 31);
    pub const CONNECTION_OPEN: MethodId = (10, 40);
    pub const CONNECTION_OPEN_OK: MethodId = (10, 41);
    pub const CONNECTION_CLOSE: MethodId = (10, 50);
    pub const CONNECTION_CLOSE_OK: MethodId = (10, 51);
    pub const CONNECTION_BLOCKED: MethodId = (10, 60);
    pub const CONNECTION_UNBLOCKED: MethodId = (10, 61);
    pub const CHANNEL_OPEN: MethodId = (20, 10);
    pub const CHANNEL_OPEN_OK: MethodId = (20, 11);
    pub const CHANNEL_FLOW: MethodId = (20, 20);
    pub const CHANNEL_FLOW_OK: MethodId = (20, 21);
    pub const CHANNEL_CLOSE: MethodId = (20, 40);
    pub const CHANNEL_CLOSE_OK: MethodId = (20, 41);
    pub const EXCHANGE_DECLARE: MethodId = (40, 10);
    pub const EXCHANGE_DECLARE_OK: MethodId = (40, 11);
    pub const EXCHANGE_DELETE: MethodId = (40, 20);
    pub const EXCHANGE_DELETE_OK: MethodId = (40, 21);
    pub const EXCHANGE_BIND: MethodId = (40, 30);
    pub const EXCHANGE_BIND_OK: MethodId = (40, 31);
    pub const EXCHANGE_UNBIND: MethodId = (40, 40);
    pub const EXCHANGE_UNBIND_OK: MethodId = (40, 51);
    pub const QUEUE_DECLARE: MethodId = (50, 10);
    pub const QUEUE_DECLARE_OK: MethodId = (50, 11);
    pub const QUEUE_BIND: MethodId = (50, 20);
    pub const QUEUE_BIND_OK: MethodId = (50, 21);
    pub const QUEUE_PURGE: MethodId = (50, 30);
    pub const QUEUE_PURGE_OK: MethodId = (50, 31);
    pub const QUEUE_DELETE: MethodId = (50, 40);
    pub const QUEUE_DELETE_OK: MethodId = (50, 41);
    pub const QUEUE_UNBIND: MethodId = (50, 50);
    pub const QUEUE_UNBIND_OK: MethodId = (50, 51);
    pub const BASIC_QOS: MethodId = (60, 10);
    pub const BASIC_QOS_OK: MethodId = (60, 11);
    pub const BASIC_CONSUME: MethodId = (60, 20);
    pub const BASIC_CONSUME_OK: MethodId = (60, 21);
    pub const BASIC_CANCEL: MethodId = (60, 30);
    pub const BASIC_CANCEL_OK: MethodId = (60, 31);
    pub const BASIC_PUBLISH: MethodId = (60, 40);
    pub const BASIC_RETURN: MethodId = (60, 50);
    pub const BASIC_DELIVER: MethodId = (60, 60);
    pub const BASIC_GET: MethodId = (60, 70);
    pub const BASIC_GET_OK: MethodId = (60, 71);
    pub const BASIC_GET_EMPTY: MethodId = (60, 72);
    pub const BASIC_ACK: MethodId = (60, 80);
    pub const BASIC_REJECT: MethodId = (60, 90);
    pub const BASIC_RECOVER_ASYNC: MethodId = (60, 100);
    pub const BASIC_RECOVER: MethodId = (60, 110);
    pub const BASIC_RECOVER_OK: MethodId = (60, 111);
    pub const BASIC_NACK: MethodId = (60, 120);
    pub const CONFIRM_SELECT: MethodId = (85, 10);
    pub const CONFIRM_SELECT_OK: MethodId = (85, 11);
    pub const TX_SELECT: MethodId = (90, 10);
    pub const TX_SELECT_OK: MethodId = (90, 11);
    pub const TX_COMMIT: MethodId = (90, 20);
    pub const TX_COMMIT_OK: MethodId = (90, 21);
    pub const TX_ROLLBACK: MethodId = (90, 30);
    pub const TX_ROLLBACK_OK: MethodId = (90, 31);
}

/// Reply codes (spec 1.1, "Constants").
pub mod code {
    pub const REPLY_SUCCESS: u16 = 200;
    pub const CONTENT_TOO_LARGE: u16 = 311;
    pub const NO_ROUTE: u16 = 312;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const INVALID_PATH: u16 = 402;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;
}

/// A client method, fields borrowed from the frame.
#[derive(Debug)]
pub enum Method<'a> {
    StartOk {
        client_props: &'a [u8],
        mechanism: &'a str,
        response: &'a [u8],
    },
    TuneOk {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    Open {
        vhost: &'a str,
    },
    Close {
        code: u16,
        text: &'a str,
    },
    CloseOk,
    ChannelOpen,
    Flow {
        active: bool,
    },
    FlowOk,
    ChannelClose {
        code: u16,
        text: &'a str,
    },
    ChannelCloseOk,
    ExchangeDeclare(ExchangeDeclare<'a>),
    ExchangeDelete {
        exchange: &'a str,
        if_unused: bool,
        no_wait: bool,
    },
    /// exchange.bind / unbind: `destination` receives from `source`.
    ExchangeBind {
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
        no_wait: bool,
        args: &'a [u8],
        unbind: bool,
    },
    QueueDeclare(QueueDeclare<'a>),
    QueueBind {
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
        no_wait: bool,
        args: &'a [u8],
        unbind: bool,
    },
    QueuePurge {
        queue: &'a str,
        no_wait: bool,
    },
    QueueDelete {
        queue: &'a str,
        if_unused: bool,
        if_empty: bool,
        no_wait: bool,
    },
    Qos {
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    },
    Consume {
        queue: &'a str,
        tag: &'a str,
        no_ack: bool,
        exclusive: bool,
        no_wait: bool,
        args: &'a [u8],
    },
    Cancel {
        tag: &'a str,
        no_wait: bool,
    },
    Publish {
        exchange: &'a str,
        routing_key: &'a str,
        mandatory: bool,
        immediate: bool,
    },
    Get {
        queue: &'a str,
        no_ack: bool,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    /// basic.reject is a nack of one tag.
    Nack {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
    Recover {
        requeue: bool,
    },
    ConfirmSelect {
        no_wait: bool,
    },
    /// tx.select, tx.commit, tx.rollback: no fields.
    TxSelect,
    TxCommit,
    TxRollback,
    /// A method this server does not implement (or a server-only one).
    Other(MethodId),
}

#[derive(Debug)]
pub struct ExchangeDeclare<'a> {
    pub exchange: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub no_wait: bool,
    pub args: &'a [u8],
}

#[derive(Debug)]
pub struct QueueDeclare<'a> {
    pub queue: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub no_wait: bool,
    pub args: &'a [u8],
}

/// basic.publish's fields as raw bytes: the hot path compares them with
/// the batch being built before paying for UTF-8 checks and copies.
pub struct PublishArgs<'a> {
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    pub mandatory: bool,
    pub immediate: bool,
}

/// `None` unless `payload` is a well-formed basic.publish (anything else,
/// errors included, takes `parse`).
pub fn parse_publish(payload: &[u8]) -> Option<PublishArgs<'_>> {
    let rest = payload.strip_prefix(&[0, 60, 0, 40])?;
    let mut r = Reader::new(rest);
    r.u16().ok()?;
    let exchange = r.shortstr_bytes().ok()?;
    let routing_key = r.shortstr_bytes().ok()?;
    let bits = r.u8().ok()?;
    Some(PublishArgs { exchange, routing_key, mandatory: bits & 1 != 0, immediate: bits & 2 != 0 })
}

/// Parses a method frame's payload into its id and fields: every field
/// the spec defines (reserved ones too), and nothing after them. The
/// fields of a method this server does not implement are not read.
/// Its tables may nest [`crate::protocol::field_table::TABLE_DEPTH_MAX`] levels.
pub fn parse(payload: &[u8]) -> Result<(MethodId, Method<'_>)> {
    parse_limited(payload, crate::protocol::field_table::TABLE_DEPTH_MAX)
}

/// [`parse`] with the broker's `table_depth_max`.
pub fn parse_limited(payload: &[u8], table_depth_max: usize) -> Result<(MethodId, Method<'_>)> {
    let mut r = Reader::limited(payload, table_depth_max);
    let mid = (r.u16()?, r.u16()?);
    let m = match mid {
        id::CONNECTION_START_OK => {
            let client_props = r.table()?;
            let mechanism = r.shortstr()?;
            let response = r.longstr()?;
            r.shortstr()?;
            Method::StartOk { client_props, mechanism, response }
        }
        id::CONNECTION_TUNE_OK => Method::TuneOk { channel_max: r.u16()?, frame_max: r.u32()?, heartbeat: r.u16()? },
        id::CONNECTION_OPEN => {
            let vhost = r.shortstr()?;
            // reserved-1 (capabilities) and reserved-2 (insist).
            r.shortstr()?;
            r.bit()?;
            Method::Open { vhost }
        }
        id::CONNECTION_CLOSE => {
            let (code, text) = (r.u16()?, r.shortstr()?);
            // The class and method ids that caused the close.
            r.u32()?;
            Method::Close { code, text }
        }
        id::CONNECTION_CLOSE_OK => Method::CloseOk,
        id::CHANNEL_OPEN => {
            r.shortstr()?; // reserved-1 (out-of-band)
            Method::ChannelOpen
        }
        id::CHANNEL_FLOW => Method::Flow { active: r.bit()? },
        id::CHANNEL_FLOW_OK => {
            r.bit()?; // active
            Method::FlowOk
        }
        id::CHANNEL_CLOSE => {
            let (code, text) = (r.u16()?, r.shortstr()?);
            r.u32()?; // class and method ids
            Method::ChannelClose { code, text }
        }
        id::CHANNEL_CLOSE_OK => Method::ChannelCloseOk,
        id::EXCHANGE_DECLARE => {
            r.u16()?;
            let exchange = r.shortstr()?;
            let kind = r.shortstr()?;
            let (passive, durable, auto_delete, internal, no_wait) = (r.bit()?, r.bit()?, r.bit()?, r.bit()?, r.bit()?);
            let args = r.table()?;
            Method::ExchangeDeclare(ExchangeDeclare {
                exchange,
                kind,
                passive,
                durable,
                auto_delete,
                internal,
                no_wait,
                args,
            })
        }
        id::EXCHANGE_DELETE => {
            r.u16()?;
            let exchange = r.shortstr()?;
            Method::ExchangeDelete { exchange, if_unused: r.bit()?, no_wait: r.bit()? }
        }
        id::EXCHANGE_BIND | id::EXCHANGE_UNBIND => {
            r.u16()?;
            let (destination, source, routing_key) = (r.shortstr()?, r.shortstr()?, r.shortstr()?);
            let no_wait = r.bit()?;
            let args = r.table()?;
            let unbind = mid == id::EXCHANGE_UNBIND;
            Method::ExchangeBind { destination, source, routing_key, no_wait, args, unbind }
        }
        id::QUEUE_DECLARE => {
            r.u16()?;
            let queue = r.shortstr()?;
            let (passive, durable, exclusive, auto_delete, no_wait) =
                (r.bit()?, r.bit()?, r.bit()?, r.bit()?, r.bit()?);
            let args = r.table()?;
            Method::QueueDeclare(QueueDeclare { queue, passive, durable, exclusive, auto_delete, no_wait, args })
        }
        id::QUEUE_BIND | id::QUEUE_UNBIND => {
            r.u16()?;
            let (queue, exchange, routing_key) = (r.shortstr()?, r.shortstr()?, r.shortstr()?);
            let unbind = mid == id::QUEUE_UNBIND;
            let no_wait = if unbind { false } else { r.bit()? };
            let args = r.table()?;
            Method::QueueBind { queue, exchange, routing_key, no_wait, args, unbind }
        }
        id::QUEUE_PURGE => {
            r.u16()?;
            Method::QueuePurge { queue: r.shortstr()?, no_wait: r.bit()? }
        }
        id::QUEUE_DELETE => {
            r.u16()?;
            let queue = r.shortstr()?;
            Method::QueueDelete { queue, if_unused: r.bit()?, if_empty: r.bit()?, no_wait: r.bit()? }
        }
        id::BASIC_QOS => Method::Qos { prefetch_size: r.u32()?, prefetch_count: r.u16()?, global: r.bit()? },
        id::BASIC_CONSUME => {
            r.u16()?;
            let queue = r.shortstr()?;
            let tag = r.shortstr()?;
            let (_no_local, no_ack, exclusive, no_wait) = (r.bit()?, r.bit()?, r.bit()?, r.bit()?);
            let args = r.table()?;
            Method::Consume { queue, tag, no_ack, exclusive, no_wait, args }
        }
        id::BASIC_CANCEL => Method::Cancel { tag: r.shortstr()?, no_wait: r.bit()? },
        id::BASIC_PUBLISH => {
            r.u16()?;
            let exchange = r.shortstr()?;
            let routing_key = r.shortstr()?;
            Method::Publish { exchange, routing_key, mandatory: r.bit()?, immediate: r.bit()? }
        }
        id::BASIC_GET => {
            r.u16()?;
            Method::Get { queue: r.shortstr()?, no_ack: r.bit()? }
        }
        id::BASIC_ACK => Method::Ack { tag: r.u64()?, multiple: r.bit()? },
        id::BASIC_REJECT => Method::Nack { tag: r.u64()?, multiple: false, requeue: r.bit()? },
        id::BASIC_NACK => Method::Nack { tag: r.u64()?, multiple: r.bit()?, requeue: r.bit()? },
        id::BASIC_RECOVER | id::BASIC_RECOVER_ASYNC => Method::Recover { requeue: r.bit()? },
        id::CONFIRM_SELECT => Method::ConfirmSelect { no_wait: r.bit()? },
        id::TX_SELECT => Method::TxSelect,
        id::TX_COMMIT => Method::TxCommit,
        id::TX_ROLLBACK => Method::TxRollback,
        other => return Ok((mid, Method::Other(other))),
    };
    // Every field is read: more bytes are not this method (RabbitMQ and
    // amq-protocol refuse them too), so each method has one encoding.
    if !r.rest().is_empty() {
        return Err(Syntax::Field("bytes after the method's last field"));
    }
    Ok((mid, m))
}

/// Appends a method frame whose arguments `f` writes.
pub fn put(b: &mut BytesMut, channel: u16, mid: MethodId, f: impl FnOnce(&mut BytesMut)) {
    let w = FrameWriter::method(b, channel, mid);
    f(b);
    w.finish(b);
}

/// connection.close or channel.close (`mid` picks which).
pub fn put_close(b: &mut BytesMut, channel: u16, mid: MethodId, code: u16, text: &str, cause: MethodId) {
    put(b, channel, mid, |b| {
        b.put_u16(code);
        put_shortstr(b, text);
        b.put_u16(cause.0);
        b.put_u16(cause.1);
    });
}

/// basic.deliver: the hot path out.
pub fn put_deliver(
    b: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    put(b, channel, id::BASIC_DELIVER, |b| {
        put_shortstr(b, consumer_tag);
        b.put_u64(tag);
        put_bits(b, &[redelivered]);
        put_shortstr(b, exchange);
        put_shortstr(b, routing_key);
    });
}

/// The basic.deliver frame of a consumer for a message published to its
/// queue through the default exchange, with tag 0, not redelivered:
/// `out::write_delivery` copies it and patches the tag and the flag
/// (see [`deliver_tag_at`]) instead of encoding field by field.
pub fn deliver_template(channel: u16, consumer_tag: &str, queue: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_deliver(&mut b, channel, consumer_tag, 0, false, "", queue);
    b.to_vec()
}

/// Offset of the delivery tag in a basic.deliver frame (the redelivered
/// bit follows it): frame header, class and method ids, consumer tag.
pub fn deliver_tag_at(frame: &[u8]) -> usize {
    12 + usize::from(frame[11])
}

/// basic.ack / basic.nack from the server (publisher confirms).
pub fn put_confirm(b: &mut BytesMut, channel: u16, ack: bool, tag: u64, multiple: bool) {
    if ack {
        put_ack(b, channel, tag, multiple);
    } else {
        put_nack(b, channel, tag, multiple, false);
    }
}

/// basic.ack, the same both ways: a client's ack of deliveries, a server's
/// confirm of publishes.
pub fn put_ack(b: &mut BytesMut, channel: u16, tag: u64, multiple: bool) {
    put(b, channel, id::BASIC_ACK, |b| {
        b.put_u64(tag);
        put_bits(b, &[multiple]);
    });
}

/// basic.nack (`requeue` means nothing from a server).
pub fn put_nack(b: &mut BytesMut, channel: u16, tag: u64, multiple: bool, requeue: bool) {
    put(b, channel, id::BASIC_NACK, |b| {
        b.put_u64(tag);
        put_bits(b, &[multiple, requeue]);
    });
}

/// Finds `delivery_mode` in a content header's property flags and list;
/// 2 means persistent. The headers table, if any, is validated with
/// `table_depth_max`.
pub fn delivery_mode(props: &[u8], table_depth_max: usize) -> Result<u8> {
    let mut r = Reader::limited(props, table_depth_max);
    let flags = r.u16()?;
    if flags & 1 != 0 {
        return Err(Syntax::Field("property flags continuation is not supported"));
    }
    if flags & (1 << 15) != 0 {
        r.shortstr_bytes()?;
    }
    if flags & (1 << 14) != 0 {
        r.shortstr_bytes()?;
    }
    if flags & (1 << 13) != 0 {
        r.table()?;
    }
    if flags & (1 << 12) != 0 {
        return r.u8();
    }
    Ok(0)
}

/// Whether stored properties are a well-formed AMQP property list (a
/// message published over the native protocol may carry anything).
pub fn props_are_amqp(props: &[u8]) -> bool {
    // Well-formed is all that is asked here (any depth the broker could
    // have accepted): the limit was applied when the message came in.
    props_are_amqp_limited(props, crate::protocol::field_table::TABLE_DEPTH_CEILING)
}

/// [`props_are_amqp`] with the headers table nesting at most `depth_max`
/// levels: what a publish may carry.
pub fn props_are_amqp_limited(props: &[u8], depth_max: usize) -> bool {
    let mut r = Reader::limited(props, depth_max);
    let Ok(flags) = r.u16() else { return false };
    if flags & 1 != 0 {
        return false;
    }
    // content-type .. cluster-id, in flag order.
    const KINDS: [u8; 14] = [b's', b's', b'F', b'o', b'o', b's', b's', b's', b's', b'T', b's', b's', b's', b's'];
    for (i, kind) in KINDS.iter().enumerate() {
        if flags & (1 << (15 - i)) == 0 {
            continue;
        }
        let ok = match kind {
            b's' => r.shortstr_bytes().is_ok(),
            b'F' => r.table().is_ok(),
            b'o' => r.u8().is_ok(),
            _ => r.u64().is_ok(),
        };
        if !ok {
            return false;
        }
    }
    r.rest().is_empty()
}

#[cfg(test)]
#[path = "method_tests.rs"]
mod tests;
