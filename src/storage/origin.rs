//! Where a message was published to (its exchange and routing key), in
//! the log: one origin record (type 18) per publish batch that did not go
//! through the default exchange with the queue's name, logged after the
//! batch's publish records. The common case (a publish to a queue by its
//! name) writes nothing more, and a message without a record recovers as
//! it always did: default exchange, the queue's name as routing key.
//!
//! Reclaim deletes a segment once every segment up to it holds nothing
//! live, so a record is safe while it sits in a segment no older than any
//! live message it covers. The log keeps that true:
//! - a batch's record comes after its publishes (same or later segment);
//! - compaction re-logs the record after the copies it made of covered
//!   messages (`relog_after_copies`): the copies are newer than the
//!   record was;
//! - after a crash between those two, the start re-logs every record
//!   that is older than a live message it covers (`Storage::open`).
//!
//! The log keeps the runs its records make (first, count, oldest segment,
//! and the origin, one `Arc` shared with the queue's messages; consecutive
//! records of one origin are one run) while any message a run covers is
//! live; an ack of the last drops it.

use super::log::{State, Storage};
use super::record::{encode, u32_at, u64_at, Record, SEQ_LIMIT};
use super::recovery::RecoveredQueue;
use super::runs::QState;
use super::StorageError;
use bytes::BufMut;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a message was published to. `None` in its place means the
/// default exchange with the queue's name (nothing is logged for that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub exchange: String,
    pub routing_key: String,
}

/// The longest exchange name and routing key an origin record holds
/// (u16 lengths; names are at most 255 bytes plus a vhost).
pub const ORIGIN_NAME_BYTES_MAX: usize = u16::MAX as usize;

/// The payload's fixed head: first (u64), count (u32), exchange length (u16).
const HEAD: usize = 14;

impl Origin {
    /// Whether both names fit an origin record.
    pub fn fits(&self) -> bool {
        self.exchange.len() <= ORIGIN_NAME_BYTES_MAX && self.routing_key.len() <= ORIGIN_NAME_BYTES_MAX
    }
}

/// Writes an origin record's payload (names checked by `Origin::fits`).
pub(super) fn put_payload(buf: &mut Vec<u8>, first: u64, count: u32, exchange: &[u8], routing_key: &[u8]) {
    debug_assert!(exchange.len() <= ORIGIN_NAME_BYTES_MAX && routing_key.len() <= ORIGIN_NAME_BYTES_MAX);
    buf.put_u64_le(first);
    buf.put_u32_le(count);
    buf.put_u16_le(u16::try_from(exchange.len()).unwrap_or(u16::MAX));
    buf.put_slice(exchange);
    buf.put_slice(routing_key);
}

fn exchange_len(p: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([p[12], p[13]]))
}

/// The O(1) shape of an origin payload (before its checksum is paid for):
/// the head, an exchange within the payload, a routing key within bounds.
pub(super) fn plausible_payload(p: &[u8]) -> bool {
    p.len() >= HEAD && p.len() - HEAD >= exchange_len(p) && p.len() - HEAD - exchange_len(p) <= ORIGIN_NAME_BYTES_MAX
}

/// Decodes an origin payload: `None` when malformed (a count of 0, a
/// sequence number range past `SEQ_LIMIT`, a name that is not UTF-8 or
/// does not fit).
pub(super) fn decode_payload(p: &[u8]) -> Option<(u64, u32, &[u8], &[u8])> {
    if !plausible_payload(p) {
        return None;
    }
    let (first, count) = (u64_at(p, 0), u32_at(p, 8));
    if count == 0 || first.checked_add(u64::from(count)).is_none_or(|end| end > SEQ_LIMIT) {
        return None;
    }
    let (exchange, routing_key) = p[HEAD..].split_at(exchange_len(p));
    std::str::from_utf8(exchange).ok()?;
    std::str::from_utf8(routing_key).ok()?;
    Some((first, count, exchange, routing_key))
}

/// The coverage of one or more origin records: `count` sequence numbers
/// (from its key in the map) published to `origin`.
#[derive(Debug, Clone)]
pub(super) struct OriginRun {
    pub(super) count: u32,
    /// The oldest segment a record of it was read from or written to
    /// (recovery re-logs a run older than a message it covers).
    pub(super) seg: u64,
    pub(super) origin: Arc<Origin>,
}

/// Adds one record's coverage to `runs`: a record that continues (or
/// lies within) the run before it, with an equal origin, extends that
/// run instead of adding one. A publisher's batches through one exchange
/// and key, and a record's copies, so cost one entry in memory, not one
/// per batch (a backlog of millions of one-message AMQP publishes).
pub(super) fn add_run(runs: &mut BTreeMap<u64, OriginRun>, first: u64, run: OriginRun) {
    if let Some((&f, prev)) = runs.range_mut(..=first).next_back() {
        let end = f.saturating_add(u64::from(prev.count));
        let new_end = first.saturating_add(u64::from(run.count));
        let same = Arc::ptr_eq(&prev.origin, &run.origin) || prev.origin == run.origin;
        if same && first <= end {
            if let Ok(n) = u32::try_from(new_end.max(end) - f) {
                prev.count = n;
                prev.seg = prev.seg.min(run.seg);
                return;
            }
        }
    }
    runs.insert(first, run);
}

