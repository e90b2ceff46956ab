//! Per-channel state: the message being published, the publish batch
//! being built, publisher confirms in tag order, the map from the channel's
//! delivery tags to (consumer, queue-level tag), deliveries held back by
//! prefetch or flow, and the synchronous methods awaiting their replies.

use crate::protocol::amqp::method::MethodId;
use crate::server::types::Reply;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// A basic.publish whose header or body frames are still arriving.
pub struct Content {
    pub persistent: bool,
    pub mandatory: bool,
    pub body_len: usize,
    /// True once the content header has arrived.
    pub have_header: bool,
    /// The publish named the last batch's target (`batch_exchange`,
    /// `batch_queue`, `batch_mandatory`): its names were not copied.
    pub same_target: bool,
}

/// Consecutive complete messages for one queue, back to back in `arena`.
pub struct PubBatch {
    pub persistent: bool,
    pub mandatory: bool,
    pub count: u32,
    /// Bytes of `arena` the batch occupies.
    pub len: usize,
    /// Channel publish sequence of the first message.
    pub first_seq: u64,
}

/// A publish batch sent with `confirm` set, awaiting the owner's answer.
pub struct Outstanding {
    pub first_seq: u64,
    pub count: u32,
    /// Whether the client asked for confirms on this channel.
    pub confirm: bool,
    /// For mandatory batches: what to return if unroutable.
    pub returns: Option<Returned>,
    pub result: Option<Settled>,
}

/// A mandatory batch kept for basic.return: exchange, routing key, entries.
pub struct Returned {
    pub exchange: String,
    pub key: String,
    pub entries: Bytes,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Ack,
    /// Unroutable: returned if mandatory, then acked (RabbitMQ's behaviour).
    NoRoute,
    Nack,
}

/// What a synchronous method waits for.
pub enum OpKind {
    Declare {
        queue: String,
        exclusive: bool,
        no_wait: bool,
    },
    Purge {
        no_wait: bool,
    },
    Delete {
        no_wait: bool,
    },
    Consume {
        consumer_id: u32,
        no_wait: bool,
    },
    Get {
        consumer_id: u32,
        no_ack: bool,
        queue: String,
    },
    /// tx.commit: mandatory publishes (by index) to return if the commit
    /// finds they reached no queue, before commit-ok.
    Commit {
        returns: Vec<(u32, Returned)>,
    },
    /// A method whose -ok has no fields (exchange and binding methods).
    Simple {
        ok: MethodId,
        cause: MethodId,
        no_wait: bool,
    },
}

pub struct Op {
    pub seq: u64,
    pub kind: OpKind,
    pub result: Option<Reply>,
}

/// A delivery that arrived while it could not go out yet.
pub struct Held {
    pub consumer_id: u32,
    pub qtag: u64,
    pub redelivered: bool,
    pub entry: Bytes,
    pub origin: Option<std::sync::Arc<crate::server::types::Origin>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChState {
    Open,
    /// The server sent channel.close and waits for close-ok.
    Closing,
}

pub struct Channel {
    pub state: ChState,
    /// channel.flow from the client: false stops deliveries.
    pub flow: bool,
    pub confirm: bool,
    /// Publishes on this channel so far; confirm tags are `seq - confirm_base`.
    pub pub_seq: u64,
    pub confirm_base: u64,
    /// Messages published on this channel, counted per batch sent
    /// (`/api/channels`, the operators' per-channel series).
    pub received: u64,
    pub outstanding: VecDeque<Outstanding>,
    pub content: Option<Content>,
    /// Exchange and routing key of the message being published.
    pub content_exchange: String,
    /// `content_exchange` scoped by the connection's vhost: the table's key.
    pub content_exchange_key: String,
    pub content_queue: String,
    pub content_props: Vec<u8>,
    /// Body of a message that spans several body frames.
    pub content_body: BytesMut,
    pub arena: BytesMut,
    pub batch: Option<PubBatch>,
    /// Routing key, exchange and mandatory flag of the batch being built,
    /// kept once it is sent: the next publishes to the same target skip
    /// the checks and copies of their names (`has_target`: there was one).
    pub batch_queue: String,
    pub batch_exchange: String,
    /// `batch_exchange` scoped by the connection's vhost: the table's key,
    /// looked up for every publish to the batch.
    pub batch_exchange_key: String,
    pub batch_mandatory: bool,
    pub has_target: bool,
    pub prefetch_consumer: u16,
    pub prefetch_channel: u16,
    /// Delivery tag of `tags[0]`; tags count from 1.
    pub tag_base: u64,
    pub tags: VecDeque<Option<(u32, u64)>>,
    /// `Some` entries in `tags`: unacked deliveries on the channel.
    pub unacked: u32,
    pub held: VecDeque<Held>,
    pub ops: VecDeque<Op>,
    pub next_op: u64,
    /// Consumer ids opened on this channel (push, cancelled and pull).
    pub consumers: Vec<u32>,
    /// Pull consumers used by basic.get, one per queue.
    pub getters: Vec<(String, u32)>,
    /// After tx.select: the transaction being built (`tx.rs`).
    pub tx: Option<Box<super::tx::Tx>>,
    /// The generated name of its direct reply-to consumer, if it has one
    /// (`reply_to.rs`): what a `reply_to` of the pseudo-queue becomes.
    pub reply_to: Option<String>,
}

impl Channel {
    pub fn new() -> Self {
        Self {
            state: ChState::Open,
            flow: true,
            confirm: false,
            pub_seq: 0,
            received: 0,
            confirm_base: 0,
            outstanding: VecDeque::new(),
            content: None,
            content_exchange: String::new(),
            content_exchange_key: String::new(),
            content_queue: String::new(),
            content_props: Vec::new(),
            content_body: BytesMut::new(),
            arena: BytesMut::new(),
            batch: None,
            batch_queue: String::new(),
            batch_exchange: String::new(),
            batch_exchange_key: String::new(),
            batch_mandatory: false,
            has_target: false,
            prefetch_consumer: 0,
            prefetch_channel: 0,
            tag_base: 1,
            tags: VecDeque::new(),
            unacked: 0,
            held: VecDeque::new(),
            ops: VecDeque::new(),
            next_op: 1,
            consumers: Vec::new(),
            getters: Vec::new(),
            tx: None,
            reply_to: None,
        }
    }

