//! AMQP 0-9-1 field types over byte slices: a bounds-checked reader and
//! writers into `BytesMut`. Big-endian, as the spec says. (The native
//! protocol's little-endian fields are [`crate::protocol::wire`].)

use crate::protocol::field_table::{self, TableError, TABLE_DEPTH_MAX};
pub use crate::protocol::field_table::{entries as table_entries, get as table_get, put_shortstr};
use crate::protocol::wire::len32;
use bytes::{BufMut, BytesMut};

/// A method or property list that does not parse: the connection is closed
/// with 502 SYNTAX_ERROR (or 501 FRAME_ERROR for framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syntax {
    Field(&'static str),
    /// A field table is malformed or nests deeper than `table_depth_max`.
    Table(TableError),
}

impl std::fmt::Display for Syntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Syntax::Field(why) => f.write_str(why),
            Syntax::Table(e) => write!(f, "SYNTAX_ERROR - {e}"),
        }
    }
}

impl std::error::Error for Syntax {}

impl From<TableError> for Syntax {
    fn from(e: TableError) -> Self {
        Syntax::Table(e)
    }
}

pub type Result<T> = std::result::Result<T, Syntax>;

/// Reads AMQP fields from the front of a slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Bit fields pack into one octet until a non-bit field is read.
    bits: Option<(u8, u8)>,
    /// Levels a field table may nest (the broker's `table_depth_max`).
    depth_max: usize,
}

impl<'a> Reader<'a> {
    /// A reader whose tables may nest [`TABLE_DEPTH_MAX`] levels.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::limited(buf, TABLE_DEPTH_MAX)
    }

    /// A reader whose tables may nest `depth_max` levels.
    pub fn limited(buf: &'a [u8], depth_max: usize) -> Self {
        Self { buf, bits: None, depth_max }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.bits = None;
        if self.buf.len() < n {
            return Err(Syntax::Field("field runs past the end of its frame"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A bit field; consecutive bits share an octet, low bit first.
    pub fn bit(&mut self) -> Result<bool> {
        let (octet, next) = match self.bits {
            Some((o, n)) if n < 8 => (o, n),
            _ => (self.u8()?, 0),
        };
        self.bits = Some((octet, next + 1));
        Ok(octet & (1 << next) != 0)
    }

    pub fn shortstr_bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.bytes(n)
    }

    pub fn shortstr(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.shortstr_bytes()?).map_err(|_| Syntax::Field("short string is not UTF-8"))
    }

    pub fn longstr(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.u32()?).map_err(|_| Syntax::Field("long string longer than memory"))?;
        self.bytes(n)
    }

    /// A field table, returned raw (length prefix excluded), validated
    /// completely (lengths, types, depth) so later walks cannot fail.
    pub fn table(&mut self) -> Result<&'a [u8]> {
        let raw = self.longstr()?;
        field_table::validate(raw, self.depth_max)?;
        Ok(raw)
    }
}

/// Whether a client's capabilities table (inside its properties) sets `cap`.
pub fn has_capability(client_props: &[u8], cap: &str) -> bool {
    match table_get(client_props, "capabilities") {
        Some((b'F', caps)) => matches!(table_get(caps, cap), Some((b't', [1]))),
        _ => false,
    }
}

pub fn put_longstr(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(len32(s.len()));
    b.put_slice(s);
}

/// Packs bits low bit first into one octet.
pub fn put_bits(b: &mut BytesMut, bits: &[bool]) {
    let mut o = 0u8;
    for (i, on) in bits.iter().enumerate() {
        if *on {
            o |= 1 << i;
        }
    }
    b.put_u8(o);
}

/// Builds a field table: call the entry methods, then `finish`.
pub struct TableWriter {
    at: usize,
}

impl TableWriter {
    pub fn begin(b: &mut BytesMut) -> Self {
        let at = b.len();
        b.put_u32(0);
        Self { at }
    }

