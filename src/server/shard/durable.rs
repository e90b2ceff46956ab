//! The shard's side of storage: recovery into queues at start, the
//! flusher task that releases deferred confirms after each group commit,
//! and the hooks the request handlers call for durable queues.
//!
//! What is logged: persistent messages published into durable queues,
//! their acks (and drops), and declare / delete / purge of durable queues.
//! Transient messages, and anything in a transient queue, never are.

use super::super::policy::QueueArgs;
use super::super::queue::Queue;
use super::super::types::{ConnRef, Delivered, Message, QueueError, Reply};
use super::{bump, Shard};
use crate::protocol::batch::parse_entry;
use crate::protocol::ErrorCode;
use crate::storage::io::{DmaIo, LogIo};
use crate::storage::{Loc, RecoveredMsg, RecoveredQueue, Storage, StorageError, StorageOptions};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A reply held until the flush that covers it is done.
pub struct Waiter {
    to: ConnRef,
    request_id: u64,
    reply: Reply,
    /// Messages a deferred Confirm covers (for the counter).
    confirms: u32,
    /// When it was deferred (for the publish-to-confirm histogram).
    since: std::time::Instant,
}

pub struct Durable {
    pub log: Storage<Waiter>,
    /// Durable queue name → log id.
    pub(super) ids: RefCell<HashMap<String, u32>>,
    /// Set when the request being handled logged queue metadata: its Ok
    /// waits for the flush (`Shard::reply_after_log`).
    meta_logged: Cell<bool>,
}

/// Recovered messages moved into a queue per step (and per read-back of
/// a priority queue's entries).
const RESTORE_BATCH: usize = 8192;

/// The refusal of a persistent publish (or durable declare) by a
/// poisoned log: `StorageFull` when the disk filled, with what to do.
fn poisoned(why: &str, disk_full: bool) -> QueueError {
    if disk_full {
        return QueueError::new(
            ErrorCode::StorageFull,
            format!(
                "disk full: this shard's log could not be written ({why}); persistent messages are refused until space is freed and the broker restarted"
            ),
        );
    }
    QueueError::new(
        ErrorCode::StoragePoisoned,
        format!("this shard's storage failed ({why}); persistent messages are refused until the broker is restarted"),
    )
}

impl Shard {
    pub(super) fn durable(&self) -> Option<Rc<Durable>> {
        self.durable.borrow().clone()
    }

    /// Back pressure from the disk: waits while the log holds more than
    /// `log_unwritten_bytes_max` bytes not yet written (a slow or stalled
    /// disk), so appends and their confirm waiters cannot pile up. Called
    /// by connections between reads and by the mesh receivers between
    /// batches (requests from other shards then wait in their mesh
    /// channels, and those shards' connections stop at `mesh_pending_max`).
    pub async fn wait_log_space(&self) {
        let Some(d) = self.durable() else { return };
        let max = crate::protocol::wire::usize_of(self.config.log_unwritten_bytes_max);
        if d.log.unwritten_bytes() > max {
            tracing::debug!(shard = self.id, "log_unwritten_bytes_max reached: reads wait for the disk");
            d.log.wait_unwritten_below(max).await;
        }
    }

    /// Recovers `data_dir/shard-N` and rebuilds its durable queues. Runs
    /// before the shard accepts connections.
    pub async fn open_storage(&self) -> Result<(), StorageError> {
        self.open_storage_with(Rc::new(DmaIo)).await
    }