    /// Whether a publish goes where the last batch went (it joins the
    /// batch being built unless its persistence differs).
    pub fn batch_takes(&self, exchange: &[u8], routing_key: &[u8], mandatory: bool) -> bool {
        self.has_target
            && self.batch_mandatory == mandatory
            && same_bytes(routing_key, self.batch_queue.as_bytes())
            && same_bytes(exchange, self.batch_exchange.as_bytes())
    }

    pub fn next_tag(&self) -> u64 {
        self.tag_base + self.tags.len() as u64
    }

    /// Gives the next delivery tag to a message; `track` is `None` for
    /// no-ack deliveries, which are never acked by the client.
    pub fn assign_tag(&mut self, track: Option<(u32, u64)>) -> u64 {
        let tag = self.next_tag();
        if track.is_none() && self.tags.is_empty() {
            self.tag_base += 1;
            return tag;
        }
        if track.is_some() {
            self.unacked += 1;
        }
        self.tags.push_back(track);
        tag
    }

    /// Whether the channel-wide prefetch leaves room for one more.
    pub fn has_credit(&self) -> bool {
        self.prefetch_channel == 0 || self.unacked < u32::from(self.prefetch_channel)
    }

    /// Takes the tags an ack or nack covers; `None` if `tag` is not an
    /// unacked delivery of this channel (and nothing is taken).
    /// `tag == 0` with `multiple` means every unacked delivery.
    #[inline]
    pub fn take_tags(&mut self, tag: u64, multiple: bool, mut each: impl FnMut(u32, u64)) -> Option<usize> {
        self.take_tags_numbered(tag, multiple, |_, cid, q| each(cid, q))
    }

    /// [`Channel::take_tags`], telling `each` the delivery tag too.
    pub fn take_tags_numbered(
        &mut self,
        tag: u64,
        multiple: bool,
        mut each: impl FnMut(u64, u32, u64),
    ) -> Option<usize> {
        let hi = if tag == 0 && multiple {
            if self.tags.is_empty() {
                return Some(0);
            }
            self.tags.len() - 1
        } else {
            let i = usize::try_from(tag.checked_sub(self.tag_base)?).ok()?;
            self.tags.get(i)?.as_ref()?;
            i
        };
        let lo = if multiple { 0 } else { hi };
        let mut n = 0;
        let first = self.tag_base + lo as u64;
        for (slot, tag) in self.tags.range_mut(lo..=hi).zip(first..) {
            if let Some((cid, qtag)) = slot.take() {
                each(tag, cid, qtag);
                n += 1;
            }
        }
        self.unacked = self.unacked.saturating_sub(crate::protocol::wire::len32(n));
        while let Some(None) = self.tags.front() {
            self.tags.pop_front();
            self.tag_base += 1;
        }
        Some(n)
    }

