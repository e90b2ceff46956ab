//! Reading spilled entries back: a message over the shard's memory budget
//! keeps only its record's location; before it is delivered, its entry is
//! read back with DMA reads, many records per read (read-ahead), and each
//! record is verified (length, checksum, queue, sequence number).

use super::io::{segment_path, SegmentFile};
use super::log::Storage;
use super::record::verify_publish;
use super::{Loc, StorageError};
use bytes::Bytes;
use std::rc::Rc;

/// Largest single read: a window is cut into reads of this size, all in
/// flight at once; records further apart are read separately too.
const SPAN_MAX: u64 = 512 << 10;
/// Open segment files kept for reads.
const READERS_MAX: usize = 64;

impl<W> Storage<W> {
    /// The entries of the spilled messages `want` (sequence number and
    /// location) of queue `queue`, in the same order.
    pub async fn read_entries(&self, queue: u32, want: &[(u64, Loc)]) -> Result<Vec<Bytes>, StorageError> {
        // Cut into spans: (first index, end index, segment, start, end).
        let mut spans = Vec::new();
        let mut i = 0;
        while i < want.len() {
            let first = want[i].1;
            let start = u64::from(first.off);
            let mut end = start + first.record_len();
            let mut j = i + 1;
            while let Some((_, l)) = want.get(j) {
                let e = u64::from(l.off) + l.record_len();
                if l.seg != first.seg || u64::from(l.off) < end || e - start > SPAN_MAX {
                    break;
                }
                end = e;
                j += 1;
            }
            spans.push((i, j, first.segment(), start, end));
            i = j;
        }
        // Every read in flight at once.
        let mut reads = Vec::with_capacity(spans.len());
        for &(_, _, seg, start, end) in &spans {
            self.wait_written(seg, end).await?;
            let file = self.reader(seg).await?;
            // A span is at most SPAN_MAX or one record (u32 entry length).
            let len = usize::try_from(end - start).map_err(|_| StorageError::BadRead {
                seg,
                off: u32::try_from(start).unwrap_or(u32::MAX),
                why: "read span too large",
            })?;
            let since = std::time::Instant::now();
            let read = glommio::spawn_local(async move { file.read_at(start, len).await });
            reads.push((read, since));
        }
        let mut out = Vec::with_capacity(want.len());
        for (&(i, j, seg, start, _), (read, since)) in spans.iter().zip(reads) {
            let buf = read.await.map_err(|e| StorageError::io(segment_path(&self.opts.dir, seg), e))?;
            self.io_counts.read(buf.len(), since);
            let buf = Bytes::from(buf);
            let seed = self.seed_of(seg);
            for &(seq, l) in &want[i..j] {
                let bad = |why| StorageError::BadRead { seg, off: l.off, why };
                // Offsets within this read: checked, never wrapped.
                let a = u64::from(l.off).checked_sub(start).and_then(|a| usize::try_from(a).ok());
                let n = usize::try_from(l.record_len()).ok();
                let rec = match (a, n) {
                    (Some(a), Some(n)) => a.checked_add(n).and_then(|b| buf.get(a..b)).map(|r| (a, r)),
                    _ => None,
                };
                let (a, rec) = rec.ok_or_else(|| bad("short read"))?;
                let (q, s, range) = verify_publish(rec, seed).map_err(bad)?;
                if q != queue || s != seq {
                    return Err(bad("another message's record"));
                }
                out.push(buf.slice(a + range.start..a + range.end));
            }
        }
        Ok(out)
    }

    /// Waits until the log has written `seg` up to `end`.
    async fn wait_written(&self, seg: u64, end: u64) -> Result<(), StorageError> {
        loop {
            let n = self.flushed.notified();
            let done = {
                let w = self.writer.borrow();
                match w.file.as_ref() {
                    Some((s, _)) => seg < *s || (seg == *s && end <= w.pos),
                    None => false,
                }
            };
            if done {
                return Ok(());
            }
            if let Some(p) = self.poisoned() {
                return Err(StorageError::Poisoned(p));
            }
            self.kick();
            n.await;
        }
    }

    async fn reader(&self, seg: u64) -> Result<Rc<dyn SegmentFile>, StorageError> {
        if let Some((s, f)) = self.writer.borrow().file.as_ref() {
            if *s == seg {
                return Ok(f.clone());
            }
        }
        if let Some(f) = self.readers.borrow().get(&seg) {
            return Ok(f.clone());
        }
        let path = segment_path(&self.opts.dir, seg);
        let f = self.io.open(&path).await.map_err(|e| StorageError::io(&path, e))?;
        let mut r = self.readers.borrow_mut();
        if r.len() >= READERS_MAX {
            r.clear();
        }
        r.insert(seg, f.clone());
        Ok(f)
    }
}
