//! A queue's consumer: credit (prefetch), consecutive delivery tags, and
//! the messages it has not acked yet.

use super::super::types::{ConnRef, Message, QueueError};
use crate::protocol::ErrorCode;
use std::collections::VecDeque;

pub struct Consumer {
    pub owner: ConnRef,
    pub id: u32,
    /// Unacked messages allowed; 0 means no limit (pull consumers).
    prefetch: u32,
    /// Pull consumers (get) are never pushed to.
    pub pull: bool,
    /// The queue's only consumer while it is there (`subscribe_with`).
    pub exclusive: bool,
    /// Consumer priority (AMQP `x-priority`, default 0): dispatch serves
    /// higher ones first and lower ones only while every higher one is
    /// blocked. The queue keeps its consumers ordered by it.
    pub priority: i64,
    /// Its messages count as acked when sent (AMQP basic.consume with
    /// no-ack, which the front end acks): counted apart in the metrics
    /// (`rabbitmq_global_messages_delivered_consume_auto_ack_total`), and
    /// its acks are not counted as a client's acknowledgements.
    pub auto_ack: bool,
    /// When it registered on this queue, counted per queue: a
    /// single-active-consumer queue serves the earliest-registered one,
    /// whatever the priorities.
    pub registered: u64,
    /// Tag of `unacked[0]`; tags are consecutive per consumer from 1.
    pub base_tag: u64,
    /// `None` marks a tag acked out of order; the front is always `Some`.
    pub unacked: VecDeque<Option<Message>>,
    pub unacked_live: u32,
    /// Entry bytes of the live unacked messages (the memory alarm).
    pub unacked_bytes: u64,
    /// Persistent ones among them, and their bytes (operators' figures).
    pub unacked_persistent: (u32, u64),
    /// (first tag, shard ms) of each delivery batch still holding an
    /// unacked message, oldest first: when the oldest unacked message went
    /// out (`consumer_timeout_ms`), kept per batch, not per message.
    sent_at: VecDeque<(u64, u64)>,
    /// A stream consumer's position: the offset it reads next.
    pub stream_next: u64,
    /// A stream consumer behind the stream's in-memory window: entries
    /// read from the log ahead of it (offset, entry), in offset order, at
    /// most `stream_read_ahead_bytes` per read and one read at a time.
    pub stream_ahead: VecDeque<(u64, bytes::Bytes)>,
    pub stream_ahead_bytes: u64,
    /// A read for it is in flight.
    pub stream_reading: bool,
}

impl Consumer {
    pub fn new(owner: ConnRef, id: u32, prefetch: u32, pull: bool) -> Self {
        Self {
            owner,
            id,
            prefetch,
            pull,
            exclusive: false,
            priority: 0,
            auto_ack: false,
            registered: 0,
            base_tag: 1,
            unacked: VecDeque::new(),
            unacked_live: 0,
            unacked_bytes: 0,
            unacked_persistent: (0, 0),
            sent_at: VecDeque::new(),
            stream_next: 0,
            stream_ahead: VecDeque::new(),
            stream_ahead_bytes: 0,
            stream_reading: false,
        }
    }

    /// Unacked messages allowed; 0 means no limit.
    pub fn prefetch(&self) -> u32 {
        self.prefetch
    }

    /// Records that the messages from `first_tag` on went out at `now`.
    /// Marks of batches wholly acked are dropped first, so there are never
    /// more marks than unacked batches.
    pub fn mark_sent(&mut self, first_tag: u64, now: u64) {
        self.prune_marks();
        if self.sent_at.back().is_none_or(|&(_, at)| at != now) {
            self.sent_at.push_back((first_tag, now));
        }
    }

    fn prune_marks(&mut self) {
        while self.sent_at.len() >= 2 && self.sent_at[1].0 <= self.base_tag {
            self.sent_at.pop_front();
        }
    }

    /// When the oldest unacked message went out; `None` when all are acked.
    pub fn oldest_unacked_at(&mut self) -> Option<u64> {
        if self.unacked_live == 0 {
            self.sent_at.clear();
            return None;
        }
        self.prune_marks();
        self.sent_at.front().map(|&(_, at)| at)
    }

    pub fn next_tag(&self) -> u64 {
        self.base_tag + self.unacked.len() as u64
    }

    pub fn credit(&self) -> u32 {
        if self.pull {
            0
        } else if self.prefetch == 0 {
            u32::MAX
        } else {
            self.prefetch.saturating_sub(self.unacked_live)
        }
    }

    pub fn track(&mut self, m: Message) -> u64 {
        let tag = self.next_tag();
        self.unacked_bytes += m.entry.len() as u64;
        if m.persistent {
            let (n, b) = self.unacked_persistent;
            self.unacked_persistent = (n + 1, b + m.entry.len() as u64);
        }
        self.unacked.push_back(Some(m));
        self.unacked_live += 1;
        tag
    }

    /// Checks every tag of every range before touching any, so a bad ack
    /// changes nothing. Native ranges arrive ascending and disjoint (the
    /// decoder refuses others) and AMQP's name each tag once, so this costs
    /// O(ranges) plus, only when some tags were acked out of order, the
    /// tags the ranges hold: never ranges x tags.
    pub fn check_ranges(&self, ranges: &[(u64, u64)]) -> Result<(), QueueError> {
        // No slot is `None`: every tag in [base_tag, next_tag) is unacked.
        let no_holes = self.unacked.len() == self.unacked_live as usize;
        for &(first, last) in ranges {
            if first < self.base_tag || last >= self.next_tag() || first > last {
                return Err(unknown_tag(first, last));
            }
            if no_holes {
                continue;
            }
            // In bounds: both offsets are below `unacked.len()`.
            let (Ok(lo), Ok(hi)) = (usize::try_from(first - self.base_tag), usize::try_from(last - self.base_tag))
            else {
                return Err(unknown_tag(first, last));
            };
            if self.unacked.range(lo..=hi).any(Option::is_none) {
                return Err(unknown_tag(first, last));
            }
        }
        Ok(())
    }

