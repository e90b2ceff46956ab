//! ringmq's AMQP decoding against `amq-protocol` (lapin's codec) as an
//! oracle: the same bytes must be accepted or refused alike, and what both
//! accept must read the same. Where the two legitimately differ the
//! comparison is restricted; each case is named here and in
//! docs/security.md ("Fuzzing"):
//!
//! 1. Frame type `A` starts the protocol header; the connection matches
//!    it before framing, so ringmq's frame decoder refuses it as a type.
//! 2. Methods ringmq does not implement (`Method::Other`, answered with
//!    540 NOT_IMPLEMENTED or 503) are not parsed, so their fields are not
//!    compared.
//! 3. Field tables: amq-protocol requires UTF-8 keys (the AMQP reader
//!    does not, as RabbitMQ does not), accepts type `U` as a short int (an
//!    alias RabbitMQ does not know), keeps one entry per key, and has no
//!    nesting limit. A refusal by ringmq is accepted when ringmq takes the
//!    same frame re-encoded by amq-protocol (aliases normalised), or when
//!    the tables nest past `DEPTH_MAX`; an acceptance by ringmq alone when
//!    a key or a property short string is not UTF-8.
//! 4. Content headers: ringmq refuses a class other than basic (60), the
//!    property-flags continuation bit, an `expiration` that is not a
//!    number of milliseconds (RabbitMQ does too), property lists over
//!    65535 bytes and a body size whose sum with the properties' passes
//!    the limit (here `usize::MAX`: a body size near 2^64); amq-protocol
//!    does not check these. amq-protocol
//!    requires UTF-8 in property short strings; RabbitMQ and ringmq do not.