    pub fn str(&self, b: &mut BytesMut, key: &str, v: &str) {
        put_shortstr(b, key);
        b.put_u8(b'S');
        put_longstr(b, v.as_bytes());
    }

    pub fn bool(&self, b: &mut BytesMut, key: &str, v: bool) {
        put_shortstr(b, key);
        b.put_u8(b't');
        b.put_u8(u8::from(v));
    }

    /// Starts a nested table under `key`; finish it before the outer one.
    pub fn table(&self, b: &mut BytesMut, key: &str) -> TableWriter {
        put_shortstr(b, key);
        b.put_u8(b'F');
        TableWriter::begin(b)
    }

    pub fn finish(self, b: &mut BytesMut) {
        let n = len32(b.len() - self.at - 4);
        b[self.at..self.at + 4].copy_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data is small
mod tests {
    use super::*;

    #[test]
    fn bits_share_an_octet() {
        let mut r = Reader::new(&[0b101, 7]);
        assert_eq!((r.bit(), r.bit(), r.bit()), (Ok(true), Ok(false), Ok(true)));
        assert_eq!(r.u8(), Ok(7));
        assert!(r.u8().is_err());
    }

    #[test]
    fn table_round_trip() {
        let mut b = BytesMut::new();
        let t = TableWriter::begin(&mut b);
        t.str(&mut b, "product", "ringmq");
        let caps = t.table(&mut b, "capabilities");
        caps.bool(&mut b, "publisher_confirms", true);
        caps.finish(&mut b);
        t.finish(&mut b);
        let mut r = Reader::new(&b);
        let raw = r.table().unwrap();
        assert!(has_capability(raw, "publisher_confirms"));
        assert!(!has_capability(raw, "basic.nack"));
        assert_eq!(table_get(raw, "product"), Some((b'S', &b"ringmq"[..])));
    }

    #[test]
    fn bad_tables_are_refused() {
        // Claims 10 bytes, has 2.
        assert!(Reader::new(&[0, 0, 0, 10, 1, b'a']).table().is_err());
        // Unknown type 'Z'.
        assert!(Reader::new(&[0, 0, 0, 3, 1, b'a', b'Z']).table().is_err());
        // Two levels: the limit 1 refuses it, naming the limit.
        let deep = [0, 0, 0, 7, 1, b'a', b'F', 0, 0, 0, 0];
        assert_eq!(Reader::new(&deep).table(), Ok(&[1, b'a', b'F', 0, 0, 0, 0][..]));
        let e = Reader::limited(&deep, 1).table().unwrap_err();
        assert_eq!(e, Syntax::Table(TableError::TooDeep { max: 1 }));
        assert!(e.to_string().contains("table_depth_max = 1 levels"), "{e}");
    }

    /// A table nested as deep as a 128 KiB frame allows (21,000 levels of
    /// `"" F len`) overflowed the stack of the thread that read it: a
    /// connection.start-ok could abort the broker before authentication.
    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        fn nested(levels: usize, kind: u8) -> Vec<u8> {
            let mut b = Vec::new();
            for _ in 0..levels {
                let inner = std::mem::take(&mut b);
                if kind == b'F' {
                    b.push(0);
                }
                b.push(kind);
                b.extend_from_slice(&(inner.len() as u32).to_be_bytes());
                b.extend_from_slice(&inner);
            }
            b
        }
        for kind in [b'F', b'A'] {
            let mut body = nested(21_000, kind);
            if kind == b'A' {
                body.insert(0, 0); // the outer table's key
            }
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            assert!(Reader::new(&frame).table().is_err(), "{}", kind as char);
            // As deep as field_table::Table takes is taken here too (the outer
            // table is level 1).
            let ok = nested(TABLE_DEPTH_MAX - 1, b'F');
            let mut frame = (ok.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&ok);
            assert!(Reader::new(&frame).table().is_ok());
            assert!(crate::protocol::field_table::Table::parse(&ok).is_ok());
        }
    }
}