    /// Removes the given tags from the unacked set and returns their messages.
    pub fn take_ranges(&mut self, ranges: &[(u64, u64)], mut each: impl FnMut(Message)) {
        for &(first, last) in ranges {
            for tag in first..=last {
                let i = crate::protocol::wire::usize_of(tag - self.base_tag);
                // A tag repeated across ranges is taken once.
                if let Some(m) = self.unacked[i].take() {
                    self.unacked_live -= 1;
                    self.unacked_bytes = self.unacked_bytes.saturating_sub(m.entry.len() as u64);
                    if m.persistent {
                        let (n, b) = self.unacked_persistent;
                        self.unacked_persistent = (n.saturating_sub(1), b.saturating_sub(m.entry.len() as u64));
                    }
                    each(m);
                }
            }
        }
        while let Some(None) = self.unacked.front() {
            self.unacked.pop_front();
            self.base_tag += 1;
        }
    }

    pub fn drain_unacked(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.unacked_live = 0;
        self.unacked_bytes = 0;
        self.unacked_persistent = (0, 0);
        self.sent_at.clear();
        self.unacked.drain(..).flatten()
    }
}

fn unknown_tag(first: u64, last: u64) -> QueueError {
    QueueError::new(ErrorCode::UnknownDeliveryTag, format!("delivery tags {first}..={last} are not all unacked"))
}

/// One delivery as a front end encodes it, borrowed from the queue.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    pub redelivered: bool,
    pub entry: &'a bytes::Bytes,
    pub origin: Option<&'a std::sync::Arc<crate::server::types::Origin>>,
    /// A buffer `entry` may be a slice of, with the entries stored after
    /// it (a stream's publish batch): consecutive deliveries that lie back
    /// to back in it can be sent as one slice of it.
    pub run: Option<&'a bytes::Bytes>,
}

/// Messages just handed to one consumer, in tag order: borrowed from its
/// unacked store, or for a stream consumer from the stream itself (its
/// unacked store keeps only tags and offsets, no reference to the entry).
#[derive(Clone)]
pub struct Deliveries<'a>(Source<'a>);

#[derive(Clone)]
enum Source<'a> {
    Unacked(std::collections::vec_deque::Iter<'a, Option<Message>>),
    /// The stored messages of the run, in order; those whose entry is
    /// not in memory take theirs from the read-ahead entries, in order.
    Stream(std::slice::Iter<'a, bytes::Bytes>, std::collections::vec_deque::Iter<'a, super::stream::Stored>, Runs<'a>),
}

/// A stream's publish-batch buffers ([`super::stream::Run`]), walked
/// forward alongside the messages being delivered.
#[derive(Clone)]
struct Runs<'a> {
    runs: &'a std::collections::VecDeque<super::stream::Run>,
    /// The first run that may hold the next message.
    at: usize,
}

impl<'a> Runs<'a> {
    /// The buffer holding message `offset`'s entry, if a run covers it.
    fn holding(&mut self, offset: u64) -> Option<&'a bytes::Bytes> {
        while self.runs.get(self.at).is_some_and(|r| r.end <= offset) {
            self.at += 1;
        }
        self.runs.get(self.at).filter(|r| r.first <= offset).map(|r| &r.bytes)
    }
}

impl<'a> Deliveries<'a> {
    pub(super) fn unacked(msgs: std::collections::vec_deque::Iter<'a, Option<Message>>) -> Self {
        Self(Source::Unacked(msgs))
    }

    pub(super) fn stream(
        ahead: &'a [bytes::Bytes],
        run: std::collections::vec_deque::Iter<'a, super::stream::Stored>,
        runs: &'a std::collections::VecDeque<super::stream::Run>,
    ) -> Self {
        let at = run.clone().next().map_or(0, |m| runs.partition_point(|r| r.end <= m.offset));
        Self(Source::Stream(ahead.iter(), run, Runs { runs, at }))
    }
}

impl<'a> Iterator for Deliveries<'a> {
    type Item = Delivery<'a>;

    fn next(&mut self) -> Option<Delivery<'a>> {
        match &mut self.0 {
            // Just tracked, so never acked yet: every slot is `Some`.
            Source::Unacked(it) => it.next().and_then(Option::as_ref).map(|m| Delivery {
                redelivered: m.redelivered,
                entry: &m.entry,
                origin: m.origin.as_ref(),
                run: None,
            }),
            // A stream's deliveries are never redelivered.
            Source::Stream(ahead, run, runs) => {
                let m = run.next()?;
                if m.entry.is_empty() {
                    return Some(Delivery {
                        redelivered: false,
                        entry: ahead.next()?,
                        origin: m.origin.as_ref(),
                        run: None,
                    });
                }
                let run = runs.holding(m.offset);
                Some(Delivery { redelivered: false, entry: &m.entry, origin: m.origin.as_ref(), run })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            Source::Unacked(it) => it.len(),
            Source::Stream(_, run, _) => run.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Deliveries<'_> {}
