//! The log's housekeeping task: preparing the next segment before the
//! writer needs it, preferably by reusing a dead one, and deleting the
//! dead segments it does not keep for that.
//!
//! Both are kept out of the flush (and so out of every confirm's path):
//! unlinking a big segment and syncing the directory each wait on the
//! filesystem's journal, and the first writes into a fresh file allocate
//! blocks and grow its size, so each of their fdatasyncs commits metadata
//! too (measured here: a flush that rolled to a fresh segment took 15–38 ms
//! against well under 1 ms for the others). A prepared segment is created,
//! given its blocks with fallocate and synced (with its directory) ahead
//! of time: appends into it do not grow the file, and its blocks read as
//! zeros, which the scanner takes as the clean end of the data
//! (`record::scan`), so the format does not change. (Zero-filling it with
//! real writes was tried: it competed with the log's own writes and made
//! the confirm tail worse.)
//!
//! Reusing a dead segment goes further: its blocks are allocated and were
//! written, so overwriting them changes no metadata at all, and nothing
//! is freed (on a filesystem mounted with `discard`, freeing a segment's
//! blocks trims them, and flushes then waited on those trims). Up to
//! `segments_recycled_max` dead segments are kept for it; the oldest dead
//! one is renamed to the next number (format version 2 makes its old
//! records unreadable as new ones, `record.rs`). Dead segments are only
//! ever taken from the front of the log, so what is left always replays
//! correctly (a newer segment may hold the acks of an older one).

use super::io::{segment_path, SegmentFile};
use super::log::Storage;
use std::rc::Rc;
use std::time::Duration;

impl<W> Storage<W> {
    /// Runs for the life of the shard's log.
    pub async fn run_housekeeping(&self) {
        loop {
            let n = self.housekeeping.notified();
            if !self.housekeep_once().await {
                n.await;
            }
        }
    }

    /// One round: prepares the next segment if it is not, then deletes
    /// the dead segments beyond those kept for reuse. False when there was
    /// nothing to do.
    pub async fn housekeep_once(&self) -> bool {
        let mut worked = false;
        if let Some(seg) = self.spare_wanted() {
            if !self.prepare_spare(seg).await {
                // Rolls create their segment as before; tried again later.
                glommio::timer::sleep(Duration::from_secs(5)).await;
            }
            worked = true;
        }
        let excess: Vec<u64> = {
            let st = self.st.borrow();
            let keep = if self.spare_unsupported.get() { 0 } else { self.opts.segments_recycled_max as usize };
            st.doomed.iter().copied().take(st.doomed.len().saturating_sub(keep)).collect()
        };
        if !excess.is_empty() {
            self.reclaim(excess).await;
            worked = true;
        }
        worked
    }

    /// The oldest dead segment, if it can be reused (not still open for
    /// writing).
    fn reusable(&self) -> Option<u64> {
        let seg = *self.st.borrow().doomed.first()?;
        let open = self.writer.borrow().file.as_ref().map(|(s, _)| *s);
        (Some(seg) != open && self.opts.segments_recycled_max > 0).then_some(seg)
    }

    /// The segment after the one being written, unless it is prepared
    /// already (or the storage is poisoned).
    fn spare_wanted(&self) -> Option<u64> {
        if self.st.borrow().poisoned.is_some() || self.spare_unsupported.get() {
            return None;
        }
        let seg = self.writer.borrow().file.as_ref().map(|(s, _)| *s)? + 1;
        match &*self.spare.borrow() {
            Some((s, _)) if *s >= seg => None,
            _ => Some(seg),
        }
    }

