//! A stream (`x-queue-type: stream`): messages appended with offsets (the
//! queue's sequence numbers, so the shard's log stores and recovers them
//! as it does any durable queue's), kept by retention, never removed by an
//! ack. Each consumer reads from its own position; the messages are held
//! once, and a delivery is a reference count on the stored entry.
//!
//! The `x-stream-offset` header a delivery carries (as RabbitMQ's do) is
//! written into the entry once, when it is appended, so the log holds it
//! and no delivery copies anything. An entry whose properties are not an
//! AMQP property list (a native publisher's own bytes) is kept as it is.
//!
//! Retention works as RabbitMQ's: the stream is cut into segments of
//! `x-stream-max-segment-size-bytes` of entries; after each append, whole
//! segments are dropped oldest first, never the one being written, while
//! the stream is over `x-max-length-bytes` or the segment's newest message
//! is older than `x-max-age`. What retention drops is handed to the shard
//! (`take_stream_dropped`), which logs it gone so the log reclaims it.

use super::super::types::{ConnRef, Message, Origin, QueueError, StreamOffset, StreamStart};
use super::consumer::{Consumer, Deliveries};
use super::dispatch::{delivery_cost, Dispatched};
use super::{Out, Queue};
use crate::protocol::batch::{parse_entry, put_entry};
use crate::protocol::field_table::Value;
use crate::protocol::props::{self, Props};
use crate::protocol::Entry;
use crate::protocol::ErrorCode;
use crate::storage::Loc;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// RabbitMQ's default `x-stream-max-segment-size-bytes` (500 MB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 500_000_000;

pub(super) struct Stored {
    pub(super) offset: u64,
    /// Wall-clock milliseconds when it was appended (logged per chunk;
    /// recovered from a log written before chunk records: the recovery's).
    at_ms: u64,
    /// The first message of a publish batch (a chunk): where `last` starts.
    chunk: bool,
    /// The entry, or empty when it is only on disk (behind the stream's
    /// in-memory window: read back from `loc`).
    pub(super) entry: Bytes,
    /// Where its publish record is in the log (`None`: not logged, so it
    /// stays in memory).
    pub(super) loc: Option<Loc>,
    /// The exchange and routing key it was published with (`None`: the
    /// default exchange and the stream's name), as a classic queue's
    /// `Message::origin`: shared by a batch, logged once per batch.
    pub(super) origin: Option<Arc<Origin>>,
}

impl Stored {
    /// The entry's length, in memory or not (a message without its entry
    /// has a location).
    fn len(&self) -> usize {
        self.loc.map_or(self.entry.len(), |l| crate::protocol::wire::usize_of(u64::from(l.len)))
    }
}

/// What one message of a stream costs in memory besides its entry (the
/// memory alarm's count).
pub const STORED_BYTES: u64 = std::mem::size_of::<Stored>() as u64;
// docs/streams.md and operations.md say about 72 bytes a message.
const _: () = assert!(STORED_BYTES <= 72);

/// One publish batch's marked entries in one buffer (`mark_batch`): the
/// messages `first..end` whose entries are slices of `bytes` lie in it in
/// offset order, back to back. Kept while any of them is in memory.
pub(super) struct Run {
    pub(super) first: u64,
    pub(super) end: u64,
    pub(super) bytes: Bytes,
}

/// One retention segment: `count` messages from `first_index` on.
struct Segment {
    count: usize,
    bytes: u64,
    newest_ms: u64,
}

#[derive(Default)]
pub struct Stream {
    pub(super) msgs: VecDeque<Stored>,
    /// Entry bytes held in memory, and the window they are kept under
    /// (`stream_memory_bytes_max`): past it, the oldest in memory are
    /// dropped to their `loc`. Before `hot_from`, nothing is in memory.
    pub(super) hot_bytes: u64,
    pub(super) hot_from: usize,
    pub(super) memory_max: u64,
    /// Consumers behind the window that need a read from the log.
    pub(super) wants_read: Vec<(ConnRef, u32)>,
    /// The publish batches' buffers, in offset order, while some of their
    /// entries are in memory (`Run`).
    pub(super) runs: VecDeque<Run>,
    segments: VecDeque<Segment>,
    bytes: u64,
    max_bytes: Option<u64>,
    max_age_ms: Option<u64>,
    segment_bytes: u64,
    /// Dropped by retention since the shard last asked: (offset, entry length).
    dropped: Vec<(u64, usize)>,
    /// Server-side offset tracking: the offset stored per reference.
    tracked: HashMap<String, u64>,
    /// The last publish batch, for the log's chunk record: (first, count,
    /// at_ms).
    chunk: Option<(u64, u32, u64)>,
    /// Recovery: the logged chunks not yet reached, in offset order, and
    /// the first offset of the one being restored.
    restoring: VecDeque<(u64, u32, u64)>,
    restoring_first: Option<u64>,
}

