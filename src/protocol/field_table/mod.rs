//! AMQP 0-9-1 field tables (RabbitMQ's field types), for AMQP and the
//! native protocol alike. Two halves:
//!
//! - this module: the walker over borrowed bytes, the one every table the
//!   broker reads goes through (AMQP methods and content headers, native
//!   Declare/ExchangeDeclare/Bind arguments, the owned parser below,
//!   headers-exchange routing, the admin JSON);
//! - [`owned`]: [`Table`], [`Value`] and [`TableBuilder`], a table parsed
//!   into owned values to read, edit and re-encode byte for byte (queue
//!   arguments, `x-death` headers, the client's argument tables).
//!
//! A "raw table" is a table's contents without its `u32` length prefix.
//! Types are RabbitMQ's dialect (big-endian). [`validate`] checks a raw
//! table completely before anything trusts it: every length against the
//! bytes that are there, every type octet, and the nesting depth. It is
//! iterative: its only state is one slice per open table or array, so a
//! hostile table costs at most `depth_max` of them, never stack.
//!
//! Depth: the outermost table is level 1; each table or array value inside
//! adds one level. More than `depth_max` levels is [`TableError::TooDeep`].

use bytes::BufMut;

pub mod owned;

pub use owned::{Table, TableBuilder, Value};

/// Default of the broker's `table_depth_max`, and the limit wherever no
/// configuration is reachable (the client, the pure codecs).
pub const TABLE_DEPTH_MAX: usize = 32;
/// The highest `table_depth_max` a configuration may set: the owned parser
/// recurses once per level, so this bounds its stack use.
pub const TABLE_DEPTH_CEILING: usize = 255;

/// Why bytes are not a field table. One type for every table reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("a field runs past the end of its table")]
    Truncated,
    #[error("unknown field type {0:#04x}")]
    UnknownType(u8),
    #[error("field tables nest more than table_depth_max = {max} levels deep")]
    TooDeep { max: usize },
    #[error("a field name is not UTF-8")]
    KeyNotUtf8,
}

type Result<T> = std::result::Result<T, TableError>;

/// Splits `n` bytes off the front of `buf`.
fn take(buf: &[u8], n: usize) -> Result<(&[u8], &[u8])> {
    if buf.len() < n {
        return Err(TableError::Truncated);
    }
    Ok(buf.split_at(n))
}

/// A `u32`-length-prefixed block: (block, rest). The length is checked
/// against the bytes present before it is used.
pub fn split_long(buf: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, rest) = take(buf, 4)?;
    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let n = usize::try_from(n).map_err(|_| TableError::Truncated)?;
    take(rest, n)
}

/// A short string (a field name): (bytes, rest).
pub fn split_key(buf: &[u8]) -> Result<(&[u8], &[u8])> {
    let (&n, rest) = buf.split_first().ok_or(TableError::Truncated)?;
    take(rest, usize::from(n))
}

/// One value from the front of `buf`, type octet first: (type, value
/// bytes, rest). Nested tables and arrays are returned raw and are not
/// looked into: [`validate`] does that.
pub fn split_value(buf: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&kind, rest) = buf.split_first().ok_or(TableError::Truncated)?;
    let (v, rest) = match kind {
        b't' | b'b' | b'B' => take(rest, 1)?,
        b's' | b'u' => take(rest, 2)?,
        b'I' | b'i' | b'f' => take(rest, 4)?,
        b'l' | b'L' | b'd' | b'T' => take(rest, 8)?,
        b'D' => take(rest, 5)?,
        b'S' | b'x' | b'F' | b'A' => split_long(rest)?,
        b'V' => (&rest[..0], rest),
        other => return Err(TableError::UnknownType(other)),
    };
    Ok((kind, v, rest))
}

/// An open table or array while validating: what is left of it.
#[derive(Clone, Copy)]
struct Open<'a> {
    rest: &'a [u8],
    is_table: bool,
}

/// Checks that `raw` is one well-formed table nesting at most `depth_max`
/// levels. Iterative; allocates only past 8 levels.
pub fn validate(raw: &[u8], depth_max: usize) -> Result<()> {
    walk(Open { rest: raw, is_table: true }, depth_max)
}

