//! The hot path in: basic.publish's content header and body frames become
//! one stored entry (`protocol::batch::put_entry`, the AMQP property bytes
//! as its props), appended to the channel's batch for its queue; a batch
//! goes to the queue's owner as one request.

use super::calls::Core;
use super::channel::{same_bytes, ChState, Channel, Content, Outstanding, PubBatch, Returned, Settled};
use super::conn::{conn_fault, rid, AmqpConn, Fault, Phase, KIND_PUB};
use crate::protocol::amqp::frame::{self, Frame};
use crate::protocol::amqp::method::{self, code, id};
use crate::protocol::amqp::wire::{put_shortstr, Reader, Syntax};
use crate::protocol::batch::put_entry;
use crate::server::ops::queue_name_ok;
use crate::server::shard::routing_replica::PubOpts;
use crate::server::shard::Shard;
use crate::server::types::PublishMode;
use bytes::{BufMut, BytesMut};

fn ch_fault(channel: u16, code: u16, text: impl Into<String>) -> Fault {
    Fault::Channel { channel, code, text: text.into(), cause: id::BASIC_PUBLISH }
}

/// Header and body frames of a basic.publish.
pub fn on_content(
    shard: &Shard,
    n: u16,
    ch: &mut Channel,
    f: Frame<'_>,
    max: usize,
    core: &Core<'_>,
) -> Result<(), Fault> {
    let Some(content) = ch.content.as_mut() else {
        return Err(conn_fault(code::UNEXPECTED_FRAME, "content frame without basic.publish", (0, 0)));
    };
    let cause = id::BASIC_PUBLISH;
    if f.kind == frame::HEADER {
        if content.have_header {
            return Err(conn_fault(code::UNEXPECTED_FRAME, "a second content header", cause));
        }
        let h = match parse_header(f.payload, max, shard.config.table_depth_max as usize) {
            Ok(h) => h,
            Err(e) => {
                if matches!(e, HeaderError::TooLarge(_) | HeaderError::BadExpiration(_)) {
                    ch.content = None;
                }
                return Err(e.fault(n, max));
            }
        };
        if let Some(tx) = ch.tx.as_mut() {
            // Counted before the body is buffered: a transaction's
            // memory stays under its limits.
            let bytes = (16 + h.props.len() + h.body_len) as u64;
            if let Err(text) = tx.reserve(1, bytes, core.tx_limits()) {
                ch.content = None;
                return Err(ch_fault(n, code::PRECONDITION_FAILED, text));
            }
        }
        content.have_header = true;
        content.persistent = h.mode == 2;
        content.body_len = h.body_len;
        ch.content_props.clear();
        // No properties at all: store none, so native consumers see none.
        if h.props != [0, 0] {
            ch.content_props.extend_from_slice(h.props);
        }
        // One bit test for every publish; the property is read only when set.
        if crate::protocol::props::has_reply_to(&ch.content_props) {
            super::reply_to::rewrite_reply_to(n, ch)?;
        }
        ch.content_body.clear();
        if h.body_len == 0 {
            complete(n, ch, None, core);
        }
        return Ok(());
    }
    // BODY
    if !content.have_header {
        return Err(conn_fault(code::UNEXPECTED_FRAME, "body frame before the content header", cause));
    }
    // Both are bounded (a buffer and a frame): no wrap.
    let have = ch.content_body.len().saturating_add(f.payload.len());
    if have > content.body_len {
        return Err(conn_fault(code::FRAME_ERROR, "body frames exceed the declared body size", cause));
    }
    if have == content.body_len {
        if ch.content_body.is_empty() {
            complete(n, ch, Some(f.payload), core);
        } else {
            ch.content_body.extend_from_slice(f.payload);
            complete(n, ch, None, core);
        }
    } else {
        ch.content_body.extend_from_slice(f.payload);
    }
    Ok(())
}