impl Stream {
    pub fn new(max_bytes: Option<u64>, max_age_ms: Option<u64>, segment_bytes: Option<u64>) -> Self {
        Self {
            max_bytes,
            max_age_ms,
            segment_bytes: segment_bytes.unwrap_or(SEGMENT_BYTES_DEFAULT),
            memory_max: u64::MAX,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The oldest offset held, if any.
    pub fn first_offset(&self) -> Option<u64> {
        self.msgs.front().map(|m| m.offset)
    }

    fn push(
        &mut self,
        offset: u64,
        at_ms: u64,
        chunk: bool,
        entry: Bytes,
        loc: Option<Loc>,
        origin: Option<Arc<Origin>>,
    ) {
        let len = loc.map_or(entry.len() as u64, |l| u64::from(l.len));
        let roll = self.segments.back().is_none_or(|s| s.bytes >= self.segment_bytes);
        if roll {
            self.segments.push_back(Segment { count: 0, bytes: 0, newest_ms: at_ms });
        }
        if let Some(s) = self.segments.back_mut() {
            s.count += 1;
            s.bytes += len;
            s.newest_ms = s.newest_ms.max(at_ms);
        }
        self.bytes += len;
        self.hot_bytes += entry.len() as u64;
        self.msgs.push_back(Stored { offset, at_ms, chunk, entry, loc, origin });
        self.demote();
    }

    /// Drops whole segments, oldest first and never the last, while the
    /// stream is over its byte limit or a segment is past its age.
    fn retain(&mut self, now_ms: u64) {
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else { break };
            let over = self.max_bytes.is_some_and(|m| self.bytes > m);
            let old = self.max_age_ms.is_some_and(|a| now_ms.saturating_sub(oldest.newest_ms) > a);
            if !over && !old {
                break;
            }
            let n = oldest.count;
            self.bytes = self.bytes.saturating_sub(oldest.bytes);
            self.segments.pop_front();
            let n = n.min(self.msgs.len());
            self.hot_from = self.hot_from.saturating_sub(n);
            for m in self.msgs.drain(..n) {
                self.hot_bytes -= m.entry.len() as u64;
                self.dropped.push((m.offset, m.len()));
            }
        }
    }

    /// Recovery, messages in offset order: when `seq` was appended and
    /// whether it starts a chunk (the first of its chunk that is left),
    /// from the logged chunks; without one (an older log), now, and a
    /// chunk of its own.
    fn restored_time(&mut self, seq: u64) -> (u64, bool) {
        while self.restoring.front().is_some_and(|&(f, n, _)| f + u64::from(n) <= seq) {
            self.restoring.pop_front();
        }
        match self.restoring.front() {
            Some(&(first, _, at_ms)) if first <= seq => {
                let starts = self.restoring_first != Some(first);
                self.restoring_first = Some(first);
                (at_ms, starts)
            }
            _ => (wall_ms(), true),
        }
    }

    /// The index of the first message at or after `offset`.
    fn index_of(&self, offset: u64) -> usize {
        self.msgs.partition_point(|m| m.offset < offset)
    }

    /// The offset a consumer starting at `at` reads first; `next` is the
    /// offset the next append gets.
    fn start(&self, at: StreamOffset, next: u64) -> u64 {
        let first = self.first_offset().unwrap_or(next);
        match at {
            StreamOffset::First => first,
            StreamOffset::Next => next,
            StreamOffset::Last => self.msgs.iter().rev().find(|m| m.chunk).map_or(next, |m| m.offset),
            // Not `clamp`: it panics if its bounds cross, and this must never.
            StreamOffset::Offset(o) => o.max(first).min(next),
            StreamOffset::Timestamp(ms) => {
                let i = self.msgs.partition_point(|m| m.at_ms < ms);
                self.msgs.get(i).map_or(next, |m| m.offset)
            }
        }
    }
}

/// `entry` with the `x-stream-offset` header set (a signed long, as
/// RabbitMQ's), or as it is when its properties are not AMQP's or the new
/// ones would not fit the entry's `u16` length.
pub fn with_offset_header(entry: &Bytes, offset: u64) -> Bytes {
    let Some(props) = marked_props(entry, offset) else { return entry.clone() };
    let mut out = BytesMut::new();
    put_marked(&mut out, entry, &props);
    out.freeze()
}

/// The properties `entry` is stored with in a stream: its own with the
/// `x-stream-offset` header set; `None` when it is kept as it is.
fn marked_props(entry: &[u8], offset: u64) -> Option<Vec<u8>> {
    let e = parse_entry(entry).ok()?;
    let parsed = if e.props.is_empty() { None } else { Props::parse(e.props).ok() };
    if parsed.is_none() && !e.props.is_empty() {
        return None;
    }
    let mut headers = parsed.and_then(|p| p.headers).unwrap_or_default();
    headers.set("x-stream-offset", Value::I64(i64::try_from(offset).unwrap_or(i64::MAX)));
    let new_props = props::rewrite(e.props, &headers, false).ok()?;
    (new_props.len() <= usize::from(u16::MAX)).then_some(new_props)
}

/// Appends `entry` (which parses: `marked_props` gave `props` for it)
/// with its properties replaced by `props`.
fn put_marked(out: &mut BytesMut, entry: &[u8], props: &[u8]) {
    let body = parse_entry(entry).map_or(&[][..], |e| e.body);
    out.reserve(Entry::wire_len(props.len(), body.len()));
    put_entry(out, 0, props, body);
}

/// A publish batch's entries as marked for the stream, written one after
/// another into one buffer of exactly their size (a *run*), so that
/// consecutive deliveries of them are one slice of it (`native::encode`:
/// one reference and one `iovec` for many entries). An entry kept as it
/// came (opaque properties) stays its own buffer.
fn mark_batch(entries: impl Iterator<Item = Bytes>, first: u64, n: usize) -> (Bytes, Vec<Marked>) {
    let mut kept = Vec::with_capacity(n);
    let mut size = 0;
    for (entry, offset) in entries.zip(first..) {
        let props = marked_props(&entry, offset);
        if let (Some(p), Ok(e)) = (&props, parse_entry(&entry)) {
            size += Entry::wire_len(p.len(), e.body.len());
        }
        kept.push((entry, props));
    }
    let mut run = BytesMut::with_capacity(size);
    let mut marked = Vec::with_capacity(n);
    for (entry, props) in kept {
        match props {
            Some(p) => {
                let at = run.len();
                put_marked(&mut run, &entry, &p);
                marked.push(Marked::InRun(at, run.len()));
            }
            None => marked.push(Marked::Kept(entry)),
        }
    }
    (run.freeze(), marked)
}

enum Marked {
    /// `run[from..to]`.
    InRun(usize, usize),
    Kept(Bytes),
}

fn unsupported(what: &str, queue: &str) -> QueueError {
    QueueError::new(
        ErrorCode::StreamUnsupported,
        format!("{what} not supported by stream queues queue {}", crate::routing::vhost::describe(queue)),
    )
}

fn wall_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    crate::protocol::wire::u64_of(since.as_millis())
}

