//! AMQP 0-9-1 field types over byte slices: a bounds-checked reader and
//! writers into `BytesMut`. Big-endian, as the spec says.

use crate::protocol::table::DEPTH_MAX;
use bytes::{BufMut, BytesMut};

/// A method or property list that does not parse: the connection is closed
/// with 502 SYNTAX_ERROR (or 501 FRAME_ERROR for framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax(pub &'static str);

pub type Result<T> = std::result::Result<T, Syntax>;

/// Reads AMQP fields from the front of a slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Bit fields pack into one octet until a non-bit field is read.
    bits: Option<(u8, u8)>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, bits: None }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.bits = None;
        if self.buf.len() < n {
            return Err(Syntax("field runs past the end of its frame"));
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
        let n = self.u8()? as usize;
        self.bytes(n)
    }

    pub fn shortstr(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.shortstr_bytes()?).map_err(|_| Syntax("short string is not UTF-8"))
    }

    pub fn longstr(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// A field table, returned raw (length prefix excluded).
    pub fn table(&mut self) -> Result<&'a [u8]> {
        self.table_at(0)
    }

    /// Tables and arrays nest at most `DEPTH_MAX` deep, as in
    /// `protocol::table`: a 128 KiB frame of nested tables is 21,000
    /// levels, which overflowed a shard thread's stack here.
    fn table_at(&mut self, depth: usize) -> Result<&'a [u8]> {
        if depth > DEPTH_MAX {
            return Err(Syntax("field tables nested too deep"));
        }
        let raw = self.longstr()?;
        // Validate now so later walks cannot fail.
        let mut t = Reader::new(raw);
        while !t.buf.is_empty() {
            t.shortstr_bytes()?;
            t.value_at(depth)?;
        }
        Ok(raw)
    }

    /// Skips one field value (type octet first) and returns its type and bytes.
    pub fn value(&mut self) -> Result<(u8, &'a [u8])> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<(u8, &'a [u8])> {
        let kind = self.u8()?;
        let v = match kind {
            b't' | b'b' | b'B' => self.bytes(1)?,
            b's' | b'u' => self.bytes(2)?,
            b'I' | b'i' | b'f' => self.bytes(4)?,
            b'l' | b'L' | b'd' | b'T' => self.bytes(8)?,
            b'D' => self.bytes(5)?,
            b'S' | b'x' => self.longstr()?,
            b'F' => self.table_at(depth + 1)?,
            b'A' => {
                if depth >= DEPTH_MAX {
                    return Err(Syntax("field arrays nested too deep"));
                }
                let raw = self.longstr()?;
                let mut a = Reader::new(raw);
                while !a.buf.is_empty() {
                    a.value_at(depth + 1)?;
                }
                raw
            }
            b'V' => &[],
            _ => return Err(Syntax("unknown field type in a table")),
        };
        Ok((kind, v))
    }
}

/// Walks a validated raw table: (key, type, value bytes).
pub fn table_entries(raw: &[u8]) -> impl Iterator<Item = (&[u8], u8, &[u8])> {
    let mut r = Reader::new(raw);
    std::iter::from_fn(move || {
        if r.buf.is_empty() {
            return None;
        }
        let key = r.shortstr_bytes().ok()?;
        let (kind, v) = r.value().ok()?;
        Some((key, kind, v))
    })
}

/// The value of `key` in a raw table, if present.
pub fn table_get<'a>(raw: &'a [u8], key: &str) -> Option<(u8, &'a [u8])> {
    table_entries(raw).find(|(k, _, _)| *k == key.as_bytes()).map(|(_, t, v)| (t, v))
}

/// Whether a client's capabilities table (inside its properties) sets `cap`.
pub fn has_capability(client_props: &[u8], cap: &str) -> bool {
    match table_get(client_props, "capabilities") {
        Some((b'F', caps)) => matches!(table_get(caps, cap), Some((b't', [1]))),
        _ => false,
    }
}

/// Short strings are at most 255 bytes; longer text is cut at a char boundary.
pub fn put_shortstr(b: &mut BytesMut, s: &str) {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    b.put_u8(end as u8);
    b.put_slice(&s.as_bytes()[..end]);
}

pub fn put_longstr(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
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
        let n = (b.len() - self.at - 4) as u32;
        b[self.at..self.at + 4].copy_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
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
            // As deep as protocol::table takes is taken here too.
            let ok = nested(DEPTH_MAX, b'F');
            let mut frame = (ok.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&ok);
            assert!(Reader::new(&frame).table().is_ok());
            assert!(crate::protocol::table::Table::parse(&ok).is_ok());
        }
    }
}