use amq_protocol::frame::parsing::{parse_content_header, parse_raw_frame};
use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, AMQPFrameType};
use amq_protocol::protocol::{basic, connection, parse_class, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use ringmq::amqp::publish::{parse_header, HeaderError};
use ringmq::protocol::amqp::frame::{self, Decoded, FrameError};
use ringmq::protocol::amqp::method::{self, Method};
use ringmq::protocol::amqp::wire::{table_entries, Reader};
use ringmq::protocol::field_table::TABLE_DEPTH_MAX;

/// Nesting ringmq refuses: the outermost table is level 1, so a table
/// holding this many nested levels is already one past the limit.
const DEPTH_MAX: usize = TABLE_DEPTH_MAX - 1;

/// Large enough that no frame the fuzzer makes is too large for ringmq
/// (amq-protocol has no frame_max of its own).
const FRAME_MAX: usize = u32::MAX as usize + 16;

pub fn amqp_diff(data: &[u8]) {
    let mut rest = data;
    while let Some(used) = one_frame(rest) {
        rest = &rest[used..];
    }
}

/// Compares the frame at the front of `buf`; its length when both took it.
fn one_frame(buf: &[u8]) -> Option<usize> {
    let ours = frame::decode(buf, FRAME_MAX);
    let kind = match buf.first()? {
        1 => AMQPFrameType::Method,
        2 => AMQPFrameType::Header,
        3 => AMQPFrameType::Body,
        8 => AMQPFrameType::Heartbeat,
        b'A' => return None, // case 1
        &t => {
            assert!(buf.len() < 7 || ours == Err(FrameError::UnknownType(t)), "type {t}: {ours:?}");
            return None;
        }
    };
    let theirs = parse_raw_frame(kind)(&buf[1..]);
    match (ours, theirs) {
        (Ok(Decoded::Incomplete), Err(nom::Err::Incomplete(_))) => None,
        (Err(FrameError::BadEnd(_)), Err(nom::Err::Error(_) | nom::Err::Failure(_))) => None,
        (Ok(Decoded::Frame(f, used)), Ok((left, raw))) => {
            assert_eq!((f.channel, f.payload), (raw.channel_id, raw.payload));
            assert_eq!(used, buf.len() - left.len());
            match f.kind {
                frame::METHOD => compare_method(&buf[..used], f.payload),
                frame::HEADER => compare_header(&buf[..used], f.payload),
                _ => {}
            }
            Some(used)
        }
        (ours, theirs) => panic!("framing differs: ringmq {ours:?}, amq-protocol {theirs:?}"),
    }
}

/// amq-protocol's verdict on a whole frame, and the frame re-encoded by it.
fn oracle(whole: &[u8]) -> Option<(AMQPFrame, Vec<u8>)> {
    let (left, f) = parse_frame(whole).ok()?;
    if !left.is_empty() {
        return None;
    }
    let (again, _) = cookie_factory::gen(gen_frame(&f), Vec::new()).expect("amq-protocol encodes what it parsed");
    Some((f, again))
}

fn compare_method(whole: &[u8], payload: &[u8]) {
    let ours = method::parse(payload);
    if let Ok((_, Method::Other(_))) = ours {
        return; // case 2
    }
    if payload.len() >= 4 && matches!(method::parse(&payload[..4]), Ok((_, Method::Other(_)))) {
        return; // case 2: an unknown id with fields that do not parse
    }
    let theirs = parse_class(payload).ok().filter(|(left, _)| left.is_empty()).map(|(_, c)| c);
    match (&ours, &theirs) {
        (Ok((_, m)), Some(c)) => same_fields(m, c),
        (Err(_), None) => {}
        (Ok((_, m)), None) => {
            assert!(method_tables(m).into_iter().any(non_utf8_key), "only ringmq accepts {m:?}")
        }
        (Err(e), Some(c)) => {
            let (_, again) = oracle(whole).expect("the oracle takes the whole frame it took the method of");
            let retaken = matches!(frame::decode(&again, FRAME_MAX), Ok(Decoded::Frame(f, _)) if method::parse(f.payload).is_ok());
            assert!(retaken || class_depth(c) >= DEPTH_MAX, "only amq-protocol accepts {c:?} (ringmq: {e:?})");
        }
    }
}

fn compare_header(whole: &[u8], payload: &[u8]) {
    let ours = parse_header(payload, usize::MAX, TABLE_DEPTH_MAX);
    let flags = payload.get(12..14).map_or(0, |f| u16::from_be_bytes([f[0], f[1]]));
    if payload.get(..2).is_some_and(|c| c != [0, 60]) || flags & 1 != 0 || payload.len() > 12 + 65535 {
        return; // case 4
    }
    if let Err(HeaderError::BadExpiration(_) | HeaderError::TooLarge(_)) = ours {
        return; // case 4
    }
    let theirs = parse_content_header(payload).ok().filter(|(left, _)| left.is_empty()).map(|(_, h)| h);
    match (&ours, &theirs) {
        (Ok(h), Some(t)) => {
            assert_eq!(h.body_len as u64, t.body_size);
            assert_eq!(h.mode, t.properties.delivery_mode().unwrap_or(0));
        }
        (Err(_), None) => {}
        (Ok(h), None) => assert!(props_not_utf8(h.props), "only ringmq accepts the header {payload:?}"),
        (Err(_), Some(t)) => {
            let (_, again) = oracle(whole).expect("the oracle takes the whole frame it took the header of");
            let retaken = matches!(frame::decode(&again, FRAME_MAX), Ok(Decoded::Frame(f, _)) if parse_header(f.payload, usize::MAX, TABLE_DEPTH_MAX).is_ok());
            let deep = t.properties.headers().as_ref().map_or(0, table_depth);
            assert!(retaken || deep >= DEPTH_MAX, "only amq-protocol accepts the header {payload:?}");
        }
    }
}

/// What both accepted reads the same (the fields the broker acts on).
fn same_fields(m: &Method<'_>, c: &AMQPClass) {
    use AMQPClass::{Basic, Connection, Queue};
    match (m, c) {
        (Method::Publish { exchange, routing_key, mandatory, immediate }, Basic(basic::AMQPMethod::Publish(p))) => {
            assert_eq!((*exchange, *routing_key), (p.exchange.as_str(), p.routing_key.as_str()));
            assert_eq!((*mandatory, *immediate), (p.mandatory, p.immediate));
        }
        (Method::Ack { tag, multiple }, Basic(basic::AMQPMethod::Ack(a))) => {
            assert_eq!((*tag, *multiple), (a.delivery_tag, a.multiple))
        }
        (Method::Nack { tag, multiple, requeue }, Basic(basic::AMQPMethod::Nack(n))) => {
            assert_eq!((*tag, *multiple, *requeue), (n.delivery_tag, n.multiple, n.requeue))
        }
        (Method::Nack { tag, multiple: false, requeue }, Basic(basic::AMQPMethod::Reject(r))) => {
            assert_eq!((*tag, *requeue), (r.delivery_tag, r.requeue))
        }
        (Method::Qos { prefetch_count, global, .. }, Basic(basic::AMQPMethod::Qos(q))) => {
            assert_eq!((*prefetch_count, *global), (q.prefetch_count, q.global))
        }
        (Method::Consume { queue, tag, no_ack, exclusive, no_wait, .. }, Basic(basic::AMQPMethod::Consume(k))) => {
            assert_eq!((*queue, *tag), (k.queue.as_str(), k.consumer_tag.as_str()));
            assert_eq!((*no_ack, *exclusive, *no_wait), (k.no_ack, k.exclusive, k.nowait));
        }
        (Method::QueueDeclare(d), Queue(queue::AMQPMethod::Declare(q))) => {
            assert_eq!(d.queue, q.queue.as_str());
            let ours = (d.passive, d.durable, d.exclusive, d.auto_delete, d.no_wait);
            assert_eq!(ours, (q.passive, q.durable, q.exclusive, q.auto_delete, q.nowait));
        }
        (Method::TuneOk { channel_max, frame_max, heartbeat }, Connection(connection::AMQPMethod::TuneOk(t))) => {
            assert_eq!((*channel_max, *frame_max, *heartbeat), (t.channel_max, t.frame_max, t.heartbeat))
        }
        _ => {}
    }
}

/// The raw field tables a parsed method carries.
fn method_tables<'a>(m: &Method<'a>) -> Vec<&'a [u8]> {
    match m {
        Method::StartOk { client_props, .. } => vec![client_props],
        Method::ExchangeDeclare(d) => vec![d.args],
        Method::QueueDeclare(d) => vec![d.args],
        Method::ExchangeBind { args, .. } | Method::QueueBind { args, .. } | Method::Consume { args, .. } => {
            vec![args]
        }
        _ => vec![],
    }
}

