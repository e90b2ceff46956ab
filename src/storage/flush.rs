//! The flush: everything pending written with one O_DIRECT write per
//! segment touched, one fdatasync (policy permitting), the waiters of that
//! flush handed back; and the final flush at close.

use super::io::segment_path;
use super::log::{Chunk, Flushed, Storage, Writer};
use super::poison::drop_acks;
use super::record::{align_block, encode, to_ranges, Record};
use super::{FsyncPolicy, StorageError};
use std::time::{Duration, Instant};

impl<W> Storage<W> {
    pub(super) fn interval(&self) -> Duration {
        Duration::from_millis(self.opts.fsync_interval_ms)
    }

    /// Writes and (per policy) syncs everything pending, then hands the
    /// dead segments to the reclaimer. One flush at a time.
    pub async fn flush(&self) -> Flushed<W> {
        let _permit = self.lock.acquire_permit(1).await.expect("the flush lock is never closed");
        let (chunks, waiters, dead) = {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            if st.poisoned.is_some() {
                drop_acks(st);
            }
            if st.acks_pending {
                st.acks_pending = false;
                let mut ids: Vec<u32> = st.queues.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    let mut acks = std::mem::take(&mut st.queues.get_mut(&id).expect("listed").acks);
                    if !acks.is_empty() {
                        let ranges = to_ranges(&mut acks);
                        self.put(st, |b, seed| encode(b, seed, &Record::Ack { queue: id, ranges }));
                    }
                }
            }
            let chunks = std::mem::take(&mut st.chunks);
            if let Some(c) = chunks.last() {
                st.tail_bytes += (align_block(c.bytes.len()) - c.bytes.len()) as u64;
            }
            let dead: Vec<u64> = st
                .segs
                .iter()
                .take_while(|(s, i)| **s < st.tail_seg && i.live.count == 0)
                .map(|(s, _)| *s)
                .filter(|s| !st.doomed.contains(s))
                .collect();
            (chunks, std::mem::take(&mut st.waiters), dead)
        };
        if let Some(p) = self.poisoned() {
            self.flushed.notify();
            return Flushed { waiters, result: Err(p) };
        }
        let sync_due = {
            let st = self.st.borrow();
            // Compacted segments go only once their copies are synced.
            dead.iter().any(|s| st.compacted.contains(s))
                || match self.opts.fsync {
                    FsyncPolicy::Always => true,
                    FsyncPolicy::Interval => st.last_sync.elapsed() >= self.interval(),
                    FsyncPolicy::Never => false,
                }
        };
        self.writing.set(chunks.iter().map(|c| c.bytes.len()).sum());
        let written = self.write_chunks(chunks, sync_due).await;
        self.writing.set(0);
        if let Err(e) = written {
            let msg = self.poison(&e);
            self.flushed.notify();
            return Flushed { waiters, result: Err(msg) };
        }
        self.flushed.notify();
        if !dead.is_empty() {
            self.st.borrow_mut().doomed.extend(dead);
            self.housekeeping.notify();
        }
        Flushed { waiters, result: Ok(()) }
    }

    async fn write_chunks(&self, chunks: Vec<Chunk>, sync_due: bool) -> Result<(), StorageError> {
        for c in chunks {
            let c = self.write_chunk(c).await?;
            self.st.borrow_mut().keep_chunk_buf(c.bytes);
        }
        let dirty = self.st.borrow().dirty;
        let file = self.writer.borrow().file.clone();
        if let (true, true, Some((seg, file))) = (dirty, sync_due, file) {
            let t = Instant::now();
            file.fdatasync().await.map_err(|e| StorageError::io(segment_path(&self.opts.dir, seg), e))?;
            self.count_sync(t);
            let mut st = self.st.borrow_mut();
            st.dirty = false;
            st.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Writes one chunk at the writer's position (opening its segment
    /// first when it is the next one); hands the chunk back.
    async fn write_chunk(&self, mut c: Chunk) -> Result<Chunk, StorageError> {
        let current = self.writer.borrow().file.as_ref().map(|(s, _)| *s);
        if current != Some(c.seg) {
            let old = self.writer.borrow_mut().file.take();
            if let Some((seg, old)) = old {
                // Sealed: make it whole before anything lands after it.
                let t = Instant::now();
                old.fdatasync().await.map_err(|e| StorageError::io(segment_path(&self.opts.dir, seg), e))?;
                self.count_sync(t);
            }
            let path = segment_path(&self.opts.dir, c.seg);
            let f = match self.take_spare(c.seg).await {
                Some(f) => f,
                None => {
                    let f = self.io.create(&path).await.map_err(|e| StorageError::io(&path, e))?;
                    self.io.sync_dir(&self.opts.dir).await.map_err(|e| StorageError::io(&self.opts.dir, e))?;
                    f
                }
            };
            *self.writer.borrow_mut() = Writer { file: Some((c.seg, f)), pos: 0 };
            // The next one is prepared while this one fills.
            self.housekeeping.notify();
        }
        let (file, pos) = {
            let w = self.writer.borrow();
            (w.file.as_ref().expect("opened above").1.clone(), w.pos)
        };
        let len = align_block(c.bytes.len());
        c.bytes.resize(len, 0);
        let path = || segment_path(&self.opts.dir, c.seg);
        let since = Instant::now();
        file.write_at(&c.bytes, pos).await.map_err(|e| StorageError::io(path(), e))?;
        self.io_counts.write(len, since);
        self.writer.borrow_mut().pos = pos + len as u64;
        self.st.borrow_mut().dirty = true;
        Ok(c)
    }

    /// Clean shutdown: seals the tail segment, flushes and syncs
    /// everything, whatever the policy, and deletes the prepared segment.
    /// The next start has no torn tail to cut. (Appends after it would go
    /// to a new segment.)
    pub async fn close(&self) -> Flushed<W> {
        {
            let mut st = self.st.borrow_mut();
            if st.poisoned.is_none() {
                self.seal(&mut st);
            }
        }
        let f = self.sync_all().await;
        self.drop_spare().await;
        f
    }

    /// Flushes and syncs everything, whatever the policy.
    pub async fn sync_all(&self) -> Flushed<W> {
        let f = self.flush().await;
        if f.result.is_ok() && self.st.borrow().dirty {
            let file = self.writer.borrow().file.clone();
            if let Some((_, file)) = file {
                if let Err(e) = file.fdatasync().await {
                    let e = StorageError::io(&self.opts.dir, e);
                    return Flushed { waiters: f.waiters, result: Err(self.poison(&e)) };
                }
            }
            self.st.borrow_mut().dirty = false;
        }
        f
    }
}
