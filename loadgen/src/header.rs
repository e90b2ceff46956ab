//! The fixed header at the start of every message body, and the clock it uses.
//!
//! Layout (little-endian, 16 bytes, then zero padding up to `--size`):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8  | intended send time, u64 ns of `CLOCK_MONOTONIC` |
//! | 8..16 | u64: producer id in the top 16 bits, sequence number (from 0) in the low 48 |
//!
//! So `--size` must be at least 16 ([`HEADER_LEN`]), which is also the
//! smallest standard workload. Up to 65 536 producers and 2^48 messages each.
//!
//! `CLOCK_MONOTONIC` is shared by every process of one machine, so the
//! consumer can subtract it even across processes; the load generator and the
//! broker run on the same host (loopback only). A message whose intended time
//! lies before the start of the current run is a leftover of an earlier run
//! and is ignored ("foreign").

/// Size of the header; the minimum `--size`.
pub const HEADER_LEN: usize = 16;

/// Largest producer id plus one.
pub const MAX_PRODUCERS: usize = 1 << 16;

const SEQ_MASK: u64 = (1 << 48) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub producer: u32,
    pub seq: u64,
    pub intended_ns: u64,
}

impl Header {
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        debug_assert!((self.producer as usize) < MAX_PRODUCERS && self.seq <= SEQ_MASK);
        let mut buf = [0u8; HEADER_LEN];
        buf[0..8].copy_from_slice(&self.intended_ns.to_le_bytes());
        let id = ((self.producer as u64) << 48) | (self.seq & SEQ_MASK);
        buf[8..16].copy_from_slice(&id.to_le_bytes());
        buf
    }

    /// Reads a header; `None` when the body is shorter than [`HEADER_LEN`].
    pub fn read(buf: &[u8]) -> Option<Header> {
        let intended_ns = u64::from_le_bytes(buf.get(0..8)?.try_into().ok()?);
        let id = u64::from_le_bytes(buf.get(8..16)?.try_into().ok()?);
        Some(Header { producer: (id >> 48) as u32, seq: id & SEQ_MASK, intended_ns })
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A consumer's receive clock: read once when a read brings new deliveries
/// and again every [`BatchClock::EVERY`] deliveries while they are
/// processed. Reading `CLOCK_MONOTONIC` for every delivery cost about 15%
/// of the generator's time at 3 M deliveries/s; the receive times this
/// gives are early by at most the time `EVERY` deliveries take (a few µs).
#[derive(Debug, Default)]
pub struct BatchClock {
    now: u64,
    left: u32,
}

impl BatchClock {
    pub const EVERY: u32 = 32;

    /// New deliveries arrived: the next [`BatchClock::now`] reads the clock.
    pub fn new_batch(&mut self) {
        self.left = 0;
    }

    /// The receive time of one delivery.
    pub fn now(&mut self) -> u64 {
        if self.left == 0 {
            self.now = now_ns();
            self.left = Self::EVERY;
        }
        self.left -= 1;
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = Header { producer: 65535, seq: (1 << 48) - 1, intended_ns: 123_456_789 };
        let buf = h.to_bytes();
        assert_eq!(Header::read(&buf), Some(h));
        assert_eq!(Header::read(&buf[..15]), None);
        let h = Header { producer: 3, seq: 7, intended_ns: u64::MAX };
        let mut long = vec![0u8; 64];
        long[..16].copy_from_slice(&h.to_bytes());
        assert_eq!(Header::read(&long), Some(h));
    }

    #[test]
    fn batch_clock_reads_per_batch_and_every_32() {
        let mut c = BatchClock::default();
        let a = c.now();
        for _ in 1..BatchClock::EVERY {
            assert_eq!(c.now(), a);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = c.now();
        assert!(b > a);
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert_eq!(c.now(), b);
        c.new_batch();
        assert!(c.now() > b);
    }

    #[test]
    fn clock_counts_nanoseconds() {
        // A clock read in the wrong unit, or not read at all, would not
        // advance by the sleep's length as std's monotonic Instant measures it.
        let (start, a) = (std::time::Instant::now(), now_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now_ns();
        let elapsed = u64::try_from(start.elapsed().as_nanos()).expect("elapsed fits u64");
        let advanced = b - a;
        assert!(advanced >= 20_000_000, "advanced {advanced} ns over a 20 ms sleep");
        assert!(advanced <= elapsed + 1_000_000, "advanced {advanced} ns, Instant saw {elapsed} ns");
    }
}