impl AmqpConn {
    /// The hot path in: a whole publish (`frame::whole_publish`) to the
    /// target of its channel's last batch, appended in one step instead of
    /// three frames' worth of dispatch. `None` (nothing done) whenever the
    /// frame-by-frame path could act otherwise: another target, a header
    /// it would refuse, a channel not open or mid-content, the connection
    /// not running. Returns the bytes used.
    pub fn whole_publish(&self, buf: &[u8], frame_max: usize) -> Option<usize> {
        let (m, h, body, used) = frame::whole_publish(buf, frame_max)?;
        let p = method::parse_publish(m.payload).filter(|p| !p.immediate)?;
        let c = &self.shard.config;
        let hdr = parse_header(h.payload, c.message_bytes_max as usize, c.table_depth_max as usize).ok()?;
        // A `reply_to` may need rewriting (direct reply-to): the frame path.
        if crate::protocol::props::has_reply_to(hdr.props) {
            return None;
        }
        let n = m.channel;
        let mut st = self.st.borrow_mut();
        if st.phase != Phase::Running || n == 0 || n > st.channel_max {
            return None;
        }
        let consumes = !st.consumers.is_empty();
        // A transaction's publishes take the frame-by-frame path, which
        // counts them against its limits at their header.
        let ch = st.channels.get_mut(&n).filter(|ch| ch.state == ChState::Open && ch.content.is_none())?;
        if ch.tx.is_some() {
            return None;
        }
        if !ch.batch_takes(p.exchange, p.routing_key, p.mandatory) {
            return None;
        }
        let table = self.shard.routing.table.borrow();
        if !p.exchange.is_empty() && table.exchange(&ch.batch_exchange_key).is_none_or(|x| x.internal) {
            return None;
        }
        drop(table);
        let (persistent, mandatory, body_len) = (hdr.mode == 2, p.mandatory, hdr.body_len);
        ch.content = Some(Content { persistent, mandatory, body_len, have_header: true, same_target: true });
        ch.content_props.clear();
        if hdr.props != [0, 0] {
            ch.content_props.extend_from_slice(hdr.props);
        }
        ch.content_body.clear();
        let core = Core::new(self, consumes);
        complete(n, ch, body.map(|b| b.payload), &core);
        Some(used)
    }
}

/// A content header that may be stored.
pub struct Header<'a> {
    pub body_len: usize,
    pub props: &'a [u8],
    /// delivery_mode; 2 is persistent.
    pub mode: u8,
}

pub enum HeaderError {
    Short,
    NotBasic,
    Syntax(Syntax),
    TooLarge(u64),
    BadExpiration(String),
}

impl HeaderError {
    fn fault(self, n: u16, max: usize) -> Fault {
        let cause = id::BASIC_PUBLISH;
        match self {
            HeaderError::Short => conn_fault(code::FRAME_ERROR, "short content header", cause),
            HeaderError::NotBasic => conn_fault(code::FRAME_ERROR, "content header class is not basic", cause),
            HeaderError::Syntax(e) => conn_fault(code::SYNTAX_ERROR, e.to_string(), cause),
            HeaderError::TooLarge(body_len) => ch_fault(
                n,
                code::PRECONDITION_FAILED,
                format!("PRECONDITION_FAILED - message of {body_len} bytes is larger than message_bytes_max {max}"),
            ),
            HeaderError::BadExpiration(bad) => {
                ch_fault(n, code::PRECONDITION_FAILED, format!("PRECONDITION_FAILED - invalid expiration {bad:?}"))
            }
        }
    }
}

/// Checks a content header's payload: class, size limit, properties (a
/// headers table may nest `table_depth_max` levels).
pub fn parse_header(payload: &[u8], max: usize, table_depth_max: usize) -> Result<Header<'_>, HeaderError> {
    let mut r = Reader::new(payload);
    let head = (r.u16(), r.u16(), r.u64());
    let (Ok(class), Ok(_weight), Ok(body_len)) = head else {
        return Err(HeaderError::Short);
    };
    if class != 60 {
        return Err(HeaderError::NotBasic);
    }
    let props = r.rest();
    // The whole list, not only up to delivery-mode: what is stored is
    // delivered to other clients, who must be able to parse it.
    if !method::props_are_amqp_limited(props, table_depth_max) {
        return Err(HeaderError::Syntax(Syntax::Field("malformed basic property list")));
    }
    let body = body_size(body_len, props.len(), max).ok_or(HeaderError::TooLarge(body_len))?;
    let mode = method::delivery_mode(props, table_depth_max).map_err(HeaderError::Syntax)?;
    if let Some(bad) = bad_expiration(props) {
        return Err(HeaderError::BadExpiration(bad));
    }
    Ok(Header { body_len: body, props, mode })
}