    /// Puts back a delivery a transaction had taken (`take_tags`) and
    /// rolled back: it is unacked again under its tag. Tags must come
    /// back lowest first, so the front slot is never empty.
    pub fn restore_tag(&mut self, tag: u64, track: (u32, u64)) {
        while tag < self.tag_base {
            self.tags.push_front(None);
            self.tag_base -= 1;
        }
        // Below `next_tag`: it was given out, so its slot is there.
        let slot = usize::try_from(tag - self.tag_base).ok().and_then(|i| self.tags.get_mut(i));
        if let Some(slot) = slot {
            *slot = Some(track);
        }
    }

    /// Forgets every unacked delivery of `consumer_id` (its queue is gone
    /// or requeued them).
    pub fn forget_consumer(&mut self, consumer_id: u32) {
        for slot in self.tags.iter_mut() {
            if matches!(slot, Some((c, _)) if *c == consumer_id) {
                *slot = None;
                self.unacked -= 1;
            }
        }
        while let Some(None) = self.tags.front() {
            self.tags.pop_front();
            self.tag_base += 1;
        }
        self.held.retain(|h| h.consumer_id != consumer_id);
    }

    pub fn push_op(&mut self, kind: OpKind) -> u64 {
        let seq = self.next_op;
        self.next_op += 1;
        self.ops.push_back(Op { seq, kind, result: None });
        seq
    }

    /// Records the answer to a publish batch.
    pub fn settle(&mut self, first_seq: u64, how: Settled) {
        if let Some(o) = self.outstanding.iter_mut().find(|o| o.first_seq == first_seq) {
            o.result.get_or_insert(how);
        }
    }

    /// Records a confirm for `count` messages of a batch: fewer than the
    /// batch means the queue's `x-overflow` refused the rest, which are
    /// nacked (split off as their own entry, in order).
    pub fn settle_count(&mut self, first_seq: u64, count: u32) {
        let Some(i) = self.outstanding.iter().position(|o| o.first_seq == first_seq) else { return };
        let o = &mut self.outstanding[i];
        if count >= o.count {
            o.result.get_or_insert(Settled::Ack);
            return;
        }
        let rest = Outstanding {
            first_seq: first_seq + u64::from(count),
            count: o.count - count,
            confirm: o.confirm,
            returns: None,
            result: Some(Settled::Nack),
        };
        o.count = count;
        o.returns = None;
        o.result = Some(if count == 0 { Settled::Nack } else { Settled::Ack });
        self.outstanding.insert(i + 1, rest);
    }

    /// Pops settled batches in order. For each: the client tag range to
    /// confirm (if confirms are on), how, and what to return.
    #[allow(clippy::type_complexity)]
    pub fn pop_settled(&mut self) -> Option<(Option<(u64, u64)>, Settled, Option<Returned>)> {
        let how = self.outstanding.front()?.result?;
        let o = self.outstanding.pop_front()?;
        let tags = o.confirm.then(|| {
            let first = o.first_seq - self.confirm_base;
            (first, first + u64::from(o.count) - 1)
        });
        let returns = if how == Settled::NoRoute { o.returns } else { None };
        Some((tags, how, returns))
    }
}

/// A connection's open channels, sorted by number. Every frame looks its
/// channel up, and connections have few: a binary search over a short
/// vector beats hashing (which was 9% of the broker's profile with
/// SipHash and still 4% with ahash). Opening and closing move entries.
#[derive(Default)]
pub struct Channels(Vec<(u16, Channel)>);

impl Channels {
    fn find(&self, n: u16) -> Result<usize, usize> {
        match self.0.first() {
            // The common case: one channel.
            Some((k, _)) if *k == n => Ok(0),
            _ => self.0.binary_search_by_key(&n, |(k, _)| *k),
        }
    }

    pub fn get_mut(&mut self, n: &u16) -> Option<&mut Channel> {
        let i = self.find(*n).ok()?;
        Some(&mut self.0[i].1)
    }

    pub fn insert(&mut self, n: u16, ch: Channel) {
        match self.find(n) {
            Ok(i) => self.0[i].1 = ch,
            Err(i) => self.0.insert(i, (n, ch)),
        }
    }