impl QState {
    /// The first sequence number of the kept record covering `seq`.
    pub(super) fn origin_at(&self, seq: u64) -> Option<u64> {
        let (&first, r) = self.origins.range(..=seq).next_back()?;
        (seq - first < u64::from(r.count)).then_some(first)
    }

    /// Whether any of `count` messages from `first` is live.
    pub(super) fn any_live(&self, first: u64, count: u32) -> bool {
        let last = first.saturating_add(u64::from(count).saturating_sub(1));
        self.runs.range(..=last).next_back().is_some_and(|(_, r)| r.last >= first)
    }

    /// `seq` is no longer live: its record goes once it covers nothing live.
    pub(super) fn forget_origin(&mut self, seq: u64) {
        if self.origins.is_empty() {
            return;
        }
        if let Some(first) = self.origin_at(seq) {
            let count = self.origins[&first].count;
            if !self.any_live(first, count) {
                self.origins.remove(&first);
            }
        }
    }
}

/// Appends an origin record for `count` messages from `first` of `queue`
/// and keeps it, unless none of them is live.
pub(super) fn put_origin<W>(log: &Storage<W>, st: &mut State<W>, queue: u32, first: u64, mut run: OriginRun) {
    if !st.queues.get(&queue).is_some_and(|q| q.any_live(first, run.count)) {
        return;
    }
    let (exchange, routing_key) = (run.origin.exchange.as_bytes(), run.origin.routing_key.as_bytes());
    let rec = Record::Origin { queue, first, count: run.count, exchange, routing_key };
    let (seg, _) = log.put(st, |b, seed| encode(b, seed, &rec));
    run.seg = seg;
    if let Some(q) = st.queues.get_mut(&queue) {
        add_run(&mut q.origins, first, run);
    }
}

/// Compaction copied `moved` (queue, seq): the records covering them are
/// logged again after the copies, so none is older than a message it
/// covers.
pub(super) fn relog_after_copies<W>(log: &Storage<W>, st: &mut State<W>, moved: &[(u32, u64)]) {
    let mut due: Vec<(u32, u64)> = moved
        .iter()
        .filter_map(|&(queue, seq)| {
            let q = st.queues.get(&queue).filter(|q| !q.origins.is_empty())?;
            Some((queue, q.origin_at(seq)?))
        })
        .collect();
    due.sort_unstable();
    due.dedup();
    for (queue, first) in due {
        if let Some(run) = st.queues.get(&queue).and_then(|q| q.origins.get(&first)).cloned() {
            put_origin(log, st, queue, first, run);
        }
    }
}

/// The records of a recovered queue the log keeps, and the first sequence
/// numbers of those older than a live message they cover (a crash came
/// between compaction's copies and its re-logging): logged again at the
/// start.
pub(super) fn recovered_runs(q: &RecoveredQueue) -> (BTreeMap<u64, OriginRun>, Vec<u64>) {
    let runs: BTreeMap<u64, OriginRun> = q
        .origins
        .iter()
        .map(|o| (o.first, OriginRun { count: o.count, seg: o.seg, origin: o.origin.clone() }))
        .collect();
    let mut stale = Vec::new();
    if runs.is_empty() {
        return (runs, stale);
    }
    for m in &q.messages {
        let Some((&first, r)) = runs.range(..=m.seq).next_back() else { continue };
        if m.seq - first < u64::from(r.count) && u64::from(m.seg) > r.seg && stale.last() != Some(&first) {
            stale.push(first);
        }
    }
    (runs, stale)
}

impl<W> Storage<W> {
    /// Logs where `count` messages of `queue` from `first`, just logged as
    /// one publish batch, were published to. Names too long for a record
    /// (never: names are at most 255 bytes and a vhost) are not logged;
    /// those messages would recover with the default origin.
    pub fn origin(&self, queue: u32, first: u64, count: u32, origin: &Arc<Origin>) -> Result<(), StorageError> {
        if count == 0 || !origin.fits() {
            return Ok(());
        }
        self.append(|st| put_origin(self, st, queue, first, OriginRun { count, seg: 0, origin: origin.clone() }))
    }

    /// The start: re-logs the records `stale` names (`recovered_runs`).
    pub(super) fn relog_stale(&self, st: &mut State<W>, stale: Vec<(u32, u64)>) {
        for (queue, first) in stale {
            if let Some(run) = st.queues.get(&queue).and_then(|q| q.origins.get(&first)).cloned() {
                put_origin(self, st, queue, first, run);
            }
        }
    }
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
