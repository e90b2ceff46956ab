//! AMQP 0-9-1 field tables (big-endian, RabbitMQ's field types), owned:
//! parse (through the walker in [`super`]), edit, re-encode byte for byte. Used for queue arguments (the
//! native Declare's arguments block, AMQP queue.declare) and message
//! headers (`x-death`). No server dependencies: the client builds argument
//! tables with [`TableBuilder`].
//!
//! A "raw table" here is a table's contents without its `u32` length
//! prefix, as AMQP methods carry it after the prefix.

use super::TableError;
use super::{split_key, split_value, TABLE_DEPTH_CEILING, TABLE_DEPTH_MAX};
use crate::protocol::wire::len32;
use bytes::BufMut;

/// One field value with its AMQP type tag, so it re-encodes to the same
/// bytes it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// `b` signed 8-bit.
    I8(i8),
    /// `B` unsigned 8-bit.
    U8(u8),
    /// `s` signed 16-bit (RabbitMQ's reading of the spec's errata).
    I16(i16),
    /// `u` unsigned 16-bit.
    U16(u16),
    /// `I` signed 32-bit.
    I32(i32),
    /// `i` unsigned 32-bit.
    U32(u32),
    /// `l` signed 64-bit.
    I64(i64),
    /// `L` unsigned 64-bit (not in RabbitMQ; accepted for other peers).
    U64(u64),
    F32(f32),
    F64(f64),
    /// `D`: scale, unscaled value.
    Decimal(u8, u32),
    /// `S`: bytes, usually UTF-8.
    LongStr(Vec<u8>),
    /// `x`: byte array.
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    Table(Table),
    Void,
}

impl Value {
    /// The value as an integer, whatever its integer type.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::I8(v) => v.into(),
            Value::U8(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I64(v) => v.into(),
            Value::U64(v) => v.into(),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn str(s: &str) -> Value {
        Value::LongStr(s.as_bytes().to_vec())
    }

    /// Short text for error messages: `20 (long)`, `"abc" (longstr)`.
    pub fn describe(&self) -> String {
        match self {
            Value::LongStr(b) => format!("{:?} (longstr)", String::from_utf8_lossy(b)),
            Value::Bool(b) => format!("{b} (bool)"),
            v => match v.as_int() {
                Some(i) => format!("{i} (integer)"),
                None => format!("{v:?}"),
            },
        }
    }
}

/// A field table: entries in their order on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table(pub Vec<(String, Value)>);

type Result<T> = std::result::Result<T, TableError>;

impl Table {
    /// Parses a raw table (no length prefix), nesting at most
    /// [`TABLE_DEPTH_MAX`] levels.
    pub fn parse(raw: &[u8]) -> Result<Table> {
        Self::parse_limited(raw, TABLE_DEPTH_MAX)
    }

