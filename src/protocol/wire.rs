//! The native protocol's field encoding: a little-endian cursor for
//! reading frame bodies, and the matching writers. Every read is
//! bounds-checked and returns `Malformed` instead of panicking. (AMQP's
//! big-endian field types are [`super::amqp::wire`].)

use super::error::DecodeError;
use bytes::{BufMut, BytesMut};

pub struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn bad(&self, why: &'static str) -> DecodeError {
        DecodeError::Malformed { what: self.what, why }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.bad("body shorter than its fields"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.u64().map(|v| i64::from_le_bytes(v.to_le_bytes()))
    }

    /// A `u32` length as a `usize`, checked (never truncated where
    /// `usize` is narrower); `bytes` then checks it against the body.
    pub fn len32(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()?;
        usize::try_from(n).map_err(|_| self.bad("length does not fit this platform"))
    }

    fn utf8(&self, b: &'a [u8]) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(b).map_err(|_| self.bad("string is not UTF-8"))
    }

    /// A string with a one-byte length (queue names: at most 255 bytes).
    pub fn str8(&mut self) -> Result<&'a str, DecodeError> {
        let n = usize::from(self.u8()?);
        let b = self.bytes(n)?;
        self.utf8(b)
    }

    pub fn str16(&mut self) -> Result<&'a str, DecodeError> {
        let n = usize::from(self.u16()?);
        let b = self.bytes(n)?;
        self.utf8(b)
    }

    /// The rest of the body; used for batches validated separately.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes after the last field"))
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary, so a cut string is still UTF-8 the decoder accepts.
fn cut(s: &str, max: usize) -> &[u8] {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s.as_bytes()[..n]
}

/// A count (messages, queues, milliseconds) for a narrower field: it
/// saturates instead of wrapping, so an impossible overflow shows as the
/// field's maximum, never as a small wrong number.
#[inline]
pub fn saturate<T: TryFrom<u64> + Bounded>(n: impl Into<u64>) -> T {
    T::try_from(n.into()).unwrap_or(T::MAX)
}

/// A 64-bit count or offset as an in-memory index or size. It fits on the
/// 64-bit targets ringmq runs on; elsewhere it saturates, so an index
/// past memory fails its bounds check instead of wrapping to a wrong one.
#[inline]
pub fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Milliseconds or nanoseconds of a `Duration` as a u64 (saturating after
/// 584 years of nanoseconds).
#[inline]
pub fn u64_of(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The largest value of an unsigned field type (for [`saturate`]).
pub trait Bounded {
    const MAX: Self;
}

impl Bounded for u16 {
    const MAX: Self = u16::MAX;
}

impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}

/// A length for a u32 length field. Every frame is bounded far below
/// 4 GiB (`frame_bytes_max` is at most 256 MiB, and the callers check
/// their parts against it), so this never saturates; if a bug ever made it
/// saturate, the peer's length check would refuse the frame, where a
/// wrapped length would silently mis-frame it.
#[inline]
pub fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// As [`len32`], for a u16 length field.
#[inline]
pub fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Writes a string with a one-byte length. Callers validate lengths first;
/// an over-long string here is a bug, so it is cut (at a char boundary)
/// rather than mis-framed.
pub fn put_str8(buf: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= u8::MAX as usize, "str8 over 255 bytes");
    let b = cut(s, u8::MAX as usize);
    buf.put_u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
    buf.put_slice(b);
}

pub fn put_str16(buf: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize, "str16 over 65535 bytes");
    let b = cut(s, u16::MAX as usize);
    buf.put_u16_le(len16(b.len()));
    buf.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_utf8() {
        // 254 ASCII bytes then a 2-byte char: a byte cut at 255 would split it.
        let s = format!("{}é", "a".repeat(254));
        let b = cut(&s, 255);
        assert_eq!(b.len(), 254);
        assert!(std::str::from_utf8(b).is_ok());
        assert_eq!(cut("é", 1), b"");
        assert_eq!(cut("abc", 255), b"abc");
    }
}