    pub async fn open_storage_with(&self, io: Rc<dyn LogIo>) -> Result<(), StorageError> {
        let (log, rec) = Storage::open(io, self.storage_options()).await?;
        let mut ids = HashMap::new();
        let mut messages = 0usize;
        let now = self.timers.now_ms();
        let mut restored = Vec::with_capacity(rec.queues.len());
        for rq in rec.queues {
            messages += rq.messages.len();
            ids.insert(rq.name.clone(), rq.id);
            let name = rq.name.clone();
            let q = self.restore_queue(&log, rq, now).await?;
            restored.push((name, q));
        }
        let mut queues = self.queues.borrow_mut();
        queues.extend(restored);
        let r = &rec.report;
        tracing::info!(
            shard = self.id,
            queues = ids.len(),
            messages,
            segments = r.segments,
            records = r.records,
            bytes_read = r.bytes_read,
            torn_tail_cut_bytes = r.truncated_bytes,
            skipped_corrupt = r.skipped.len(),
            elapsed_ms = r.elapsed.as_secs_f64() * 1e3,
            "storage recovered"
        );
        drop(queues);
        *self.durable.borrow_mut() =
            Some(Rc::new(Durable { log, ids: RefCell::new(ids), meta_logged: Cell::new(false) }));
        Ok(())
    }

    /// The log's options from this shard's configuration: its directory
    /// is `data_dir/shard-N`.
    fn storage_options(&self) -> StorageOptions {
        let c = &self.config;
        StorageOptions {
            dir: c.data_dir.join(format!("shard-{}", self.id)),
            shard: self.id,
            shard_count: self.count,
            segment_bytes: c.segment_bytes,
            fsync: c.fsync,
            fsync_interval_ms: c.fsync_interval_ms,
            skip_corrupt: c.storage_skip_corrupt,
            compact_live_ratio_pct: c.compact_live_ratio_pct,
            segments_recycled_max: c.segments_recycled_max,
            resident_bytes_max: c.memory_budget_bytes,
        }
    }

    /// Rebuilds one durable queue from what recovery left of it.
    async fn restore_queue(
        &self,
        log: &Storage<Waiter>,
        mut rq: RecoveredQueue,
        now: u64,
    ) -> Result<Queue, StorageError> {
        let args = QueueArgs::parse(&rq.args, &rq.name).unwrap_or_else(|e| {
            // Checked when declared: only a changed rule gets here.
            tracing::error!(queue = %rq.name, "logged queue arguments refused, queue kept without them: {}", e.message);
            QueueArgs::default()
        });
        let mut q = self.queues.new_queue(rq.name.clone(), true, args);
        q.set_next_seq(rq.next_seq);
        for (reference, offset) in std::mem::take(&mut rq.offsets) {
            q.restore_offset(reference, offset);
        }
        q.restore_stream_chunks(std::mem::take(&mut rq.chunks));
        q.touch(now);
        // Recovery kept the entries of the oldest in memory; the rest
        // go straight to the queue's compact cold part.
        q.reserve_ready(rq.messages.len(), rq.messages.len().saturating_sub(rq.entries.len()));
        // Moved over oldest first; the replay's deque shrinks as it
        // empties, so a big backlog is not held twice.
        let mut cap = rq.messages.capacity();
        while !rq.messages.is_empty() {
            let n = rq.messages.len().min(RESTORE_BATCH);
            let batch: Vec<RecoveredMsg> = rq.messages.drain(..n).collect();
            self.restore_batch(log, &mut rq, &mut q, batch, now).await?;
            // Given back each time it is half empty: the queue's cold
            // part grows meanwhile, and the two must not add up
            // (copies: n/2 + n/4 + ... = n in all).
            if cap > 4096 && rq.messages.len() * 2 < cap {
                rq.messages.shrink_to_fit();
                cap = rq.messages.capacity();
            }
        }
        q.stream_restored();
        let gone = q.take_stream_dropped();
        if !gone.is_empty() {
            let walk = |each: &mut dyn FnMut(u64, usize)| gone.iter().for_each(|&(s, len)| each(s, len));
            if let Err(e) = log.purge(rq.id, walk) {
                tracing::warn!(shard = self.id, queue = %q.name, "stream retention at recovery not logged: {e}");
            }
        }
        self.after_dispatch(&mut q);
        Ok(q)
    }