/// [`validate`] for the contents of an array value (`A`), the array being
/// level 1.
pub fn validate_array(raw: &[u8], depth_max: usize) -> Result<()> {
    walk(Open { rest: raw, is_table: false }, depth_max)
}

fn walk(top: Open<'_>, depth_max: usize) -> Result<()> {
    if depth_max == 0 {
        return Err(TableError::TooDeep { max: depth_max });
    }
    let mut outer = Outer::default();
    let mut cur = top;
    loop {
        if cur.rest.is_empty() {
            match outer.pop() {
                Some(o) => cur = o,
                None => return Ok(()),
            }
            continue;
        }
        let rest = if cur.is_table { split_key(cur.rest)?.1 } else { cur.rest };
        let (kind, v, rest) = split_value(rest)?;
        cur.rest = rest;
        if matches!(kind, b'F' | b'A') {
            // `cur` is at level outer.len() + 1; `v` would be one deeper.
            if outer.len() + 2 > depth_max {
                return Err(TableError::TooDeep { max: depth_max });
            }
            outer.push(cur);
            cur = Open { rest: v, is_table: kind == b'F' };
        }
    }
}

/// Levels of nesting kept without allocating: message headers (walked on
/// the publish path) rarely nest deeper, so their walk costs no heap.
const INLINE_LEVELS: usize = 8;

/// The containers enclosing the one being read, outermost first: never
/// more than `depth_max - 1`. The first few live in an array, deeper ones
/// in a `Vec`.
struct Outer<'a> {
    inline: [Open<'a>; INLINE_LEVELS],
    used: usize,
    spill: Vec<Open<'a>>,
}

impl Default for Outer<'_> {
    fn default() -> Self {
        Self { inline: [Open { rest: &[], is_table: false }; INLINE_LEVELS], used: 0, spill: Vec::new() }
    }
}

impl<'a> Outer<'a> {
    fn len(&self) -> usize {
        self.used + self.spill.len()
    }

    fn push(&mut self, o: Open<'a>) {
        match self.inline.get_mut(self.used) {
            Some(slot) => {
                *slot = o;
                self.used += 1;
            }
            None => self.spill.push(o),
        }
    }

    fn pop(&mut self) -> Option<Open<'a>> {
        if let Some(o) = self.spill.pop() {
            return Some(o);
        }
        self.used = self.used.checked_sub(1)?;
        self.inline.get(self.used).copied()
    }
}

/// Checks only the top level of a table: every entry's name, type and
/// length; nested tables and arrays are length-checked, not entered. For
/// readers that look at top-level entries alone (headers-exchange
/// matching), at a cost linear in the entries and without any depth.
pub fn validate_top(raw: &[u8]) -> Result<()> {
    let mut rest = raw;
    while !rest.is_empty() {
        let (_, r) = split_key(rest)?;
        rest = split_value(r)?.2;
    }
    Ok(())
}

/// The entries of a raw table, one level: (name, type, value bytes). Ends
/// at the first malformed entry; a validated table has none.
pub fn entries(raw: &[u8]) -> impl Iterator<Item = (&[u8], u8, &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (key, r) = split_key(rest).ok()?;
        let (kind, v, r) = split_value(r).ok()?;
        rest = r;
        Some((key, kind, v))
    })
}

/// The values of an array's contents: (type, value bytes). Ends at the
/// first malformed value.
pub fn items(raw: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (kind, v, r) = split_value(rest).ok()?;
        rest = r;
        Some((kind, v))
    })
}

/// The value of `key` in a raw table, if present: (type, value bytes).
pub fn get<'a>(raw: &'a [u8], key: &str) -> Option<(u8, &'a [u8])> {
    entries(raw).find(|(k, _, _)| *k == key.as_bytes()).map(|(_, t, v)| (t, v))
}

/// Short strings are at most 255 bytes; longer text is cut at a char
/// boundary.
pub fn put_shortstr(b: &mut impl BufMut, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` is at most 255.
    b.put_u8(u8::try_from(end).unwrap_or(u8::MAX));
    b.put_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests;
