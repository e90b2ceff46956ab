//! Message entries inside `Publish`, `Deliver` and `GetOk`, ack ranges, and
//! the incremental batch writer.
//!
//! Entry: `flags u8` (bit 0 redelivered, bit 1 has properties),
//! `[props_len u16, props]` when bit 1 is set, `body_len u32`, `body`.

use super::error::DecodeError;
use super::header::{FrameHeader, HEADER_BYTES};
use super::wire::{put_str8, Cursor};
use crate::protocol::wire::{len16, len32};
use bytes::{BufMut, BytesMut};
use zerocopy::IntoBytes;

pub const ENTRY_REDELIVERED: u8 = 0x01;
pub const ENTRY_HAS_PROPS: u8 = 0x02;
const ENTRY_KNOWN: u8 = ENTRY_REDELIVERED | ENTRY_HAS_PROPS;

/// One message as it sits in a frame; borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub flags: u8,
    pub props: &'a [u8],
    pub body: &'a [u8],
}

impl Entry<'_> {
    pub fn redelivered(&self) -> bool {
        self.flags & ENTRY_REDELIVERED != 0
    }

    /// Bytes this entry takes on the wire.
    pub fn wire_len(props: usize, body: usize) -> usize {
        1 + if props > 0 { 2 + props } else { 0 } + 4 + body
    }
}

/// A validated run of `count` entries. Iterating cannot fail: `parse`
/// checked every length against the body before the frame was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entries<'a> {
    raw: &'a [u8],
    count: u32,
}

impl<'a> Entries<'a> {
    pub fn parse(raw: &'a [u8], count: u32) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(raw, "message entry");
        for _ in 0..count {
            read_entry(&mut c)?;
        }
        c.finish()?;
        Ok(Self { raw, count })
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> EntryIter<'a> {
        EntryIter { c: Cursor::new(self.raw, "message entry"), left: self.count }
    }

    /// Each entry's bytes exactly as on the wire, flags byte first: what a
    /// broker stores and copies out again on delivery.
    pub fn raw_iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let mut rest = self.raw;
        self.iter().map(move |e| {
            let n = Entry::wire_len(e.props.len(), e.body.len());
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        })
    }
}

/// Splits one raw entry (as yielded by [`Entries::raw_iter`]) into its parts.
pub fn parse_entry(raw: &[u8]) -> Result<Entry<'_>, DecodeError> {
    let mut c = Cursor::new(raw, "message entry");
    let e = read_entry(&mut c)?;
    c.finish()?;
    Ok(e)
}

/// The body length an entry's header gives (flags, [props_len, props],
/// body_len), without validating the rest; 0 for a header cut short.
pub fn entry_body_len(e: &[u8]) -> u64 {
    let at = if e.first().is_some_and(|f| f & ENTRY_HAS_PROPS != 0) {
        e.get(1..3).map_or(0, |p| 3 + usize::from(u16::from_le_bytes([p[0], p[1]])))
    } else {
        1
    };
    e.get(at..at + 4).map_or(0, |b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

fn read_entry<'a>(c: &mut Cursor<'a>) -> Result<Entry<'a>, DecodeError> {
    let flags = c.u8()?;
    if flags & !ENTRY_KNOWN != 0 {
        return Err(DecodeError::Malformed { what: "message entry", why: "unknown entry flags" });
    }
    let props = if flags & ENTRY_HAS_PROPS != 0 {
        let n = usize::from(c.u16()?);
        if n == 0 {
            // `put_entry` never writes this; accepting it would give an
            // entry two encodings and break `GetOk` round trips.
            return Err(DecodeError::Malformed { what: "message entry", why: "properties flag with empty properties" });
        }
        c.bytes(n)?
    } else {
        &[]
    };
    let n = c.len32()?;
    let body = c.bytes(n)?;
    Ok(Entry { flags, props, body })
}

pub struct EntryIter<'a> {
    c: Cursor<'a>,
    left: u32,
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated in `Entries::parse`; a failure here is a codec bug.
        let e = read_entry(&mut self.c);
        debug_assert!(e.is_ok());
        e.ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for EntryIter<'_> {}

/// Inclusive delivery-tag ranges `(first, last)` in an `Ack` or `Nack`,
/// ascending and disjoint (checked by `parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges<'a> {
    raw: &'a [u8],
}

impl<'a> Ranges<'a> {
    pub fn parse(raw: &'a [u8], count: u32) -> Result<Self, DecodeError> {
        let bad = |why| DecodeError::Malformed { what: "tag ranges", why };
        if raw.len() as u64 != u64::from(count) * 16 {
            return Err(bad("range count does not match body length"));
        }
        let r = Self { raw };
        // Ranges ascend and never overlap or repeat: a frame names each tag
        // at most once, so what the queue does with it is linear in the
        // frame's ranges plus the tags it really holds, never ranges x tags.
        let mut after = 0u64;
        for (a, b) in r.iter() {
            if a > b || a == 0 {
                return Err(bad("a range is empty, reversed or starts at tag 0"));
            }
            if a <= after {
                return Err(bad(
                    "ranges overlap, repeat or are out of order (each must start after the last one ends)",
                ));
            }
            after = b;
        }
        Ok(r)
    }

    pub fn len(&self) -> usize {
        self.raw.len() / 16
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.raw.chunks_exact(16).map(|c| {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            b.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(a), u64::from_le_bytes(b))
        })
    }
}

pub fn put_entry(buf: &mut BytesMut, flags: u8, props: &[u8], body: &[u8]) {
    debug_assert!(props.len() <= u16::MAX as usize);
    debug_assert!(body.len() <= u32::MAX as usize);
    let has = if props.is_empty() { 0 } else { ENTRY_HAS_PROPS };
    buf.put_u8((flags & ENTRY_REDELIVERED) | has);
    if has != 0 {
        buf.put_u16_le(len16(props.len()));
        buf.put_slice(props);
    }
    buf.put_u32_le(len32(body.len()));
    buf.put_slice(body);
}