impl Queue {
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Messages the stream holds (0 for a classic queue).
    pub fn stream_len(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.len())
    }

    /// Entry bytes the stream holds (0 for a classic queue).
    pub fn stream_bytes(&self) -> u64 {
        self.stream.as_ref().map_or(0, |s| s.bytes())
    }

    /// Refuses what a stream does not do (basic.get, purge), as RabbitMQ.
    pub fn refuse_on_stream(&self, what: &str) -> Result<(), QueueError> {
        match self.stream {
            Some(_) => Err(unsupported(what, &self.name)),
            None => Ok(()),
        }
    }

    /// The publish batch just appended to the stream, for the log's chunk
    /// record: (first offset, count, appended at, Unix ms).
    pub fn take_stream_chunk(&mut self) -> Option<(u64, u32, u64)> {
        self.stream.as_mut().and_then(|s| s.chunk.take())
    }

    /// Recovery, before the messages: the stream's logged chunks (first,
    /// count, at_ms), in offset order.
    pub fn restore_stream_chunks(&mut self, chunks: Vec<(u64, u32, u64)>) {
        if let Some(s) = self.stream.as_mut() {
            s.restoring = chunks.into();
        }
    }

    /// Recovery is over: retention as at the last append (by the logged
    /// times, `x-max-age` may now drop more); the drops are for the log.
    pub fn stream_restored(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            s.restoring = VecDeque::new();
            s.restoring_first = None;
            s.retain(wall_ms());
        }
    }

    /// What retention dropped since the last call: (offset, entry length),
    /// for the log.
    pub fn take_stream_dropped(&mut self) -> Vec<(u64, usize)> {
        self.stream.as_mut().map(|s| std::mem::take(&mut s.dropped)).unwrap_or_default()
    }

    /// Appends a batch to the stream as one chunk, each entry given its
    /// offset header; `stored` sees what is kept (the log). Then retention.
    pub(super) fn stream_publish(
        &mut self,
        entries: impl ExactSizeIterator<Item = Bytes>,
        origin: Option<&Arc<Origin>>,
        mut stored: impl FnMut(u64, &Bytes),
    ) -> Result<u32, QueueError> {
        let n = entries.len();
        let held = self.stream_len() as u64;
        if held.saturating_add(n as u64) > self.limits.messages_max {
            return Err(QueueError::new(
                ErrorCode::QueueFull,
                format!(
                    "stream '{}' holds {held} messages; {n} more would pass queue_messages_max {} (set x-max-length-bytes or x-max-age)",
                    self.name, self.limits.messages_max
                ),
            ));
        }
        let Some(s) = self.stream.as_mut() else { return Ok(0) };
        let now = wall_ms();
        if n > 0 {
            s.chunk = Some((self.next_seq, crate::protocol::wire::len32(n), now));
        }
        let (run, marked) = mark_batch(entries, self.next_seq, n);
        if !run.is_empty() {
            s.runs.push_back(Run { first: self.next_seq, end: self.next_seq + n as u64, bytes: run.clone() });
        }
        for (i, m) in marked.into_iter().enumerate() {
            let entry = match m {
                Marked::InRun(from, to) => run.slice(from..to),
                Marked::Kept(entry) => entry,
            };
            stored(self.next_seq, &entry);
            // Located after the batch (`stream_locate`): not demoted before.
            s.push(self.next_seq, now, i == 0, entry, None, origin.cloned());
            self.next_seq += 1;
        }
        s.retain(now);
        s.drop_cold_runs();
        self.published_total += n as u64;
        Ok(crate::protocol::wire::len32(n))
    }

    /// Stores `offset` under `reference` (server-side offset tracking), at
    /// most `refs_max` references per stream. Offsets are the log's
    /// sequence numbers: below 2^62.
    pub fn store_offset(&mut self, reference: &str, offset: u64, refs_max: usize) -> Result<(), QueueError> {
        let queue = crate::routing::vhost::describe(&self.name);
        let Some(s) = self.stream.as_mut() else {
            return Err(QueueError::new(ErrorCode::InvalidArgument, format!("queue {queue} is not a stream")));
        };
        if reference.is_empty() || reference.len() > crate::storage::STREAM_REFERENCE_BYTES_MAX {
            return Err(QueueError::new(ErrorCode::InvalidArgument, "an offset reference is 1..=255 bytes"));
        }
        if offset >= crate::storage::SEQ_LIMIT {
            return Err(QueueError::new(ErrorCode::InvalidArgument, format!("offset {offset} is past 2^62")));
        }
        if !s.tracked.contains_key(reference) && s.tracked.len() >= refs_max {
            return Err(QueueError::new(
                ErrorCode::InvalidArgument,
                format!("stream {queue} holds offsets for stream_offset_refs_max = {refs_max} references"),
            ));
        }
        s.tracked.insert(reference.to_owned(), offset);
        Ok(())
    }

    /// The offset stored under `reference`.
    pub fn stored_offset(&self, reference: &str) -> Result<u64, QueueError> {
        let queue = crate::routing::vhost::describe(&self.name);
        let Some(s) = self.stream.as_ref() else {
            return Err(QueueError::new(ErrorCode::InvalidArgument, format!("queue {queue} is not a stream")));
        };
        s.tracked.get(reference).copied().ok_or_else(|| {
            QueueError::new(ErrorCode::OffsetNotFound, format!("no offset stored for {reference:?} on stream {queue}"))
        })
    }

    /// Recovery: an offset the log stored.
    pub fn restore_offset(&mut self, reference: String, offset: u64) {
        if let Some(s) = self.stream.as_mut() {
            s.tracked.insert(reference, offset);
        }
    }

    /// Recovery: a message of the stream, in offset order; `entry` empty
    /// when it was left on disk at `loc`; `origin` as the log recorded it.
    pub fn stream_restore(&mut self, seq: u64, entry: Bytes, loc: Option<Loc>, origin: Option<Arc<Origin>>) {
        if let Some(s) = self.stream.as_mut() {
            let (at_ms, chunk) = s.restored_time(seq);
            s.memory_max = self.limits.stream_memory_bytes_max;
            s.push(seq, at_ms, chunk, entry, loc, origin);
        }
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// A stream consumer: RabbitMQ's checks (manual acks, a prefetch),
    /// then its position from `start.offset`.
    pub fn subscribe_stream(
        &mut self,
        owner: ConnRef,
        id: u32,
        prefetch: u32,
        start: StreamStart,
    ) -> Result<(), QueueError> {
        let Some(s) = self.stream.as_ref() else { return Ok(()) };
        let queue = crate::routing::vhost::describe(&self.name);
        if start.no_ack {
            return Err(QueueError::new(
                ErrorCode::StreamUnsupported,
                format!("automatic acknowledgement not supported by stream queues queue {queue}"),
            ));
        }
        if !start.prefetch_set || prefetch == 0 {
            return Err(QueueError::new(
                ErrorCode::InvalidArgument,
                format!("consumer prefetch count is not set for queue {queue}"),
            ));
        }
        if self.consumer_index(owner, id).is_some() {
            return Err(QueueError::new(
                ErrorCode::ConsumerExists,
                format!("consumer {id} already exists on this connection"),
            ));
        }
        let mut c = Consumer::new(owner, id, prefetch, false);
        c.stream_next = s.start(start.offset, self.next_seq);
        self.insert_consumer(c);
        self.had_consumers = true;
        Ok(())
    }

    /// Dispatch for a stream: each consumer reads on from its own position
    /// as far as its credit and its connection's room allow. What it gets
    /// is tracked as unacked by tag and offset only (an ack only gives the
    /// credit back): the deliveries borrow the stored entries, so a
    /// delivery takes no reference count here; the connection takes one
    /// if it sends the entry by reference.
    pub(super) fn dispatch_stream(&mut self, out: Out<'_>, room: &dyn Fn(ConnRef) -> usize, now: u64) -> Dispatched {
        let mut done = Dispatched::default();
        let ra = self.limits.stream_read_ahead_bytes;
        let Some(s) = self.stream.as_mut() else { return done };
        // Entries taken from a consumer's read-ahead (from the log), held
        // for the one call of `out`.
        let mut ahead: Vec<Bytes> = Vec::new();
        for c in self.consumers.iter_mut().filter(|c| !c.pull) {
            let mut credit = c.credit();
            let mut i = s.index_of(c.stream_next);
            if credit == 0 || i >= s.msgs.len() {
                continue;
            }
            let mut bytes = room(c.owner);
            if bytes == 0 {
                done.skipped = true;
                continue;
            }
            let first = c.next_tag();
            ahead.clear();
            let from = i;
            while credit > 0 && bytes > 0 {
                let Some(m) = s.msgs.get(i) else { break };
                let len = if m.entry.is_empty() {
                    // Read ahead from the log; else a read is asked for
                    // (once) and this consumer waits for it.
                    let Some(entry) = super::stream_read::entry_from_log(c, m) else { break };
                    let len = entry.len();
                    ahead.push(entry);
                    len
                } else {
                    m.entry.len()
                };
                bytes = bytes.saturating_sub(delivery_cost(len));
                credit -= 1;
                c.track(Message::new(m.offset, Bytes::new(), false));
                c.stream_next = m.offset + 1;
                i += 1;
            }
            // Behind the window: the next read asked for ahead of need.
            if super::stream_read::wants_read(c, s.msgs.get(i), ra) && !s.wants_read.contains(&(c.owner, c.id)) {
                s.wants_read.push((c.owner, c.id));
            }
            let count = c.next_tag() - first;
            if count == 0 {
                continue;
            }
            c.mark_sent(first, now);
            out(c.owner, c.id, first, Deliveries::stream(&ahead, s.msgs.range(from..i), &s.runs));
            done.sent += crate::protocol::wire::usize_of(count);
            if bytes == 0 {
                done.full.push(c.owner);
            }
        }
        self.delivered_total += done.sent as u64;
        done
    }
}
