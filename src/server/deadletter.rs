//! Dead-lettering, the message side: the `x-death` header RabbitMQ adds
//! (and the `x-first-death-*` ones), and its rule for dead-letter cycles.
//! Pure functions over stored entries; the shard does the republishing
//! (`Shard::dead_letter`).

use crate::protocol::batch::{parse_entry, put_entry};
use crate::protocol::field_table::{Table, Value};
use crate::protocol::props::{self, Props, EXPIRATION};
use bytes::{Bytes, BytesMut};

/// Why a message was dead-lettered (`x-death`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// basic.reject / basic.nack / native Nack without requeue.
    Rejected,
    /// Its TTL (queue or message) ran out.
    Expired,
    /// Dropped or refused over `x-max-length` / `x-max-length-bytes`.
    Maxlen,
}

impl Reason {
    /// Every reason, in the order of [`Reason::index`].
    pub const ALL: [Reason; 3] = [Reason::Expired, Reason::Maxlen, Reason::Rejected];

    /// Its place in [`Reason::ALL`] (the shard's counters by reason).
    pub fn index(self) -> usize {
        match self {
            Reason::Expired => 0,
            Reason::Maxlen => 1,
            Reason::Rejected => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
        }
    }
}

/// One death: where the message was and how it had got there.
pub struct Death<'a> {
    pub queue: &'a str,
    pub reason: Reason,
    /// The exchange and routing key the message was published with.
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// Wall-clock seconds since the epoch.
    pub time: u64,
}

/// Why an entry cannot carry an `x-death` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmarkable {
    /// Its properties are not an AMQP property list (a native publisher's
    /// own bytes): they are left alone rather than destroyed.
    OpaqueProps,
    /// The new properties would not fit the entry's `u16` length.
    TooLarge,
}

/// The entry with `x-death` updated for `d`, the first-death headers set
/// if absent, and `expiration` moved into the death record (so the
/// message does not expire again where it lands), as RabbitMQ does.
pub fn mark(entry: &[u8], d: &Death<'_>) -> Result<Bytes, Unmarkable> {
    let e = parse_entry(entry).map_err(|_| Unmarkable::OpaqueProps)?;
    let p = if e.props.is_empty() { None } else { Some(Props::parse(e.props).map_err(|_| Unmarkable::OpaqueProps)?) };
    let mut headers = p.as_ref().and_then(|p| p.headers.clone()).unwrap_or_default();
    let expiration = p.as_ref().and_then(|p| p.short(EXPIRATION));
    let mut deaths = match headers.get("x-death") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let same = deaths.iter().position(|v| matches!(v, Value::Table(t) if is_death_of(t, d.queue, d.reason.name())));
    let record = match same {
        // The same queue and reason again: count it, and move it first.
        Some(i) => {
            let mut t = match deaths.remove(i) {
                Value::Table(t) => t,
                _ => Table::default(),
            };
            let n = t.get("count").and_then(Value::as_int).unwrap_or(0);
            t.set("count", Value::I64(i64::try_from(n + 1).unwrap_or(i64::MAX)));
            t
        }
        None => new_record(d, expiration),
    };
    deaths.insert(0, Value::Table(record));
    headers.set("x-death", Value::Array(deaths));
    for (key, v) in [("x-first-death-reason", d.reason.name()), ("x-first-death-queue", d.queue)] {
        if headers.get(key).is_none() {
            headers.set(key, Value::str(v));
        }
    }
    if headers.get("x-first-death-exchange").is_none() {
        headers.set("x-first-death-exchange", Value::str(d.exchange));
    }
    let new_props = props::rewrite(e.props, &headers, true).map_err(|_| Unmarkable::OpaqueProps)?;
    if new_props.len() > usize::from(u16::MAX) {
        return Err(Unmarkable::TooLarge);
    }
    let mut out = BytesMut::with_capacity(new_props.len() + e.body.len() + 8);
    put_entry(&mut out, 0, &new_props, e.body);
    Ok(out.freeze())
}

fn new_record(d: &Death<'_>, expiration: Option<&[u8]>) -> Table {
    let mut t = Table::default();
    t.set("count", Value::I64(1));
    t.set("reason", Value::str(d.reason.name()));
    t.set("queue", Value::str(d.queue));
    t.set("time", Value::Timestamp(d.time));
    t.set("exchange", Value::str(d.exchange));
    t.set("routing-keys", Value::Array(vec![Value::str(d.routing_key)]));
    if let Some(x) = expiration {
        t.set("original-expiration", Value::LongStr(x.to_vec()));
    }
    t
}

