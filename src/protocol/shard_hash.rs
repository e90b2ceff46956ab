//! `shard_for(queue)`: which shard owns a queue. Part of the protocol:
//! clients compute it to talk to the owner directly, so it must never
//! change for a given `HASH_ID`.
//!
//! Hash 1 = FNV-1a 64 of the queue name's UTF-8 bytes, then Lamping and
//! Veach's jump consistent hash onto `[0, shards)`. Jump hash moves only
//! about 1/N of the queues when the shard count grows from N-1 to N.

/// Identifier of the hash below, sent in the handshake.
pub const HASH_ID: u8 = 1;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Jump consistent hash (arXiv:1406.2294).
// The published algorithm's float step, and `b` is below `buckets`.
#[allow(clippy::cast_possible_truncation)]
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "jump_hash needs at least one bucket");
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The shard that owns `queue` among `shards` shards.
pub fn shard_for(queue: &str, shards: u32) -> u32 {
    jump_hash(fnv1a64(queue.as_bytes()), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn stable_assignments() {
        // Pinned: changing these breaks every deployed client.
        let names = ["hello", "q0", "q1", "orders"];
        let pinned: [(u32, [u32; 4]); 4] =
            [(2, [1, 0, 0, 0]), (3, [2, 0, 0, 0]), (8, [2, 0, 7, 7]), (64, [25, 46, 25, 37])];
        for (shards, want) in pinned {
            let got: Vec<u32> = names.iter().map(|q| shard_for(q, shards)).collect();
            assert_eq!(got, want, "{shards} shards");
        }
    }

    #[test]
    fn jump_moves_few() {
        let moved = (0..10_000u64).filter(|k| jump_hash(*k, 4) != jump_hash(*k, 5)).count();
        assert!(moved < 2_600, "moved {moved}");
    }
}