    pub fn remove(&mut self, n: &u16) -> Option<Channel> {
        let i = self.find(*n).ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u16, &Channel)> {
        self.0.iter().map(|(k, c)| (k, c))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u16, &mut Channel)> {
        self.0.iter_mut().map(|(k, c)| (&*k, c))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A row per open channel for `/api/channels` (`ConnSink::channel_rows`):
/// its figures as the channel keeps them, and its consumers (push, not
/// cancelled) counted from the connection's consumer table.
pub fn rows(
    channels: &Channels,
    consumers: &std::collections::HashMap<u32, super::conn::ConsumerInfo, ahash::RandomState>,
) -> Vec<crate::server::stats::ChannelRow> {
    let count = |n: u16| {
        let live = consumers.values().filter(|k| k.channel == n && !k.cancelled && !k.deliver.is_empty());
        crate::protocol::wire::len32(live.count())
    };
    channels
        .iter()
        .map(|(&n, ch)| crate::server::stats::ChannelRow {
            number: n,
            prefetch_count: ch.prefetch_consumer,
            global_prefetch_count: ch.prefetch_channel,
            messages_unacknowledged: ch.unacked,
            published: ch.received,
            messages_unconfirmed: ch
                .outstanding
                .iter()
                .filter(|o| o.confirm && o.result.is_none())
                .map(|o| u64::from(o.count))
                .sum(),
            consumer_count: count(n),
            confirm: ch.confirm,
            transactional: ch.tx.is_some(),
            messages_uncommitted: ch.tx.as_ref().map_or(0, |t| t.uncommitted().0),
            acks_uncommitted: ch.tx.as_ref().map_or(0, |t| t.uncommitted().1),
            flow: ch.flow,
            state: if ch.state == ChState::Open { "running" } else { "closing" },
        })
        .collect()
}

/// Byte equality without a libc call: names are short, and `memcmp` was
/// the single largest item in the publish path's profile (every publish
/// compares its routing key with its batch's).
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut a8).zip(&mut b8) {
        if u64::from_ne_bytes(x.try_into().unwrap_or_default()) != u64::from_ne_bytes(y.try_into().unwrap_or_default())
        {
            return false;
        }
    }
    let mut diff = 0u8;
    for (x, y) in a8.remainder().iter().zip(b8.remainder()) {
        diff |= x ^ y;
    }
    diff == 0
}

impl Default for Channel {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_span_consumers_and_compact() {
        let mut c = Channel::new();
        assert_eq!(c.assign_tag(Some((1, 1))), 1);
        assert_eq!(c.assign_tag(Some((2, 1))), 2);
        assert_eq!(c.assign_tag(None), 3);
        assert_eq!(c.assign_tag(Some((1, 2))), 4);
        assert_eq!(c.unacked, 3);
        let mut got = Vec::new();
        assert_eq!(c.take_tags(2, false, |a, b| got.push((a, b))), Some(1));
        assert_eq!(c.take_tags(2, false, |_, _| ()), None, "acked twice");
        assert_eq!(c.take_tags(3, false, |_, _| ()), None, "no-ack tag");
        assert_eq!(c.take_tags(4, true, |a, b| got.push((a, b))), Some(2));
        assert_eq!(got, vec![(2, 1), (1, 1), (1, 2)]);
        assert!(c.tags.is_empty());
        assert_eq!(c.next_tag(), 5);
        assert_eq!(c.take_tags(0, true, |_, _| ()), Some(0));
        assert_eq!(c.take_tags(9, false, |_, _| ()), None);
    }

    #[test]
    fn confirms_settle_in_order() {
        let mut c = Channel::new();
        for first_seq in [1, 3] {
            c.outstanding.push_back(Outstanding { first_seq, count: 2, confirm: true, returns: None, result: None });
        }
        c.settle(3, Settled::Ack);
        assert!(c.pop_settled().is_none(), "the first batch is not settled yet");
        c.settle(1, Settled::Nack);
        assert_eq!(c.pop_settled().map(|(t, h, _)| (t, h)), Some((Some((1, 2)), Settled::Nack)));
        assert_eq!(c.pop_settled().map(|(t, h, _)| (t, h)), Some((Some((3, 4)), Settled::Ack)));
    }

    #[test]
    fn a_partial_confirm_acks_the_stored_and_nacks_the_rest() {
        let mut c = Channel::new();
        c.outstanding.push_back(Outstanding { first_seq: 1, count: 5, confirm: true, returns: None, result: None });
        c.settle_count(1, 2);
        assert_eq!(c.pop_settled().map(|(t, h, _)| (t, h)), Some((Some((1, 2)), Settled::Ack)));
        assert_eq!(c.pop_settled().map(|(t, h, _)| (t, h)), Some((Some((3, 5)), Settled::Nack)));
        assert!(c.pop_settled().is_none());
    }
}