/// The peer's `body_size` (any u64) as a length, if it and the properties
/// fit `max`: compared in u64 before any arithmetic, so a size near 2^64
/// cannot wrap into a small one.
fn body_size(body_len: u64, props_len: usize, max: usize) -> Option<usize> {
    if props_len > usize::from(u16::MAX) {
        return None;
    }
    let room = u64::try_from(max).ok()?.checked_sub(u64::try_from(props_len).ok()?)?;
    if body_len > room {
        return None;
    }
    usize::try_from(body_len).ok()
}

/// The `expiration` property when it is not a number of milliseconds
/// (RabbitMQ refuses the publish); cheap when the property is absent.
fn bad_expiration(props: &[u8]) -> Option<String> {
    const EXPIRATION_BIT: u16 = 1 << (15 - crate::protocol::props::EXPIRATION);
    let flags = u16::from_be_bytes([*props.first()?, *props.get(1)?]);
    if flags & EXPIRATION_BIT == 0 {
        return None;
    }
    let text = crate::protocol::props::scan(props)?.expiration?;
    match crate::protocol::props::expiration_ms(text) {
        Some(_) => None,
        None => Some(String::from_utf8_lossy(text).into_owned()),
    }
}

/// A whole message: appended to the channel's batch for its queue.
fn complete(n: u16, ch: &mut Channel, body: Option<&[u8]>, core: &Core<'_>) {
    let Some(content) = ch.content.take() else { return };
    let same = ch.batch.as_ref().is_some_and(|b| b.persistent == content.persistent)
        && (content.same_target
            || ch.has_target
                && ch.batch_mandatory == content.mandatory
                && same_bytes(ch.batch_queue.as_bytes(), ch.content_queue.as_bytes())
                && same_bytes(ch.batch_exchange.as_bytes(), ch.content_exchange.as_bytes()));
    if !same {
        flush_batch(n, ch, core);
        if !content.same_target {
            ch.batch_queue.clone_from(&ch.content_queue);
            ch.batch_exchange.clone_from(&ch.content_exchange);
            ch.batch_exchange_key.clone_from(&ch.content_exchange_key);
            ch.batch_mandatory = content.mandatory;
            ch.has_target = true;
        }
        ch.batch = Some(PubBatch {
            persistent: content.persistent,
            mandatory: content.mandatory,
            count: 0,
            len: 0,
            first_seq: ch.pub_seq + 1,
        });
    }
    ch.pub_seq += 1;
    let body = body.unwrap_or(&ch.content_body);
    if ch.arena.capacity() - ch.arena.len() < 16 + ch.content_props.len() + body.len() {
        ch.arena.reserve((64 * 1024).max(16 + ch.content_props.len() + body.len()));
    }
    put_entry(&mut ch.arena, 0, &ch.content_props, body);
    if let Some(b) = ch.batch.as_mut() {
        b.count += 1;
        b.len = ch.arena.len();
    }
}

/// Sends the channel's publish batch, if any, as one request.
pub fn flush_batch(n: u16, ch: &mut Channel, core: &Core<'_>) {
    let Some(b) = ch.batch.take() else { return };
    core.count_received(b.count, ch.confirm);
    ch.received += u64::from(b.count);
    let entries = ch.arena.split_to(b.len).freeze();
    if let Some(tx) = ch.tx.as_mut() {
        // Held until tx.commit (`tx.rs`), names as the client gave them.
        let names = (ch.batch_exchange.as_str(), ch.batch_queue.as_str());
        tx.push_publish(names, (b.mandatory, b.persistent), entries, b.count);
        return;
    }
    let confirm = ch.confirm || b.mandatory;
    if confirm {
        let returns = b.mandatory.then(|| Returned {
            exchange: ch.batch_exchange.clone(),
            key: ch.batch_queue.clone(),
            entries: entries.clone(),
            count: b.count,
        });
        ch.outstanding.push_back(Outstanding {
            first_seq: b.first_seq,
            count: b.count,
            confirm: ch.confirm,
            returns,
            result: None,
        });
    }
    let rid = rid(KIND_PUB, n, b.first_seq);
    // The names stay as the target the next publishes are compared with.
    let (queue, exchange) = (&ch.batch_queue, &ch.batch_exchange);
    if !exchange.is_empty() {
        let opts = PubOpts { persistent: b.persistent, confirm, mandatory: b.mandatory };
        core.publish_to(rid, opts, (exchange, queue), entries, b.count);
        return;
    }
    if !queue_name_ok(queue) {
        // No queue can have this name: unroutable without asking anyone.
        core.count_unroutable(b.mandatory, b.count);
        ch.settle(b.first_seq, Settled::NoRoute);
        return;
    }
    if crate::protocol::reply_to::is_reply_name(queue) {
        let o = crate::server::shard::ReplyOpts { confirm, mandatory: b.mandatory };
        core.direct_reply(rid, queue, o, entries, b.count);
        return;
    }
    // Per-message semantics: a queue's reject-publish refuses only the
    // messages that find it full.
    let mode = PublishMode { persistent: b.persistent, confirm, partial: true, mandatory: Some(b.mandatory) };
    core.publish(rid, mode, queue, entries, b.count);
}