/// Builds a `Publish` or `Deliver` frame in place: entries are appended
/// straight into the output buffer, then the header's length and the entry
/// count are patched. No intermediate allocation.
pub struct BatchWriter {
    start: usize,
    count_at: usize,
    count: u32,
}

impl BatchWriter {
    pub fn begin_publish(buf: &mut BytesMut, request_id: u64, flags: u8, queue: &str) -> Self {
        let start = Self::header(buf, super::op::PUBLISH, flags, request_id);
        put_str8(buf, queue);
        Self::counted(buf, start)
    }

    /// A `PublishTo`: through `exchange` with `routing_key`.
    pub fn begin_publish_to(buf: &mut BytesMut, request_id: u64, flags: u8, exchange: &str, routing_key: &str) -> Self {
        let start = Self::header(buf, super::op::PUBLISH_TO, flags, request_id);
        put_str8(buf, exchange);
        put_str8(buf, routing_key);
        Self::counted(buf, start)
    }

    pub fn begin_deliver(buf: &mut BytesMut, consumer_id: u32, first_tag: u64) -> Self {
        let start = Self::header(buf, super::op::DELIVER, 0, 0);
        buf.put_u32_le(consumer_id);
        buf.put_u64_le(first_tag);
        Self::counted(buf, start)
    }

    /// A `Deliver` whose entries were all published through `exchange`
    /// with `routing_key` (`DELIVER_ORIGIN`); each at most 255 bytes.
    pub fn begin_deliver_from(
        buf: &mut BytesMut,
        consumer_id: u32,
        first_tag: u64,
        exchange: &str,
        routing_key: &str,
    ) -> Self {
        let start = Self::header(buf, super::op::DELIVER, super::op::DELIVER_ORIGIN, 0);
        buf.put_u32_le(consumer_id);
        buf.put_u64_le(first_tag);
        put_str8(buf, exchange);
        put_str8(buf, routing_key);
        Self::counted(buf, start)
    }

    fn header(buf: &mut BytesMut, op: u8, flags: u8, request_id: u64) -> usize {
        let start = buf.len();
        buf.put_slice(FrameHeader::new(op, flags, request_id, 0).as_bytes());
        start
    }

    fn counted(buf: &mut BytesMut, start: usize) -> Self {
        let count_at = buf.len();
        buf.put_u32_le(0);
        Self { start, count_at, count: 0 }
    }

    pub fn push(&mut self, buf: &mut BytesMut, flags: u8, props: &[u8], body: &[u8]) {
        put_entry(buf, flags, props, body);
        self.count += 1;
    }

    /// Appends one raw entry, setting or clearing its redelivered flag.
    pub fn push_raw_entry(&mut self, buf: &mut BytesMut, redelivered: bool, raw: &[u8]) {
        debug_assert!(!raw.is_empty());
        let flags = (raw[0] & !ENTRY_REDELIVERED) | if redelivered { ENTRY_REDELIVERED } else { 0 };
        buf.put_u8(flags);
        buf.put_slice(&raw[1..]);
        self.count += 1;
    }

    /// Appends `count` entries already encoded with [`put_entry`].
    pub fn push_raw(&mut self, buf: &mut BytesMut, entries: &[u8], count: u32) {
        buf.put_slice(entries);
        self.count += count;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes the frame takes so far, header included.
    pub fn frame_len(&self, buf: &BytesMut) -> usize {
        buf.len() - self.start
    }

    pub fn finish(self, buf: &mut BytesMut) {
        let len = buf.len() - self.start;
        self.finish_sized(buf, len);
    }

    /// Counts one entry its caller put (some of its bytes, perhaps, sent
    /// from elsewhere: a stored entry by reference).
    pub fn count_one(&mut self) {
        self.count += 1;
    }

    /// [`BatchWriter::finish`] for a frame of `frame_len` bytes in all,
    /// header included, of which some were not written into `buf` (sent
    /// by reference after it).
    pub fn finish_sized(self, buf: &mut BytesMut, frame_len: usize) {
        let body_len = len32(frame_len - HEADER_BYTES);
        buf[self.start..self.start + 4].copy_from_slice(&body_len.to_le_bytes());
        buf[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(rs: &[(u64, u64)]) -> Vec<u8> {
        rs.iter().flat_map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat()).collect()
    }

    fn parse(rs: &[(u64, u64)]) -> Result<Vec<(u64, u64)>, DecodeError> {
        let n = u32::try_from(rs.len()).unwrap();
        Ranges::parse(&raw(rs), n).map(|r| r.iter().collect())
    }

    #[test]
    fn ranges_must_ascend_without_overlap() {
        assert_eq!(parse(&[(1, 3), (5, 5), (6, u64::MAX)]), Ok(vec![(1, 3), (5, 5), (6, u64::MAX)]));
        for bad in [
            &[(1, 3), (3, 4)][..],
            &[(1, 3), (1, 3)],
            &[(5, 6), (1, 2)],
            &[(1, u64::MAX), (2, 2)],
            &[(1, u64::MAX), (u64::MAX, u64::MAX)],
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains("ranges overlap, repeat or are out of order"), "{bad:?}: {e}");
        }
        assert!(parse(&[(0, 1)]).is_err());
        assert!(parse(&[(4, 3)]).is_err());
        // A count that disagrees with the body.
        assert!(Ranges::parse(&raw(&[(1, 1)]), 2).is_err());
        assert!(Ranges::parse(&raw(&[(1, 1)]), u32::MAX).is_err());
    }
}