    /// Moves one batch of recovered messages (oldest first) into `q`: an
    /// entry recovery kept in memory as it is, one left on disk as a
    /// spilled message, or read back now if `q` cannot hold spilled ones.
    async fn restore_batch(
        &self,
        log: &Storage<Waiter>,
        rq: &mut RecoveredQueue,
        q: &mut Queue,
        batch: Vec<RecoveredMsg>,
        now: u64,
    ) -> Result<(), StorageError> {
        if q.is_stream() {
            self.restore_stream_batch(log, rq, q, batch);
            return Ok(());
        }
        // A queue that cannot hold spilled messages (priorities) gets
        // the entries recovery left on disk read back now.
        let spillable = q.can_spill();
        let want: Vec<(u64, Loc)> = match spillable {
            true => Vec::new(),
            false => batch
                .iter()
                .filter(|m| !rq.entries.contains_key(&m.seq))
                .filter_map(|m| Some((m.seq, m.loc()?)))
                .collect(),
        };
        let mut read = match want.is_empty() {
            true => Vec::new().into_iter(),
            false => log
                .read_entries(rq.id, &want)
                .await
                .map_err(|e| StorageError::Restore { queue: rq.name.clone(), source: Box::new(e) })?
                .into_iter(),
        };
        for m in batch {
            let origin = rq.take_origin(m.seq);
            match (m.loc(), rq.take_entry(&m)) {
                (Some(loc), None) if spillable => q.restore_spilled(m.seq, loc, m.body_len, now, origin),
                (_, None) => q.restore(m.seq, read.next().unwrap_or_default(), now, origin),
                // Delivered as it is: a record that verifies but
                // does not hold one well-formed entry is dropped
                // (and logged gone), never handed to a client.
                (_, Some(entry)) if parse_entry(&entry).is_err() => {
                    tracing::error!(shard = self.id, queue = %rq.name, seq = m.seq, "recovered message is not a well-formed entry: dropped");
                    log.ack(rq.id, m.seq, entry.len());
                }
                (_, Some(entry)) => q.restore(m.seq, entry, now, origin),
            }
        }
        Ok(())
    }

    /// `restore_batch` for a stream: what recovery left on disk stays
    /// there (read when a consumer gets to it); the stream keeps its window
    /// of the newest in memory as they come in.
    fn restore_stream_batch(
        &self,
        log: &Storage<Waiter>,
        rq: &mut RecoveredQueue,
        q: &mut Queue,
        batch: Vec<RecoveredMsg>,
    ) {
        for m in batch {
            let origin = rq.take_origin(m.seq);
            match (rq.take_entry(&m), m.loc()) {
                (Some(entry), _) if parse_entry(&entry).is_err() => {
                    tracing::error!(shard = self.id, queue = %rq.name, seq = m.seq, "recovered message is not a well-formed entry: dropped");
                    log.ack(rq.id, m.seq, entry.len());
                }
                (Some(entry), loc) => q.stream_restore(m.seq, entry, loc, origin),
                (None, Some(loc)) => q.stream_restore(m.seq, bytes::Bytes::new(), Some(loc), origin),
                // Not expected: a record past the locations a queue keeps.
                (None, None) => {
                    tracing::error!(shard = self.id, queue = %rq.name, seq = m.seq, "recovered stream message has no location: dropped")
                }
            }
        }
    }

    /// The group-commit loop: waits for appends, flushes them (one write,
    /// one fdatasync), then releases what waited on them. Between flushes
    /// it runs one bounded step of compaction when one is due.
    pub async fn run_flusher(self: Rc<Self>) {
        let Some(d) = self.durable() else { return };
        loop {
            if d.log.compaction_due() {
                let moved = d.log.compact_step().await;
                self.relocate(&d, moved);
            } else {
                d.log.wait_work().await;
            }
            let f = d.log.flush().await;
            self.release(f);
        }
    }

    /// Deletes dead segments and prepares the next one
    /// (`storage/housekeep.rs`).
    pub async fn run_housekeeping(self: Rc<Self>) {
        if let Some(d) = self.durable() {
            d.log.run_housekeeping().await;
        }
    }