/// Whether a validated raw table has a key that is not UTF-8, at any depth.
fn non_utf8_key(raw: &[u8]) -> bool {
    table_entries(raw).any(|(k, kind, v)| std::str::from_utf8(k).is_err() || nested_non_utf8(kind, v))
}

fn nested_non_utf8(kind: u8, v: &[u8]) -> bool {
    match kind {
        b'F' => non_utf8_key(v),
        b'A' => ringmq::protocol::field_table::items(v).any(|(k, v)| nested_non_utf8(k, v)),
        _ => false,
    }
}

/// Whether accepted properties hold a short string or a header key that is
/// not UTF-8 (case 4 and 3).
fn props_not_utf8(props: &[u8]) -> bool {
    let mut r = Reader::new(props);
    let Ok(flags) = r.u16() else { return false };
    // content-type .. cluster-id in flag order: s(hort string), F, o(ctet), T.
    let kinds = b"ssFoossssTssss";
    for (i, kind) in kinds.iter().enumerate() {
        if flags & (1 << (15 - i)) == 0 {
            continue;
        }
        let bad = match kind {
            b's' => r.shortstr_bytes().is_ok_and(|s| std::str::from_utf8(s).is_err()),
            b'F' => r.table().is_ok_and(non_utf8_key),
            b'o' => r.u8().map(|_| false).unwrap_or(false),
            _ => r.u64().map(|_| false).unwrap_or(false),
        };
        if bad {
            return true;
        }
    }
    false
}

fn class_depth(c: &AMQPClass) -> usize {
    use amq_protocol::protocol::exchange;
    use AMQPClass::{Basic, Connection, Exchange, Queue};
    match c {
        Connection(connection::AMQPMethod::StartOk(s)) => table_depth(&s.client_properties),
        Exchange(exchange::AMQPMethod::Declare(d)) => table_depth(&d.arguments),
        Exchange(exchange::AMQPMethod::Bind(d)) => table_depth(&d.arguments),
        Exchange(exchange::AMQPMethod::Unbind(d)) => table_depth(&d.arguments),
        Queue(queue::AMQPMethod::Declare(d)) => table_depth(&d.arguments),
        Queue(queue::AMQPMethod::Bind(d)) => table_depth(&d.arguments),
        Queue(queue::AMQPMethod::Unbind(d)) => table_depth(&d.arguments),
        Basic(basic::AMQPMethod::Consume(d)) => table_depth(&d.arguments),
        _ => 0,
    }
}

fn table_depth(t: &FieldTable) -> usize {
    1 + t.inner().values().map(value_depth).max().unwrap_or(0)
}

fn value_depth(v: &AMQPValue) -> usize {
    match v {
        AMQPValue::FieldTable(t) => table_depth(t),
        AMQPValue::FieldArray(a) => 1 + a.as_slice().iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}