    async fn prepare_spare(&self, seg: u64) -> bool {
        // A spare left behind by a roll that did not use it goes first: a
        // headerless file below the segments in use would read as damage.
        self.drop_spare().await;
        let path = segment_path(&self.opts.dir, seg);
        // A roll to `seg` meanwhile waits for this (both would create it).
        self.preparing.set(Some(seg));
        let old = self.reusable();
        let made = match old {
            Some(old) => {
                // Gone from the log's books first: it is not a segment of
                // the log any more, whatever happens next.
                self.forget_segments(&[old]);
                let from = segment_path(&self.opts.dir, old);
                let r = self.io.recycle(&from, &path, self.opts.segment_bytes).await;
                if r.is_ok() {
                    self.reused.set(self.reused.get() + 1);
                    tracing::debug!(shard = self.opts.shard, from = old, to = seg, "dead segment reused");
                } else {
                    // Dead either way: whichever name it has left goes.
                    let _ = self.io.remove(&from).await;
                }
                r
            }
            None => self.io.prepare(&path, self.opts.segment_bytes).await,
        };
        let ok = match made {
            Ok(f) => {
                let mut spare = self.spare.borrow_mut();
                debug_assert!(spare.is_none(), "one spare at a time");
                *spare = Some((seg, f));
                true
            }
            Err(e) => {
                let _ = self.io.remove(&path).await;
                if e.kind() == std::io::ErrorKind::Unsupported && old.is_none() {
                    // A filesystem without fallocate: rolls create their
                    // segments, as they did before; said once.
                    tracing::warn!(dir = %self.opts.dir.display(), error = %e, "segments cannot be prepared ahead here; each roll creates its own");
                    self.spare_unsupported.set(true);
                } else {
                    tracing::warn!(file = %path.display(), error = %e, "could not prepare the next segment");
                }
                false
            }
        };
        self.preparing.set(None);
        self.spare_done.notify();
        ok
    }

    /// The prepared segment `seg`, if it is the one prepared (waiting for
    /// it while it is being prepared). A roll to another number leaves
    /// the spare to be deleted.
    pub(super) async fn take_spare(&self, seg: u64) -> Option<Rc<dyn SegmentFile>> {
        loop {
            let n = self.spare_done.notified();
            if self.preparing.get() != Some(seg) {
                break;
            }
            n.await;
        }
        let mut spare = self.spare.borrow_mut();
        match spare.take() {
            Some((s, f)) if s == seg => Some(f),
            other => {
                *spare = other;
                self.housekeeping.notify();
                None
            }
        }
    }

    /// Deletes the prepared segment, if any (at shutdown, or when it is
    /// stale).
    pub(super) async fn drop_spare(&self) {
        let Some((seg, _)) = self.spare.borrow_mut().take() else { return };
        let path = segment_path(&self.opts.dir, seg);
        if let Err(e) = self.io.remove(&path).await {
            // Harmless: recovery deletes an all-zero segment at the end.
            tracing::warn!(file = %path.display(), error = %e, "could not delete the prepared segment");
        }
    }

    /// Deletes dead segments, oldest first, then syncs the directory once.
    async fn reclaim(&self, dead: Vec<u64>) {
        let mut removed = Vec::new();
        for seg in dead {
            let open = self.writer.borrow().file.as_ref().map(|(s, _)| *s);
            if Some(seg) == open {
                break;
            }
            let path = segment_path(&self.opts.dir, seg);
            if let Err(e) = self.io.remove(&path).await {
                tracing::warn!(file = %path.display(), error = %e, "could not delete a dead segment");
                // Found dead again by a later flush, and retried then.
                self.st.borrow_mut().doomed.remove(&seg);
                break;
            }
            removed.push(seg);
        }
        if removed.is_empty() {
            // Nothing went: wait for a later flush rather than spin.
            glommio::timer::sleep(Duration::from_secs(1)).await;
            return;
        }
        if let Err(e) = self.io.sync_dir(&self.opts.dir).await {
            tracing::warn!(error = %e, "could not sync the log directory after deleting segments");
        }
        self.forget_segments(&removed);
        tracing::debug!(shard = self.opts.shard, segments = ?removed, "dead segments deleted");
    }

    /// Drops dead segments from the log's books (deleted or reused).
    fn forget_segments(&self, gone: &[u64]) {
        let mut st = self.st.borrow_mut();
        let mut readers = self.readers.borrow_mut();
        for seg in gone {
            st.doomed.remove(seg);
            st.segs.remove(seg);
            st.compacted.remove(seg);
            st.no_compact.remove(seg);
            readers.remove(seg);
        }
    }
}
