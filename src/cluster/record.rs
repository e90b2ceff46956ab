//! The record every Raft file is made of: `[len: u32 LE][crc: u32 LE]
//! [payload: len bytes]`, where `crc` is CRC-32C over the length's four
//! bytes and then the payload (so a flipped length is caught too). The
//! payload is postcard (serde) of a log entry, a vote, a purge point or a
//! snapshot.
//!
//! The scanner reads a file written by us but possibly torn by a crash or
//! damaged on disk, and believes nothing it has not checked:
//! - a length over the caller's limit is refused before anything is
//!   allocated for it, even at the end of the file;
//! - a record cut short by the end of the file, or the last record with a
//!   bad CRC, or a header of zeros followed only by zeros, is a torn tail
//!   (the write that made it was never confirmed: appends are fdatasync'ed
//!   before anyone hears of them); the caller truncates it;
//! - a bad CRC with more bytes after it is damage in the middle: an error
//!   with its offset, since records after it may be confirmed ones.

use crate::protocol::wire::{len32, usize_of};
use std::io::{self, Read};

/// The header: length, then CRC.
pub const HEADER_BYTES: usize = 8;

/// Why a file's records cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("record at offset {offset} claims {len} bytes, more than the limit of {max}")]
    Oversize { offset: u64, len: u32, max: u32 },
    #[error("record at offset {offset}: checksum mismatch, and records follow it")]
    BadCrc { offset: u64 },
    #[error("record at offset {offset}: zero length, and non-zero bytes follow it")]
    ZeroLength { offset: u64 },
    #[error("reading at offset {offset}: {source}")]
    Read { offset: u64, source: io::Error },
}

fn crc(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends one record holding `payload` to `out`. The caller has checked
/// `payload` against its limit (which is below `u32::MAX`).
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = len32(payload.len()).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One step of a scan.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole, checked record starting at `offset`.
    Record { offset: u64, payload: Vec<u8> },
    /// The file ends cleanly after the last record.
    End,
    /// The file's valid part ends at `offset`; what follows is a torn
    /// write, to be cut off.
    Torn { offset: u64 },
}

/// Reads records one by one from a file of `file_len` bytes.
pub struct Scanner<R> {
    inner: R,
    file_len: u64,
    pos: u64,
    max: u32,
}

impl<R: Read> Scanner<R> {
    /// `max` bounds a record's payload; `file_len` is the file's size
    /// (from its metadata), against which every length is checked.
    pub fn new(inner: R, file_len: u64, max: u32) -> Self {
        Self { inner, file_len, pos: 0, max }
    }

    /// The offset of the next record (after `End`, the file's length).
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ScanError> {
        let offset = self.pos;
        self.inner.read_exact(buf).map_err(|source| ScanError::Read { offset, source })
    }

    /// True if every byte left (after a header already read) is zero.
    fn rest_is_zero(&mut self) -> Result<bool, ScanError> {
        let mut left = self.file_len - self.pos - 8;
        let mut buf = [0u8; 4096];
        while left > 0 {
            let n = usize_of(left).min(buf.len());
            self.read_exact(&mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            left -= n as u64;
        }
        Ok(true)
    }

    pub fn next_record(&mut self) -> Result<Next, ScanError> {
        let offset = self.pos;
        // `pos` never passes `file_len`: it only advances by whole records
        // that were checked to fit.
        let remaining = self.file_len - offset;
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < HEADER_BYTES as u64 {
            return Ok(Next::Torn { offset });
        }
        let mut head = [0u8; HEADER_BYTES];
        self.read_exact(&mut head)?;
        let len_bytes = [head[0], head[1], head[2], head[3]];
        let len = u32::from_le_bytes(len_bytes);
        let want = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > self.max {
            return Err(ScanError::Oversize { offset, len, max: self.max });
        }
        if len == 0 {
            // Never written (a payload is never empty). Zeros to the end
            // are space the file system extended but never filled.
            if want == 0 && self.rest_is_zero()? {
                return Ok(Next::Torn { offset });
            }
            return Err(ScanError::ZeroLength { offset });
        }
        let body = remaining - HEADER_BYTES as u64;
        if u64::from(len) > body {
            return Ok(Next::Torn { offset });
        }
        // Bounded by `max` (checked above) and by the file's size.
        let mut payload = vec![0u8; usize_of(u64::from(len))];
        self.read_exact(&mut payload)?;
        if crc(len_bytes, &payload) != want {
            if u64::from(len) == body {
                return Ok(Next::Torn { offset });
            }
            return Err(ScanError::BadCrc { offset });
        }
        self.pos = offset + HEADER_BYTES as u64 + u64::from(len);
        Ok(Next::Record { offset, payload })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(&mut out, p);
        }
        out
    }

    fn scan_all(bytes: &[u8], max: u32) -> Result<(Vec<Vec<u8>>, Next), ScanError> {
        let mut s = Scanner::new(bytes, bytes.len() as u64, max);
        let mut got = Vec::new();
        loop {
            match s.next_record()? {
                Next::Record { payload, .. } => got.push(payload),
                end => return Ok((got, end)),
            }
        }
    }

    #[test]
    fn round_trip() {
        let f = file(&[b"one", b"two", b"three"]);
        let (got, end) = scan_all(&f, 100).unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(end, Next::End);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let f = file(&[b"first", b"second record"]);
        let second = (HEADER_BYTES + 5) as u64;
        for cut in second + 1..f.len() as u64 {
            let (got, end) = scan_all(&f[..cut as usize], 100).unwrap();
            assert_eq!(got, vec![b"first".to_vec()], "cut at {cut}");
            assert_eq!(end, Next::Torn { offset: second }, "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_last_record_is_torn_a_bad_middle_one_is_an_error() {
        let mut f = file(&[b"first", b"second"]);
        let last = f.len() - 1;
        f[last] ^= 1;
        let (_, end) = scan_all(&f, 100).unwrap();
        assert_eq!(end, Next::Torn { offset: 13 });

        let mut f = file(&[b"first", b"second", b"third"]);
        f[HEADER_BYTES + 5 + HEADER_BYTES] ^= 0x40; // the second's payload
        match scan_all(&f, 100) {
            Err(ScanError::BadCrc { offset }) => assert_eq!(offset, 13),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_flipped_length_is_caught() {
        let mut f = file(&[b"first", b"second", b"third"]);
        f[0] = 4; // "first" claims 4 bytes: the CRC covers the length
        assert!(matches!(scan_all(&f, 100), Err(ScanError::BadCrc { offset: 0 })));
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail_zeros_before_data_are_not() {
        let mut f = file(&[b"first"]);
        f.extend_from_slice(&[0u8; 100]);
        let (got, end) = scan_all(&f, 100).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(end, Next::Torn { offset: 13 });

        let mut f = file(&[b"first"]);
        f.extend_from_slice(&[0u8; 20]);
        f.extend_from_slice(&file(&[b"later"]));
        assert!(matches!(scan_all(&f, 100), Err(ScanError::ZeroLength { offset: 13 })));
    }

    #[test]
    fn an_oversize_length_is_refused_even_at_the_end() {
        // The claimed length is checked against the limit before the file
        // size, so a huge claim is an error, not a torn tail to cut (and
        // never an allocation of the claimed size).
        let mut f = file(&[b"ok"]);
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        f.extend_from_slice(&[0u8; 4]);
        match scan_all(&f, 1 << 20) {
            Err(ScanError::Oversize { offset, len, max }) => {
                assert_eq!((offset, len, max), (10, u32::MAX, 1 << 20));
            }
            other => panic!("{other:?}"),
        }
    }
}