    fn release(&self, f: crate::storage::Flushed<Waiter>) {
        let full = self.durable().is_some_and(|d| d.log.disk_full());
        for w in f.waiters {
            match &f.result {
                Ok(()) => {
                    bump(&self.counters.confirmed, u64::from(w.confirms));
                    if w.confirms > 0 {
                        self.counters.confirm_latency.observe(w.since.elapsed(), u64::from(w.confirms));
                    }
                    self.route_reply(w.to, w.reply);
                }
                Err(why) => {
                    let e = poisoned(why, full);
                    self.route_reply(w.to, Reply::error(w.request_id, e.code, e.message));
                }
            }
        }
    }

    /// Clean shutdown: everything appended is written and synced.
    pub async fn close_storage(&self) {
        if let Some(d) = self.durable() {
            let f = d.log.close().await;
            if let Err(e) = &f.result {
                tracing::error!(shard = self.id, error = %e, "storage could not be flushed at shutdown");
            }
            self.release(f);
        }
    }

    /// The log and id of `queue` when a persistent publish to it must be
    /// logged; an error when the storage is poisoned.
    pub(super) fn log_target(&self, persistent: bool, queue: &str) -> Result<Option<(Rc<Durable>, u32)>, QueueError> {
        if !persistent {
            return Ok(None);
        }
        let Some(d) = self.durable() else { return Ok(None) };
        let Some(id) = d.ids.borrow().get(queue).copied() else { return Ok(None) };
        if let Some(why) = d.log.poisoned() {
            let full = d.log.disk_full();
            tracing::warn!(shard = self.id, queue, disk_full = full, "persistent publish refused: storage poisoned");
            return Err(poisoned(&why, full));
        }
        Ok(Some((d, id)))
    }

    /// Holds a confirm until its messages are stored.
    pub(super) fn confirm_after_log(&self, d: &Durable, to: ConnRef, request_id: u64, count: u32) {
        d.log.defer(Waiter {
            to,
            request_id,
            reply: Reply::Confirm { request_id, count },
            confirms: count,
            since: std::time::Instant::now(),
        });
    }

    /// Holds `reply` (not a confirm) until everything logged so far is
    /// stored: a transaction's commit.
    pub(super) fn reply_after_flush(&self, d: &Durable, to: ConnRef, request_id: u64, reply: Reply) {
        d.log.defer(Waiter { to, request_id, reply, confirms: 0, since: std::time::Instant::now() });
    }

    /// A durable queue was created: log it and its arguments (before the
    /// Ok goes out).
    pub(super) fn log_declare(&self, name: &str, durable: bool, args: &[u8]) -> Result<(), QueueError> {
        let Some(d) = self.durable().filter(|_| durable) else { return Ok(()) };
        let id = d.log.declare(name, args).map_err(|e| poisoned(&e.to_string(), d.log.disk_full()))?;
        d.ids.borrow_mut().insert(name.to_owned(), id);
        d.meta_logged.set(true);
        Ok(())
    }

    /// A queue went away (delete, exclusive owner gone, auto-delete).
    pub(super) fn log_delete(&self, name: &str) {
        let Some(d) = self.durable() else { return };
        let Some(id) = d.ids.borrow_mut().remove(name) else { return };
        if d.log.delete(id).is_ok() {
            d.meta_logged.set(true);
        }
    }

    fn durable_id(&self, q: &Queue) -> Option<(Rc<Durable>, u32)> {
        if !q.durable {
            return None;
        }
        let d = self.durable()?;
        let id = d.ids.borrow().get(&q.name).copied()?;
        Some((d, id))
    }

    /// Persistent messages of `q` gone without a delivery to ack them
    /// (acks use this too): (seq, entry length).
    pub(super) fn log_gone(&self, q: &Queue, seqs: Vec<(u64, usize)>) {
        if seqs.is_empty() {
            return;
        }
        if let Some((d, id)) = self.durable_id(q) {
            for (s, len) in seqs {
                d.log.ack(id, s, len);
            }
        }
    }

