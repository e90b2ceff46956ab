//! AMQP 0-9-1: frames, methods, content headers, basic properties and
//! field tables, through the entry points the connection uses.

use ringmq::amqp::publish::parse_header;
use ringmq::protocol::amqp::frame::{self, Decoded, FRAME_END, OVERHEAD};
use ringmq::protocol::amqp::method::{self, Method};
use ringmq::protocol::amqp::wire::Reader;
use ringmq::protocol::field_table::Table;
use ringmq::protocol::field_table::TABLE_DEPTH_MAX;
use ringmq::protocol::props::{self, Props};

/// Frame after frame as the read loop takes them, with the first byte
/// picking `frame_max`; each method frame is parsed, each content header
/// checked as a publish's would be, and the whole-publish fast path must
/// agree with the frame-by-frame one.
pub fn amqp_frame(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let frame_max = OVERHEAD + usize::from(pick) * 32;
    let message_max = usize::from(pick) * 16;
    loop {
        let fast = frame::whole_publish(rest, frame_max);
        let Ok(Decoded::Frame(f, used)) = frame::decode(rest, frame_max) else {
            assert!(fast.is_none(), "whole_publish took what decode does not");
            return;
        };
        assert_eq!(used, f.payload.len() + OVERHEAD);
        assert!(used <= frame_max && rest[used - 1] == FRAME_END);
        assert_eq!(frame::peek_total(rest), Some(used));
        assert_eq!(f.payload, &rest[7..used - 1]);
        for cut in [0, 7, used - 1] {
            assert_eq!(frame::decode(&rest[..cut], frame_max), Ok(Decoded::Incomplete));
        }
        if let Some((m, h, body, n)) = fast {
            assert_eq!(m, f, "the fast path's method frame is the first frame");
            assert!(n > used && n <= rest.len());
            check_whole_publish(m.payload, h.payload, body.map(|b| b.payload));
        }
        match f.kind {
            frame::METHOD => check_method(f.payload),
            frame::HEADER => check_header(f.payload, message_max),
            _ => {}
        }
        rest = &rest[used..];
    }
}

fn check_whole_publish(m: &[u8], h: &[u8], body: Option<&[u8]>) {
    let declared = u64::from_be_bytes(h[4..12].try_into().expect("checked by whole_publish"));
    assert_eq!(declared, body.map_or(0, |b| b.len() as u64));
    assert!(m.starts_with(&[0, 60, 0, 40]));
}

/// `parse` never panics, and the publish fast path reads what it reads.
fn check_method(payload: &[u8]) {
    let parsed = method::parse(payload);
    let fast = method::parse_publish(payload);
    if let Ok((_, Method::Publish { exchange, routing_key, mandatory, immediate })) = parsed {
        let p = fast.expect("parse_publish refuses a publish that parse accepts");
        assert_eq!((p.exchange, p.routing_key), (exchange.as_bytes(), routing_key.as_bytes()));
        assert_eq!((p.mandatory, p.immediate), (mandatory, immediate));
    } else if let Some(p) = fast {
        // The fast path skips UTF-8 checks; anything else is the same.
        let utf8 = std::str::from_utf8(p.exchange).is_ok() && std::str::from_utf8(p.routing_key).is_ok();
        assert!(!utf8 || parsed.is_err(), "parse_publish accepts what parse reads as another method");
    }
}

/// A content header that is accepted is a well-formed basic property
/// list whose delivery mode is the one read, within the size limit.
fn check_header(payload: &[u8], max: usize) {
    let Ok(h) = parse_header(payload, max, TABLE_DEPTH_MAX) else { return };
    assert!(method::props_are_amqp(h.props), "accepted properties that are not a property list");
    assert!((h.body_len as u64).saturating_add(h.props.len() as u64) <= max as u64);
    if let Some(s) = props::scan(h.props) {
        assert_eq!(h.mode, s.delivery_mode.unwrap_or(0));
    }
}

/// A basic property list as stored with a message: every reader of it
/// agrees, and a dead-lettering rewrite keeps what it must.
pub fn amqp_props(raw: &[u8]) {
    let scanned = props::scan(raw);
    let amqp = method::props_are_amqp(raw);
    let mode = method::delivery_mode(raw, TABLE_DEPTH_MAX);
    if let Some(e) = scanned.and_then(|s| s.expiration) {
        assert!(props::expiration_ms(e).is_none_or(|ms| ms <= u64::from(u32::MAX)));
    }
    if amqp {
        assert!(mode.is_ok());
        if let Some(s) = scanned {
            assert_eq!(mode, Ok(s.delivery_mode.unwrap_or(0)));
        }
    }
    let Ok(p) = Props::parse(raw) else { return };
    assert!(amqp && scanned.is_some(), "Props::parse accepts what another reader refuses");
    let headers = p.headers.clone().unwrap_or_default();
    for drop_expiration in [false, true] {
        let out = props::rewrite(raw, &headers, drop_expiration).expect("rewrite of a parsed list");
        let q = Props::parse(&out).expect("a rewritten list parses");
        assert_eq!(q.headers.as_ref().map(Table::encode), Some(headers.encode()));
        assert_eq!(q.is_set(props::EXPIRATION), p.is_set(props::EXPIRATION) && !drop_expiration);
        for field in [props::CONTENT_TYPE, props::CORRELATION_ID, props::MESSAGE_ID, props::APP_ID] {
            assert_eq!(q.short(field), p.short(field));
        }
        let (a, b) = (props::scan(&out).expect("scan"), scanned.expect("scan"));
        assert_eq!((a.priority, a.delivery_mode), (b.priority, b.delivery_mode));
    }
}

/// A raw field table through both public entry points: the owned
/// `Table::parse` and the AMQP reader's validating `table()`.
pub fn table(raw: &[u8]) {
    let owned = Table::parse(raw);
    let mut prefixed = (raw.len() as u32).to_be_bytes().to_vec();
    prefixed.extend_from_slice(raw);
    let walked = Reader::new(&prefixed).table().map(<[u8]>::len);
    if let Ok(t) = owned {
        assert_eq!(walked, Ok(raw.len()), "the AMQP reader refuses a table Table::parse accepts");
        // Encoding is stable: what it writes parses back to itself.
        let once = t.encode();
        let again = Table::parse(&once).expect("an encoded table parses");
        assert_eq!(again.encode(), once);
        assert!(once.len() <= raw.len());
    }
}