    /// Parses a raw table nesting at most `depth_max` levels (the broker's
    /// `table_depth_max`). The walker validates it first, iteratively; the
    /// build below then recurses at most `depth_max` times, and
    /// `depth_max` is at most [`TABLE_DEPTH_CEILING`].
    pub fn parse_limited(raw: &[u8], depth_max: usize) -> Result<Table> {
        let depth_max = depth_max.min(TABLE_DEPTH_CEILING);
        super::validate(raw, depth_max)?;
        build_table(raw)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Replaces the value of `key`, or appends it.
    pub fn set(&mut self, key: &str, v: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.0.push((key.to_string(), v)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw table (no length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for (k, v) in &self.0 {
            put_key(out, k);
            put_value(out, v);
        }
    }
}

/// Builds a validated table; recursion is bounded by the depth it was
/// validated with.
fn build_table(raw: &[u8]) -> Result<Table> {
    let mut rest = raw;
    let mut t = Vec::new();
    while !rest.is_empty() {
        let (key, r) = split_key(rest)?;
        let key = std::str::from_utf8(key).map_err(|_| TableError::KeyNotUtf8)?;
        let (kind, v, r) = split_value(r)?;
        rest = r;
        t.push((key.to_string(), build_value(kind, v)?));
    }
    Ok(Table(t))
}

fn arr<const N: usize>(v: &[u8]) -> Result<[u8; N]> {
    v.try_into().map_err(|_| TableError::Truncated)
}

/// One value from its type and bytes as `split_value` returned them.
fn build_value(kind: u8, v: &[u8]) -> Result<Value> {
    Ok(match kind {
        b't' => Value::Bool(arr::<1>(v)?[0] != 0),
        b'b' => Value::I8(i8::from_be_bytes(arr(v)?)),
        b'B' => Value::U8(arr::<1>(v)?[0]),
        b's' => Value::I16(i16::from_be_bytes(arr(v)?)),
        b'u' => Value::U16(u16::from_be_bytes(arr(v)?)),
        b'I' => Value::I32(i32::from_be_bytes(arr(v)?)),
        b'i' => Value::U32(u32::from_be_bytes(arr(v)?)),
        b'l' => Value::I64(i64::from_be_bytes(arr(v)?)),
        b'L' => Value::U64(u64::from_be_bytes(arr(v)?)),
        b'f' => Value::F32(f32::from_be_bytes(arr(v)?)),
        b'd' => Value::F64(f64::from_be_bytes(arr(v)?)),
        b'D' => {
            let [scale, a, b, c, d] = arr(v)?;
            Value::Decimal(scale, u32::from_be_bytes([a, b, c, d]))
        }
        b'S' => Value::LongStr(v.to_vec()),
        b'x' => Value::Bytes(v.to_vec()),
        b'T' => Value::Timestamp(u64::from_be_bytes(arr(v)?)),
        b'F' => Value::Table(build_table(v)?),
        b'A' => {
            let mut items = Vec::new();
            let mut rest = v;
            while !rest.is_empty() {
                let (k, item, r) = split_value(rest)?;
                rest = r;
                items.push(build_value(k, item)?);
            }
            Value::Array(items)
        }
        b'V' => Value::Void,
        other => return Err(TableError::UnknownType(other)),
    })
}

/// Keys are short strings: longer ones are cut at a char boundary.
fn put_key(out: &mut Vec<u8>, k: &str) {
    super::put_shortstr(out, k);
}

fn put_long(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32(len32(b.len()));
    out.put_slice(b);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => out.put_slice(&[b't', u8::from(*b)]),
        Value::I8(v) => out.put_slice(&[b'b', *v as u8]),
        Value::U8(v) => out.put_slice(&[b'B', *v]),
        Value::I16(v) => {
            out.put_u8(b's');
            out.put_i16(*v)
        }
        Value::U16(v) => {
            out.put_u8(b'u');
            out.put_u16(*v)
        }
        Value::I32(v) => {
            out.put_u8(b'I');
            out.put_i32(*v)
        }
        Value::U32(v) => {
            out.put_u8(b'i');
            out.put_u32(*v)
        }
        Value::I64(v) => {
            out.put_u8(b'l');
            out.put_i64(*v)
        }
        Value::U64(v) => {
            out.put_u8(b'L');
            out.put_u64(*v)
        }
        Value::F32(v) => {
            out.put_u8(b'f');
            out.put_f32(*v)
        }
        Value::F64(v) => {
            out.put_u8(b'd');
            out.put_f64(*v)
        }
        Value::Decimal(s, v) => {
            out.put_slice(&[b'D', *s]);
            out.put_u32(*v)
        }
        Value::LongStr(b) => {
            out.put_u8(b'S');
            put_long(out, b)
        }
        Value::Bytes(b) => {
            out.put_u8(b'x');
            put_long(out, b)
        }
        Value::Array(items) => {
            out.put_u8(b'A');
            let at = out.len();
            out.put_u32(0);
            for i in items {
                put_value(out, i);
            }
            let n = len32(out.len() - at - 4);
            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
        Value::Timestamp(t) => {
            out.put_u8(b'T');
            out.put_u64(*t)
        }
        Value::Table(t) => {
            out.put_u8(b'F');
            let at = out.len();
            out.put_u32(0);
            t.encode_into(out);
            let n = len32(out.len() - at - 4);
            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
        Value::Void => out.put_u8(b'V'),
    }
}

/// Builds a raw table for queue arguments: integers as `l` (signed
/// 64-bit), strings as `S`, booleans as `t`, as RabbitMQ clients send them.
///
/// ```
/// use ringmq::protocol::field_table::TableBuilder;
/// let args = TableBuilder::new().int("x-max-length", 10).str("x-overflow", "reject-publish").build();
/// assert!(!args.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TableBuilder(Table);

impl TableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn int(mut self, key: &str, v: i64) -> Self {
        self.0.set(key, Value::I64(v));
        self
    }

    pub fn str(mut self, key: &str, v: &str) -> Self {
        self.0.set(key, Value::str(v));
        self
    }

    pub fn bool(mut self, key: &str, v: bool) -> Self {
        self.0.set(key, Value::Bool(v));
        self
    }

    pub fn value(mut self, key: &str, v: Value) -> Self {
        self.0.set(key, v);
        self
    }

    /// `key=value` as typed on a command line: an integer, `true` or
    /// `false`, or else a string.
    pub fn parse_arg(self, arg: &str) -> std::result::Result<Self, ArgError> {
        let (k, v) = arg.split_once('=').ok_or_else(|| ArgError::NotKeyValue(arg.into()))?;
        if k.is_empty() {
            return Err(ArgError::EmptyKey(arg.into()));
        }
        Ok(match (v.parse::<i64>(), v) {
            (Ok(i), _) => self.int(k, i),
            (_, "true") => self.bool(k, true),
            (_, "false") => self.bool(k, false),
            _ => self.str(k, v),
        })
    }

    /// The raw table (no length prefix); empty when nothing was added.
    pub fn build(self) -> Vec<u8> {
        self.0.encode()
    }
}

/// A command-line table argument that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("queue argument {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("queue argument {0:?} has an empty key")]
    EmptyKey(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_byte_for_byte() {
        let mut inner = Table::default();
        inner.set("n", Value::I64(-3));
        let t = Table(vec![
            ("t".into(), Value::Bool(true)),
            ("b".into(), Value::I8(-1)),
            ("B".into(), Value::U8(200)),
            ("s".into(), Value::I16(-300)),
            ("u".into(), Value::U16(60000)),
            ("I".into(), Value::I32(-70000)),
            ("i".into(), Value::U32(4_000_000_000)),
            ("l".into(), Value::I64(i64::MIN)),
            ("L".into(), Value::U64(u64::MAX)),
            ("f".into(), Value::F32(1.5)),
            ("d".into(), Value::F64(-2.25)),
            ("D".into(), Value::Decimal(2, 12345)),
            ("S".into(), Value::str("héllo")),
            ("x".into(), Value::Bytes(vec![0, 1, 2])),
            ("A".into(), Value::Array(vec![Value::I32(1), Value::Table(inner.clone())])),
            ("T".into(), Value::Timestamp(1_700_000_000)),
            ("F".into(), Value::Table(inner)),
            ("V".into(), Value::Void),
        ]);
        let raw = t.encode();
        let back = Table::parse(&raw).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.encode(), raw);
    }

    #[test]
    fn bad_bytes_are_refused_and_never_panic() {
        assert!(Table::parse(&[1, b'a', b'Z']).is_err());
        assert!(Table::parse(&[1, b'a', b'S', 0, 0, 0, 9]).is_err());
        assert!(Table::parse(&[5, b'a']).is_err());
        // Arrays nested past TABLE_DEPTH_MAX.
        let mut v = Value::Void;
        for _ in 0..TABLE_DEPTH_MAX {
            v = Value::Array(vec![v]);
        }
        let raw = Table(vec![("deep".into(), v)]).encode();
        assert_eq!(Table::parse(&raw), Err(TableError::TooDeep { max: TABLE_DEPTH_MAX }));
        assert!(Table::parse_limited(&raw, TABLE_DEPTH_MAX + 1).is_ok());
        assert_eq!(Table::parse(&[1, 0xff, b'V']), Err(TableError::KeyNotUtf8));
        for cut in 0..raw.len() {
            let _ = Table::parse(&raw[..cut]);
        }
    }

    #[test]
    fn builder_types_and_command_line_args() {
        let raw = TableBuilder::new()
            .parse_arg("x-max-length=10")
            .and_then(|b| b.parse_arg("x-single-active-consumer=true"))
            .and_then(|b| b.parse_arg("x-dead-letter-exchange="))
            .unwrap()
            .build();
        let t = Table::parse(&raw).unwrap();
        assert_eq!(t.get("x-max-length"), Some(&Value::I64(10)));
        assert_eq!(t.get("x-single-active-consumer"), Some(&Value::Bool(true)));
        assert_eq!(t.get("x-dead-letter-exchange").and_then(Value::as_str), Some(""));
        assert!(TableBuilder::new().parse_arg("novalue").is_err());
        assert!(TableBuilder::new().build().is_empty());
    }
}