    /// After an append to a stream: the batch's chunk record (its time),
    /// then what retention dropped, logged gone in one purge record (its
    /// ranges): the log reclaims the segments it held.
    pub(super) fn log_stream_dropped(&self, d: &Durable, id: u32, q: &mut Queue) {
        if let Some((first, count, at_ms)) = q.take_stream_chunk() {
            if let Err(e) = d.log.stream_chunk(id, first, count, at_ms) {
                tracing::warn!(shard = self.id, queue = %q.name, "stream chunk time not logged: {e}");
            }
        }
        let gone = q.take_stream_dropped();
        if gone.is_empty() {
            return;
        }
        let walk = |each: &mut dyn FnMut(u64, usize)| gone.iter().for_each(|&(s, len)| each(s, len));
        if let Err(e) = d.log.purge(id, walk) {
            tracing::warn!(shard = self.id, queue = %q.name, "stream retention not logged: {e}");
        }
    }

    /// Server-side offset tracking: the stream keeps the offset, the log
    /// stores it (the Ok waits for the flush, as a declare's).
    pub(super) fn store_offset(&self, queue: &str, reference: &str, offset: u64) -> Result<u64, QueueError> {
        let max = self.config.stream_offset_refs_max;
        let mut queues = self.queues.borrow_mut();
        let q = queues.get_mut(queue).ok_or_else(|| super::not_found(queue))?;
        q.store_offset(reference, offset, max as usize)?;
        if let Some((d, id)) = self.durable_id(q) {
            d.log.store_offset(id, reference, offset).map_err(|e| poisoned(&e.to_string(), d.log.disk_full()))?;
            d.meta_logged.set(true);
        }
        Ok(offset)
    }

    pub(super) fn ack_logged(
        &self,
        q: &mut Queue,
        from: ConnRef,
        consumer_id: u32,
        ranges: &[(u64, u64)],
    ) -> Result<usize, QueueError> {
        let mut seqs = Vec::new();
        let n = q.ack_each(from, consumer_id, ranges, |m| persistent_seq(m, &mut seqs))?;
        self.log_gone(q, seqs);
        Ok(n)
    }

    pub(super) fn nack_logged(
        &self,
        q: &mut Queue,
        from: ConnRef,
        consumer_id: u32,
        requeue: bool,
        ranges: &[(u64, u64)],
    ) -> Result<usize, QueueError> {
        // Without requeue the messages go to the queue's dead list, which
        // the settle step logs gone (and dead-letters).
        q.nack(from, consumer_id, requeue, ranges)
    }

    pub(super) fn get_logged(
        &self,
        q: &mut Queue,
        from: ConnRef,
        consumer_id: u32,
        no_ack: bool,
        now: u64,
    ) -> Result<Option<(u64, Delivered)>, QueueError> {
        let mut seqs = Vec::new();
        let r = q.get_each(from, consumer_id, no_ack, now, |m| persistent_seq(m, &mut seqs))?;
        self.log_gone(q, seqs);
        Ok(r)
    }

    pub(super) fn purge_logged(&self, q: &mut Queue) -> usize {
        let Some((d, id)) = self.durable_id(q) else { return q.purge() };
        let walk = |gone: &mut dyn FnMut(u64, usize)| {
            q.purge_each(|m| {
                if m.persistent {
                    gone(m.seq, m.bytes());
                }
            })
        };
        match d.log.purge(id, walk) {
            Ok(n) => {
                d.meta_logged.set(true);
                n
            }
            // Poisoned: nothing more is logged; the queue is purged all the same.
            Err(_) => q.purge(),
        }
    }

    /// Replies to a request that may have logged metadata (declare,
    /// delete, purge of a durable queue): then the Ok waits for the flush.
    pub(super) fn reply_after_log(&self, to: ConnRef, request_id: u64, result: Result<u64, QueueError>) {
        // The log, if this request logged metadata (the mark reset for the next).
        let d = self.durable().filter(|d| d.meta_logged.replace(false));
        match (&result, d) {
            (Ok(value), Some(d)) => d.log.defer(Waiter {
                to,
                request_id,
                reply: Reply::Ok { request_id, value: *value },
                confirms: 0,
                since: std::time::Instant::now(),
            }),
            _ => self.reply_result(to, request_id, result),
        }
    }
}

fn persistent_seq(m: &Message, seqs: &mut Vec<(u64, usize)>) {
    if m.persistent {
        seqs.push((m.seq, m.bytes()));
    }
}
