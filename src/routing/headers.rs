//! Headers exchanges: a binding's argument table is compared with the
//! message's `headers` table. Also where a message's headers are found in
//! its AMQP basic properties.
//!
//! Semantics (RabbitMQ's, see `docs/routing.md`): `x-match` is `all` (the
//! default), `any`, `all-with-x` or `any-with-x`. Plain `all`/`any` ignore
//! binding arguments whose name starts with `x-`; the `-with-x` forms
//! compare them too. `x-match` itself is never compared. A binding value of
//! type void asks only that the header be present. Values compare by kind
//! and value: integers of any width by their numeric value, `f` and `d`
//! floats as f64, long strings and byte arrays by their bytes, everything
//! else by type and raw bytes.

use super::route::Sink;
use super::small::SmallVec;
use super::{BindingDef, Dest, RouteError};
use crate::protocol::field_table::{self, entries as table_entries, get as table_get, split_key, split_long};

/// The raw `headers` field table (length prefix excluded) of AMQP
/// basic-properties bytes (flags then property list, as in a content
/// header), or None if there is none or the properties do not parse.
/// Only the table's top level is checked: that is all matching reads
/// (nested values compare as raw bytes), and it costs no depth.
pub fn headers_of(props: &[u8]) -> Option<&[u8]> {
    let (flags, mut rest) = split_u16(props)?;
    if flags & (1 << 13) == 0 {
        return None;
    }
    // Bit 0 says another flags word follows. No basic property lives in
    // the continuation words, but the property list starts after them.
    let mut more = flags;
    while more & 1 != 0 {
        (more, rest) = split_u16(rest)?;
    }
    if flags & (1 << 15) != 0 {
        rest = split_key(rest).ok()?.1; // content-type
    }
    if flags & (1 << 14) != 0 {
        rest = split_key(rest).ok()?.1; // content-encoding
    }
    let (raw, _) = split_long(rest).ok()?;
    field_table::validate_top(raw).ok()?;
    Some(raw)
}

fn split_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = b.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*head), rest))
}

/// Checks that `raw` is a well-formed field table (length prefix excluded),
/// so that later walks with `table_entries` see every entry. Arguments
/// were held to the broker's `table_depth_max` where they came in (a
/// connection); here any depth up to the ceiling is well formed, so stored
/// definitions load whatever the limit is now.
pub(crate) fn check_table(raw: &[u8]) -> Result<(), RouteError> {
    field_table::validate(raw, field_table::TABLE_DEPTH_CEILING)
        .map_err(|e| RouteError::BadArgument(format!("malformed argument table: {e}")))
}

/// A field value, normalised for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Value<'a> {
    #[default]
    Void,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Long strings and byte arrays.
    Str(&'a [u8]),
    /// Decimals, timestamps, tables, arrays: type and raw bytes.
    Other(u8, &'a [u8]),
}

fn be<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}

/// Normalises a value from `Reader::value` (type octet and value bytes).
/// Types follow RabbitMQ's table dialect, as `protocol::field_table` does.
pub(crate) fn value(kind: u8, v: &[u8]) -> Value<'_> {
    let int = match kind {
        b'b' => be::<1>(v).map(|b| i64::from(i8::from_be_bytes(b))),
        b'B' => be::<1>(v).map(|b| i64::from(u8::from_be_bytes(b))),
        b's' => be::<2>(v).map(|b| i64::from(i16::from_be_bytes(b))),
        b'u' => be::<2>(v).map(|b| i64::from(u16::from_be_bytes(b))),
        b'I' => be::<4>(v).map(|b| i64::from(i32::from_be_bytes(b))),
        b'i' => be::<4>(v).map(|b| i64::from(u32::from_be_bytes(b))),
        b'l' | b'L' => be::<8>(v).map(i64::from_be_bytes),
        _ => None,
    };
    if let Some(n) = int {
        return Value::Int(n);
    }
    let float = match kind {
        b'f' => be::<4>(v).map(|b| f64::from(f32::from_be_bytes(b))),
        b'd' => be::<8>(v).map(f64::from_be_bytes),
        _ => None,
    };
    match (kind, float) {
        (_, Some(f)) => Value::Float(f),
        (b't', _) => Value::Bool(v.first().is_some_and(|b| *b != 0)),
        (b'S' | b'x', _) => Value::Str(v),
        (b'V', _) => Value::Void,
        _ => Value::Other(kind, v),
    }
}

/// A message header: name and value.
pub(crate) type Header<'h> = (&'h [u8], Value<'h>);

/// The message's headers, parsed on first use: only messages that reach a
/// headers exchange pay for it, and they pay once however many bindings
/// and exchanges look.
pub(crate) struct MessageHeaders<'h> {
    raw: Option<&'h [u8]>,
    parsed: Option<SmallVec<Header<'h>, 16>>,
}

impl<'h> MessageHeaders<'h> {
    pub(crate) fn new(raw: Option<&'h [u8]>) -> Self {
        Self { raw, parsed: None }
    }