fn is_death_of(t: &Table, queue: &str, reason: &str) -> bool {
    t.get("queue").and_then(Value::as_str) == Some(queue) && t.get("reason").and_then(Value::as_str) == Some(reason)
}

/// RabbitMQ's cycle rule, for an entry already marked with its latest
/// death: routing it to `target` closes a cycle when `target` is in its
/// `x-death` history and no death from the latest back to `target`'s was
/// a rejection. Such a message is dropped: nothing but a consumer's
/// rejection could ever stop it going round.
pub fn is_cycle(entry: &[u8], target: &str) -> bool {
    let Ok(e) = parse_entry(entry) else { return false };
    let Ok(p) = Props::parse(e.props) else { return false };
    let Some(Value::Array(deaths)) = p.headers.as_ref().and_then(|h| h.get("x-death")) else { return false };
    for d in deaths {
        let Value::Table(t) = d else { return false };
        if t.get("reason").and_then(Value::as_str) == Some("rejected") {
            return false;
        }
        if t.get("queue").and_then(Value::as_str) == Some(target) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::props::PropsBuilder;

    fn entry(props: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        put_entry(&mut b, 0, props, b"body");
        b.freeze()
    }

    fn death<'a>(queue: &'a str, reason: Reason) -> Death<'a> {
        Death { queue, reason, exchange: "", routing_key: queue, time: 1_700_000_000 }
    }

    fn headers(e: &[u8]) -> Table {
        let e = parse_entry(e).unwrap();
        Props::parse(e.props).unwrap().headers.unwrap()
    }

    fn deaths(h: &Table) -> Vec<(String, String, i128)> {
        let Some(Value::Array(a)) = h.get("x-death") else { panic!("no x-death") };
        a.iter()
            .map(|v| {
                let Value::Table(t) = v else { panic!("not a table") };
                let s = |k| t.get(k).and_then(Value::as_str).unwrap().to_string();
                (s("queue"), s("reason"), t.get("count").and_then(Value::as_int).unwrap())
            })
            .collect()
    }

    #[test]
    fn x_death_counts_and_moves_the_latest_first() {
        let e0 = entry(&PropsBuilder::new().content_type("t").expiration_ms(50).build());
        let e1 = mark(&e0, &death("a", Reason::Expired)).unwrap();
        let h = headers(&e1);
        assert_eq!(deaths(&h), vec![("a".into(), "expired".into(), 1)]);
        assert_eq!(h.get("x-first-death-reason").and_then(Value::as_str), Some("expired"));
        assert_eq!(h.get("x-first-death-queue").and_then(Value::as_str), Some("a"));
        assert_eq!(h.get("x-first-death-exchange").and_then(Value::as_str), Some(""));
        let p = parse_entry(&e1).unwrap();
        assert!(!Props::parse(p.props).unwrap().is_set(EXPIRATION), "expiration moved into x-death");
        assert_eq!(p.body, b"body");
        let e2 = mark(&e1, &death("b", Reason::Rejected)).unwrap();
        let e3 = mark(&e2, &death("a", Reason::Expired)).unwrap();
        let h = headers(&e3);
        assert_eq!(deaths(&h), vec![("a".into(), "expired".into(), 2), ("b".into(), "rejected".into(), 1)]);
        assert_eq!(h.get("x-first-death-queue").and_then(Value::as_str), Some("a"));
        // No properties at all: x-death is still added.
        assert_eq!(deaths(&headers(&mark(&entry(&[]), &death("q", Reason::Maxlen)).unwrap())).len(), 1);
        assert_eq!(mark(&entry(b"opaque"), &death("q", Reason::Maxlen)), Err(Unmarkable::OpaqueProps));
    }

    #[test]
    fn automatic_cycles_are_detected_rejections_break_them() {
        let e = mark(&entry(&[]), &death("a", Reason::Expired)).unwrap();
        assert!(!is_cycle(&e, "b"));
        assert!(is_cycle(&e, "a"), "a queue dead-lettering to itself on expiry");
        let e = mark(&e, &death("b", Reason::Expired)).unwrap();
        assert!(is_cycle(&e, "a"), "a -> b -> a, all expired");
        let r = mark(&mark(&entry(&[]), &death("a", Reason::Rejected)).unwrap(), &death("b", Reason::Expired)).unwrap();
        assert!(!is_cycle(&r, "a"), "a rejection in the cycle");
        assert!(!is_cycle(&mark(&entry(&[]), &death("a", Reason::Rejected)).unwrap(), "a"));
    }
}