/// Builds a basic.return with the message's content.
pub fn put_return(b: &mut BytesMut, n: u16, r: &Returned, props: &[u8], body: &[u8], frame_max: usize) {
    method::put(b, n, id::BASIC_RETURN, |b| {
        b.put_u16(code::NO_ROUTE);
        put_shortstr(b, "NO_ROUTE");
        put_shortstr(b, &r.exchange);
        put_shortstr(b, &r.key);
    });
    frame::put_content_header(b, n, 60, body.len() as u64, props);
    frame::put_body(b, n, body, frame_max);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body_len: u64, props: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 0];
        p.extend_from_slice(&body_len.to_be_bytes());
        p.extend_from_slice(props);
        p
    }

    #[test]
    fn body_sizes_near_2_64_never_wrap() {
        let max = 1 << 20;
        for bad in [u64::MAX, u64::MAX - 1, u64::MAX - 4, (max as u64) + 1, 1 << 63] {
            let h = header(bad, &[0, 0]);
            assert!(matches!(parse_header(&h, max, 32), Err(HeaderError::TooLarge(n)) if n == bad), "{bad}");
        }
        // The properties count toward the limit.
        assert!(matches!(parse_header(&header(max as u64 - 1, &[0, 0]), max, 32), Err(HeaderError::TooLarge(_))));
        assert!(matches!(parse_header(&header(max as u64 - 2, &[0, 0]), max, 32), Ok(h) if h.body_len == max - 2));
        assert_eq!(body_size(5, 0, 4), None);
        assert_eq!(body_size(0, 5, 4), None);
        assert_eq!(body_size(4, 0, 4), Some(4));
    }

    /// Found while writing the fuzz targets: a body size near 2^64 wrapped
    /// past the limit in `body_len as usize + props.len()` (in release
    /// builds), and the channel then buffered body frames without bound.
    #[test]
    fn a_body_size_near_2_to_the_64_is_too_large() {
        for body_len in [u64::MAX, u64::MAX - 1, u64::MAX - 5] {
            assert!(matches!(parse_header(&header(body_len, &[0, 0]), 1 << 20, 32), Err(HeaderError::TooLarge(_))));
        }
        assert!(parse_header(&header(100, &[0, 0]), 102, 32).is_ok());
        assert!(matches!(parse_header(&header(101, &[0, 0]), 102, 32), Err(HeaderError::TooLarge(101))));
    }

    /// The whole property list is checked, not only up to delivery-mode:
    /// a message-id flag with no bytes behind it, or bytes after the last
    /// property, is a syntax error as in RabbitMQ.
    #[test]
    fn a_malformed_property_list_is_refused() {
        let mode_then_missing_id = [0x10, 0x80, 2];
        assert!(matches!(parse_header(&header(0, &mode_then_missing_id), 4096, 32), Err(HeaderError::Syntax(_))));
        let trailing = [0x10, 0x00, 2, 9];
        assert!(matches!(parse_header(&header(0, &trailing), 4096, 32), Err(HeaderError::Syntax(_))));
        let good = header(3, &[0x10, 0x00, 2]);
        let h = parse_header(&good, 4096, 32).ok().expect("persistent, well formed");
        assert_eq!((h.mode, h.body_len), (2, 3));
    }
}