    pub(crate) fn get(&mut self) -> &[Header<'h>] {
        let raw = self.raw;
        self.parsed
            .get_or_insert_with(|| {
                let mut v = SmallVec::new();
                for (k, kind, val) in raw.into_iter().flat_map(table_entries) {
                    v.push((k, value(kind, val)));
                }
                v
            })
            .as_slice()
    }
}

struct Pair {
    key: Box<[u8]>,
    kind: u8,
    val: Box<[u8]>,
}

/// One binding of a headers exchange, its arguments parsed.
struct HeadersBinding {
    dest: Dest,
    /// The raw arguments: with `dest`, what tells bindings apart on unbind.
    args: bytes::Bytes,
    any: bool,
    pairs: Vec<Pair>,
}

impl HeadersBinding {
    fn parse(b: &BindingDef) -> Result<Self, RouteError> {
        check_table(&b.args)?;
        let (any, with_x) = match table_get(&b.args, "x-match") {
            None => (false, false),
            Some((b'S', mode)) => match mode {
                b"all" => (false, false),
                b"any" => (true, false),
                b"all-with-x" => (false, true),
                b"any-with-x" => (true, true),
                other => {
                    let other = String::from_utf8_lossy(other);
                    let msg = format!("invalid x-match '{other}': expected all, any, all-with-x or any-with-x");
                    return Err(RouteError::BadArgument(msg));
                }
            },
            Some((kind, _)) => {
                let msg = format!("x-match must be a long string, not of type '{}'", char::from(kind));
                return Err(RouteError::BadArgument(msg));
            }
        };
        let pairs = table_entries(&b.args)
            .filter(|(k, _, _)| *k != b"x-match" && (with_x || !k.starts_with(b"x-")))
            .map(|(k, kind, v)| Pair { key: k.into(), kind, val: v.into() })
            .collect();
        Ok(Self { dest: b.dest.clone(), args: b.args.clone(), any, pairs })
    }

    fn matches(&self, msg: &[Header<'_>]) -> bool {
        for p in &self.pairs {
            let ok = match msg.iter().find(|(k, _)| *k == &*p.key) {
                None => false,
                Some(_) if p.kind == b'V' => true,
                Some((_, v)) => *v == value(p.kind, &p.val),
            };
            if ok == self.any {
                // any: the first hit decides; all: the first miss does.
                return ok;
            }
        }
        // any with no hit (or no pairs) fails; all with no miss holds.
        !self.any
    }
}

/// The bindings of one headers exchange. Matching is a scan of every
/// binding (as in RabbitMQ): headers exchanges trade speed for expressivity.
#[derive(Default)]
pub(crate) struct HeadersMatcher {
    bindings: Vec<HeadersBinding>,
}

impl HeadersMatcher {
    pub(crate) fn add(&mut self, b: &BindingDef) -> Result<(), RouteError> {
        self.bindings.push(HeadersBinding::parse(b)?);
        Ok(())
    }

    pub(crate) fn remove(&mut self, b: &BindingDef) {
        if let Some(i) = self.bindings.iter().position(|h| h.dest == b.dest && h.args == b.args) {
            self.bindings.swap_remove(i);
        }
    }

