//! `ringmq ctl import-definitions` over the native protocol: an `Admin`
//! argument holds at most 65535 bytes, so the document comes in parts on
//! one connection. Each part's argument starts with `+` (more follow) or
//! `.` (the last); the parts are kept per connection on its shard until
//! the last, within `definitions_bytes_max`. Uploads are few: at most
//! [`UPLOADS_MAX`] per shard are kept, and one more evicts the oldest (a
//! connection that went away mid-upload).

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
        let (buf, _) = u.entry(key).or_insert_with(|| (Vec::new(), seq));
        let total = u64::try_from(buf.len().saturating_add(data.len())).unwrap_or(u64::MAX);
        if total > max {
            u.remove(&key);
            return Err(format!("the document is over definitions_bytes_max ({max} bytes)"));
        }
        buf.extend_from_slice(data.as_bytes());
        if marker == MORE {
            return Ok(Part::More(buf.len()));
        }
        Ok(Part::Done(u.remove(&key).map(|(b, _)| b).unwrap_or_default()))
    })
}

fn forget(key: (u16, u64)) {
    UPLOADS.with(|u| u.borrow_mut().remove(&key));
}
