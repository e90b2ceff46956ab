//! `ringmq ctl import-definitions` over the native protocol: an `Admin`
//! argument holds at most 65535 bytes, so the document comes in parts on
//! one connection. Each part's argument starts with `+` (more follow) or
//! `.` (the last); the parts are kept per connection on its shard until
//! the last, within `definitions_bytes_max` (each, and all of a shard's
//! together). Uploads are few: at most [`UPLOADS_MAX`] per shard are
//! kept, and one more evicts the oldest (a connection that went away
//! mid-upload).

use crate::server::types::ConnRef;
use std::cell::RefCell;
use std::collections::HashMap;

/// Unfinished uploads kept per shard.
pub const UPLOADS_MAX: usize = 8;

/// The part's marker: more parts follow.
pub const MORE: char = '+';
/// The part's marker: the last part.
pub const LAST: char = '.';

/// By connection (shard, id): the bytes so far and the upload's sequence
/// number (the lowest is the oldest).
type Uploads = HashMap<(u16, u64), (Vec<u8>, u64)>;

thread_local! {
    static UPLOADS: RefCell<Uploads> = RefCell::new(HashMap::new());
    static SEQ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Where an upload stands after a part.
pub enum Part {
    /// More are to come: the bytes so far.
    More(usize),
    /// That was the last: the whole document.
    Done(Vec<u8>),
}

/// Adds one part from `conn`. `Err`: the part is malformed or the
/// document grew past `max` (the upload is dropped).
pub fn part(conn: ConnRef, arg: &str, max: u64) -> Result<Part, String> {
    let key = (conn.shard, conn.conn_id);
    let (marker, data) = match arg.chars().next() {
        Some(m @ (MORE | LAST)) => (m, &arg[1..]),
        _ => {
            forget(key);
            return Err(format!("an import part starts with '{MORE}' or '{LAST}'"));
        }
    };
    UPLOADS.with(|u| {
        let mut u = u.borrow_mut();
        if !u.contains_key(&key) && u.len() >= UPLOADS_MAX {
            if let Some(oldest) = u.iter().min_by_key(|(_, (_, seq))| *seq).map(|(k, _)| *k) {
                u.remove(&oldest);
            }
        }
        let seq = SEQ.with(|s| {
            s.set(s.get() + 1);
            s.get()
        });
        let mine = u.get(&key).map_or(0, |(b, _)| b.len()).saturating_add(data.len());
        if u64::try_from(mine).unwrap_or(u64::MAX) > max {
            u.remove(&key);
            return Err(format!("the document is over definitions_bytes_max ({max} bytes)"));
        }
        // All uploads of the shard together stay within `max` too: the
        // oldest others make room (a connection gone mid-upload).
        while held(&u).saturating_add(data.len()) > usize::try_from(max).unwrap_or(usize::MAX) {
            let oldest = u.iter().filter(|(k, _)| **k != key).min_by_key(|(_, (_, seq))| *seq).map(|(k, _)| *k);
            match oldest {
                Some(k) => u.remove(&k),
                None => break,
            };
        }
        let (buf, _) = u.entry(key).or_insert_with(|| (Vec::new(), seq));
        buf.extend_from_slice(data.as_bytes());
        if marker == MORE {
            return Ok(Part::More(buf.len()));
        }
        Ok(Part::Done(u.remove(&key).map(|(b, _)| b).unwrap_or_default()))
    })
}

/// Bytes held by every upload of the shard.
fn held(u: &Uploads) -> usize {
    u.values().map(|(b, _)| b.len()).sum()
}

fn forget(key: (u16, u64)) {
    UPLOADS.with(|u| u.borrow_mut().remove(&key));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> ConnRef {
        ConnRef { shard: 0, conn_id: id }
    }

    #[test]
    fn parts_join_and_uploads_stay_within_the_limit() {
        assert!(matches!(part(conn(1), "+ab", 10), Ok(Part::More(2))));
        assert!(matches!(part(conn(1), ".cd", 10), Ok(Part::Done(d)) if d == b"abcd"));
        assert!(part(conn(1), "xy", 10).is_err(), "no marker");
        assert!(part(conn(1), "+0123456789a", 10).is_err(), "over the limit alone");
        // A stale upload gives way to a new one when together they pass it.
        assert!(matches!(part(conn(2), "+012345", 10), Ok(Part::More(6))));
        assert!(matches!(part(conn(3), "+012345", 10), Ok(Part::More(6))));
        assert!(matches!(part(conn(2), ".6", 10), Ok(Part::Done(d)) if d == b"6"), "conn 2's start was evicted");
        forget((0, 3));
    }
}