    pub(crate) fn route<'a>(&'a self, msg: &[Header<'_>], sink: &mut Sink<'a, '_>) {
        for b in &self.bindings {
            if b.matches(msg) {
                sink.dest(&b.dest);
            }
        }
    }
}

/// A raw table from (key, type, value bytes), for tests: long strings and
/// byte arrays get their length prefix, other values are written as given.
#[cfg(test)]
pub(crate) fn test_table(entries: &[(&str, u8, &[u8])]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    for (k, kind, v) in entries {
        crate::protocol::field_table::put_shortstr(&mut b, k);
        b.put_u8(*kind);
        if matches!(kind, b'S' | b'x') {
            b.put_u32(crate::protocol::wire::len32(v.len()));
        }
        b.put_slice(v);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::test_table as table;
    use super::*;
    use crate::protocol::field_table::put_shortstr;
    use crate::routing::route::collect;
    use bytes::{BufMut, BytesMut};

    fn binding(args: &[(&str, u8, &[u8])]) -> BindingDef {
        BindingDef { source: "h".into(), dest: Dest::Queue("q".into()), key: String::new(), args: table(args) }
    }

    fn routes(b: &[(&str, u8, &[u8])], msg: Option<&[(&str, u8, &[u8])]>) -> bool {
        let mut m = HeadersMatcher::default();
        m.add(&binding(b)).unwrap();
        let raw = msg.map(table);
        let mut headers = MessageHeaders::new(raw.as_deref());
        !collect(|sink| m.route(headers.get(), sink)).is_empty()
    }

    const ALL: (&str, u8, &[u8]) = ("x-match", b'S', b"all");
    const ANY: (&str, u8, &[u8]) = ("x-match", b'S', b"any");

    #[test]
    fn all_and_any() {
        let fmt = ("format", b'S', &b"pdf"[..]);
        let eu = ("region", b'S', &b"eu"[..]);
        let us = ("region", b'S', &b"us"[..]);
        assert!(routes(&[ALL, fmt, eu], Some(&[eu, fmt, ("other", b't', &[1])])));
        assert!(!routes(&[ALL, fmt, eu], Some(&[fmt, us])));
        assert!(routes(&[fmt, eu], Some(&[fmt, eu])), "all is the default");
        assert!(routes(&[ANY, fmt, eu], Some(&[us, fmt])));
        assert!(!routes(&[ANY, fmt, eu], Some(&[us])));
        // No headers: only `all` with no pairs matches.
        assert!(routes(&[ALL], None));
        assert!(routes(&[], Some(&[fmt])));
        assert!(!routes(&[ANY], None));
        assert!(!routes(&[ALL, fmt], None));
    }

    #[test]
    fn x_arguments_and_void() {
        let tenant = ("x-tenant", b'S', &b"a"[..]);
        assert!(routes(&[ALL, tenant], Some(&[])), "x- pairs are ignored by all");
        assert!(!routes(&[ANY, tenant], Some(&[tenant])), "and by any");
        assert!(!routes(&[("x-match", b'S', b"all-with-x"), tenant], Some(&[])));
        assert!(routes(&[("x-match", b'S', b"all-with-x"), tenant], Some(&[tenant])));
        assert!(routes(&[("x-match", b'S', b"any-with-x"), tenant], Some(&[tenant])));
        // Void: presence only.
        assert!(routes(&[ALL, ("k", b'V', &[])], Some(&[("k", b'I', &[0, 0, 0, 9])])));
        assert!(!routes(&[ALL, ("k", b'V', &[])], Some(&[("j", b'V', &[])])));
    }

    #[test]
    fn values_compare_by_kind_and_value() {
        let long = ("n", b'l', &[0, 0, 0, 0, 0, 0, 0, 7][..]);
        assert!(routes(&[long], Some(&[("n", b'b', &[7])])));
        assert!(routes(&[long], Some(&[("n", b'u', &[0, 7])])));
        assert!(!routes(&[long], Some(&[("n", b'I', &[0, 0, 0, 8])])));
        assert!(routes(&[("n", b'b', &[0xff])], Some(&[("n", b'I', &[0xff, 0xff, 0xff, 0xff])])), "-1 == -1");
        assert!(!routes(&[("n", b'b', &[0xff])], Some(&[("n", b'B', &[0xff])])), "-1 != 255");
        assert!(!routes(&[long], Some(&[("n", b'S', b"7")])));
        assert!(routes(&[("s", b'S', b"v")], Some(&[("s", b'x', b"v")])));
        assert!(routes(&[("f", b'd', &1.5f64.to_be_bytes())], Some(&[("f", b'f', &1.5f32.to_be_bytes())])));
        assert!(routes(&[("t", b't', &[1])], Some(&[("t", b't', &[2])])));
        assert!(!routes(&[("t", b't', &[1])], Some(&[("t", b't', &[0])])));
    }

    #[test]
    fn bad_x_match_is_refused() {
        let mut m = HeadersMatcher::default();
        assert!(matches!(m.add(&binding(&[("x-match", b'S', b"most")])), Err(RouteError::BadArgument(_))));
        assert!(matches!(m.add(&binding(&[("x-match", b'b', &[1])])), Err(RouteError::BadArgument(_))));
        let mut bad = binding(&[]);
        bad.args = bytes::Bytes::from_static(&[3, b'a']);
        assert!(matches!(m.add(&bad), Err(RouteError::BadArgument(_))));
        assert!(m.bindings.is_empty());
    }

    #[test]
    fn finds_headers_in_properties() {
        let hdrs = table(&[("k", b'S', b"v")]);
        // content-type "t", headers, delivery-mode 2.
        let mut p = BytesMut::new();
        p.put_u16(0b1011_0000_0000_0000);
        put_shortstr(&mut p, "t");
        p.put_u32(crate::protocol::wire::len32(hdrs.len()));
        p.put_slice(&hdrs);
        p.put_u8(2);
        assert_eq!(headers_of(&p), Some(&hdrs[..]));
        // No headers flag; a truncated table; continued flags.
        assert_eq!(headers_of(&[0x90, 0, 1, b't', 2]), None);
        assert_eq!(headers_of(&p[..p.len() - 3]), None);
        let mut c = BytesMut::new();
        c.put_u16(0b0010_0000_0000_0001);
        c.put_u16(0);
        c.put_u32(crate::protocol::wire::len32(hdrs.len()));
        c.put_slice(&hdrs);
        assert_eq!(headers_of(&c), Some(&hdrs[..]));
        assert_eq!(headers_of(&[]), None);
    }
}
