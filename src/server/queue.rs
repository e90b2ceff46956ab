//! One queue, on its owning shard: ready messages in FIFO order, consumers
//! with credit (prefetch), unacked messages per consumer, round-robin
//! dispatch, ack / nack / requeue. No I/O: replies go to `out`.

use super::types::{ConnRef, Delivered, Message, QueueError};
use crate::protocol::ErrorCode;
use bytes::Bytes;
use std::collections::VecDeque;

mod spill;

/// Limits a queue enforces, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub messages_max: u64,
}

pub struct Consumer {
    pub owner: ConnRef,
    pub id: u32,
    /// Unacked messages allowed; 0 means no limit (pull consumers).
    prefetch: u32,
    /// Pull consumers (get) are never pushed to.
    pull: bool,
    /// Tag of `unacked[0]`; tags are consecutive per consumer from 1.
    base_tag: u64,
    /// `None` marks a tag acked out of order; the front is always `Some`.
    unacked: VecDeque<Option<Message>>,
    unacked_live: u32,
}

impl Consumer {
    fn new(owner: ConnRef, id: u32, prefetch: u32, pull: bool) -> Self {
        Self { owner, id, prefetch, pull, base_tag: 1, unacked: VecDeque::new(), unacked_live: 0 }
    }

    fn next_tag(&self) -> u64 {
        self.base_tag + self.unacked.len() as u64
    }

    fn credit(&self) -> u32 {
        if self.pull {
            0
        } else if self.prefetch == 0 {
            u32::MAX
        } else {
            self.prefetch.saturating_sub(self.unacked_live)
        }
    }

    fn track(&mut self, m: Message) -> u64 {
        let tag = self.next_tag();
        self.unacked.push_back(Some(m));
        self.unacked_live += 1;
        tag
    }

    /// Checks every tag of every range before touching any, so a bad ack
    /// changes nothing.
    fn check_ranges(&self, ranges: &[(u64, u64)]) -> Result<(), QueueError> {
        for &(first, last) in ranges {
            if first < self.base_tag || last >= self.next_tag() || first > last {
                return Err(unknown_tag(first, last));
            }
            let lo = (first - self.base_tag) as usize;
            let hi = (last - self.base_tag) as usize;
            if self.unacked.range(lo..=hi).any(Option::is_none) {
                return Err(unknown_tag(first, last));
            }
        }
        Ok(())
    }

    /// Removes the given tags from the unacked set and returns their messages.
    fn take_ranges(&mut self, ranges: &[(u64, u64)], mut each: impl FnMut(Message)) {
        for &(first, last) in ranges {
            for tag in first..=last {
                let i = (tag - self.base_tag) as usize;
                // A tag repeated across ranges is taken once.
                if let Some(m) = self.unacked[i].take() {
                    self.unacked_live -= 1;
                    each(m);
                }
            }
        }
        while let Some(None) = self.unacked.front() {
            self.unacked.pop_front();
            self.base_tag += 1;
        }
    }

    fn drain_unacked(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.unacked_live = 0;
        self.unacked.drain(..).flatten()
    }
}

fn unknown_tag(first: u64, last: u64) -> QueueError {
    QueueError::new(ErrorCode::UnknownDeliveryTag, format!("delivery tags {first}..={last} are not all unacked"))
}

pub struct Queue {
    pub name: String,
    pub durable: bool,
    /// Set for exclusive queues: the one connection that may use it.
    pub exclusive_owner: Option<ConnRef>,
    /// Deleted when its last push consumer goes, once it has had one.
    pub auto_delete: bool,
    had_consumers: bool,
    ready: VecDeque<Message>,
    ready_bytes: u64,
    next_seq: u64,
    /// Messages published into and delivered from this queue since it was
    /// created here: what `ctl list-queues` turns into rates.
    pub published_total: u64,
    pub delivered_total: u64,
    consumers: Vec<Consumer>,
    /// Round-robin cursor into `consumers`.
    rr: usize,
    limits: QueueLimits,
    /// Ready messages whose entry is on disk only (`queue/spill.rs`).
    pub spill: spill::SpillState,
}

/// Where dispatch hands each consumer's share: owner, consumer id, first tag.
pub type Out<'a> = &'a mut dyn FnMut(ConnRef, u32, u64, Deliveries<'_>);

impl Queue {
    pub fn new(name: String, durable: bool, limits: QueueLimits) -> Self {
        Self {
            name,
            durable,
            exclusive_owner: None,
            auto_delete: false,
            had_consumers: false,
            ready: VecDeque::new(),
            ready_bytes: 0,
            next_seq: 0,
            published_total: 0,
            delivered_total: 0,
            consumers: Vec::new(),
            rr: 0,
            limits,
            spill: spill::SpillState::default(),
        }
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The sequence number the next published message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Recovery: a persistent message from the log, in sequence order,
    /// marked redelivered (it may have been delivered before the restart).
    pub fn restore(&mut self, seq: u64, entry: Bytes) {
        let msg = Message { seq, entry, persistent: true, redelivered: true, spilled: None };
        self.ready_bytes += msg.bytes() as u64;
        self.ready.push_back(msg);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// Recovery: sequence numbers continue past every logged one.
    pub fn set_next_seq(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    pub fn unacked_len(&self) -> usize {
        self.consumers.iter().map(|c| c.unacked_live as usize).sum()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.iter().filter(|c| !c.pull).count()
    }

    /// Appends a batch, all or nothing: a batch that would pass the length
    /// limit is refused whole, so a confirm always covers every message.
    pub fn publish(
        &mut self,
        persistent: bool,
        entries: impl ExactSizeIterator<Item = Bytes>,
    ) -> Result<u32, QueueError> {
        let n = entries.len() as u64;
        if self.ready.len() as u64 + n > self.limits.messages_max {
            return Err(QueueError::new(
                ErrorCode::QueueFull,
                format!(
                    "queue '{}' holds {} messages; {} more would pass queue_messages_max {}",
                    self.name,
                    self.ready.len(),
                    n,
                    self.limits.messages_max
                ),
            ));
        }
        self.ready.reserve(entries.len());
        for entry in entries {
            let msg = Message { seq: self.next_seq, entry, persistent, redelivered: false, spilled: None };
            self.next_seq += 1;
            self.ready_bytes += msg.bytes() as u64;
            self.ready.push_back(msg);
        }
        self.published_total += n;
        Ok(n as u32)
    }

    fn pop_ready(&mut self) -> Option<Message> {
        let m = self.ready.pop_front()?;
        self.ready_bytes -= m.bytes() as u64;
        self.spill.popped(&m);
        Some(m)
    }

    /// Puts messages back at the head, oldest first, marked redelivered.
    fn requeue(&mut self, mut msgs: Vec<Message>) {
        msgs.sort_unstable_by_key(|m| m.seq);
        for mut m in msgs.into_iter().rev() {
            m.redelivered = true;
            self.ready_bytes += m.bytes() as u64;
            // Keep FIFO by publish order: most requeued messages are older
            // than every ready one; the rare newer one is placed in order.
            let pos = self.ready.partition_point(|r| r.seq < m.seq);
            self.ready.insert(pos, m);
        }
    }

    fn consumer_index(&self, owner: ConnRef, id: u32) -> Option<usize> {
        self.consumers.iter().position(|c| c.owner == owner && c.id == id)
    }

    pub fn subscribe(&mut self, owner: ConnRef, id: u32, prefetch: u32) -> Result<(), QueueError> {
        if self.consumer_index(owner, id).is_some() {
            return Err(QueueError::new(
                ErrorCode::ConsumerExists,
                format!("consumer {id} already exists on this connection"),
            ));
        }
        self.consumers.push(Consumer::new(owner, id, prefetch, false));
        self.had_consumers = true;
        Ok(())
    }

    /// Stops pushing to a consumer; its unacked messages stay with it until
    /// acked, nacked or its connection closes.
    pub fn cancel(&mut self, owner: ConnRef, id: u32) -> Result<(), QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        self.consumers[i].pull = true;
        Ok(())
    }

    /// Whether an auto-delete queue has lost its last push consumer.
    pub fn auto_delete_due(&self) -> bool {
        self.auto_delete && self.had_consumers && self.consumer_count() == 0
    }

    /// The push consumers: (connection, consumer id).
    pub fn push_consumers(&self) -> impl Iterator<Item = (ConnRef, u32)> + '_ {
        self.consumers.iter().filter(|c| !c.pull).map(|c| (c.owner, c.id))
    }

    /// Removes a consumer and requeues what it had not acked.
    pub fn unsubscribe(&mut self, owner: ConnRef, id: u32) -> Result<(), QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        let mut c = self.consumers.remove(i);
        if self.rr > i {
            self.rr -= 1;
        }
        let back: Vec<Message> = c.drain_unacked().collect();
        self.requeue(back);
        Ok(())
    }

    /// Drops every consumer of a closed connection; requeues their unacked.
    /// Returns how many messages went back to the queue.
    pub fn connection_closed(&mut self, owner: ConnRef) -> usize {
        let mut back = Vec::new();
        let mut i = 0;
        while i < self.consumers.len() {
            if self.consumers[i].owner == owner {
                let mut c = self.consumers.remove(i);
                if self.rr > i {
                    self.rr -= 1;
                }
                back.extend(c.drain_unacked());
            } else {
                i += 1;
            }
        }
        let n = back.len();
        self.requeue(back);
        n
    }

    pub fn ack(&mut self, owner: ConnRef, id: u32, ranges: &[(u64, u64)]) -> Result<usize, QueueError> {
        self.ack_each(owner, id, ranges, |_| {})
    }

    /// `ack`, handing each acked message to `each` (the storage logs the
    /// persistent ones).
    pub fn ack_each(
        &mut self,
        owner: ConnRef,
        id: u32,
        ranges: &[(u64, u64)],
        mut each: impl FnMut(&Message),
    ) -> Result<usize, QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        let c = &mut self.consumers[i];
        c.check_ranges(ranges)?;
        let mut n = 0;
        c.take_ranges(ranges, |m| {
            each(&m);
            n += 1
        });
        Ok(n)
    }

    pub fn nack(&mut self, owner: ConnRef, id: u32, requeue: bool, ranges: &[(u64, u64)]) -> Result<usize, QueueError> {
        self.nack_each(owner, id, requeue, ranges, |_| {})
    }

    /// `nack`; without requeue, each dropped message goes to `dropped`.
    pub fn nack_each(
        &mut self,
        owner: ConnRef,
        id: u32,
        requeue: bool,
        ranges: &[(u64, u64)],
        mut dropped: impl FnMut(&Message),
    ) -> Result<usize, QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        let c = &mut self.consumers[i];
        c.check_ranges(ranges)?;
        let mut back = Vec::new();
        c.take_ranges(ranges, |m| back.push(m));
        let n = back.len();
        if requeue {
            self.requeue(back);
        } else {
            back.iter().for_each(&mut dropped);
        }
        Ok(n)
    }

    /// Pulls one message. Unless `no_ack`, it stays unacked under a pull
    /// consumer `id` of this connection until acked or nacked.
    pub fn get(&mut self, owner: ConnRef, id: u32, no_ack: bool) -> Result<Option<(u64, Delivered)>, QueueError> {
        self.get_each(owner, id, no_ack, |_| {})
    }

    /// `get`; with `no_ack`, the message (gone at once) goes to `dropped`.
    pub fn get_each(
        &mut self,
        owner: ConnRef,
        id: u32,
        no_ack: bool,
        dropped: impl FnOnce(&Message),
    ) -> Result<Option<(u64, Delivered)>, QueueError> {
        let i = match self.consumer_index(owner, id) {
            Some(i) if !self.consumers[i].pull => {
                return Err(QueueError::new(
                    ErrorCode::ConsumerExists,
                    format!("consumer {id} is a subscription; use another id for get"),
                ));
            }
            Some(i) => Some(i),
            None => None,
        };
        if self.head_spilled() {
            // The shard reads it back first (`Shard::get`).
            return Ok(None);
        }
        let Some(m) = self.pop_ready() else { return Ok(None) };
        self.delivered_total += 1;
        let d = Delivered::from(&m);
        if no_ack {
            dropped(&m);
            return Ok(Some((0, d)));
        }
        let i = i.unwrap_or_else(|| {
            self.consumers.push(Consumer::new(owner, id, 0, true));
            self.consumers.len() - 1
        });
        Ok(Some((self.consumers[i].track(m), d)))
    }

    pub fn purge(&mut self) -> usize {
        self.purge_each(|_| {})
    }

    /// `purge`, handing each removed message to `each`.
    pub fn purge_each(&mut self, each: impl FnMut(&Message)) -> usize {
        self.ready.iter().for_each(each);
        let n = self.ready.len();
        self.ready.clear();
        self.ready_bytes = 0;
        self.spill.cleared();
        n
    }

    /// Pushes ready messages to consumers with credit, round-robin one
    /// message per consumer per round. Each consumer's share is handed to
    /// `out` once, straight from its unacked store: no copies, no clones.
    /// Returns how many messages went out.
    pub fn dispatch(&mut self, out: Out<'_>) -> usize {
        if self.ready.is_empty() || self.consumers.is_empty() {
            return 0;
        }
        let n = self.consumers.len();
        // Tag of the first message each consumer gets in this pass.
        let firsts: Vec<u64> = self.consumers.iter().map(Consumer::next_tag).collect();
        let mut sent = 0;
        if n == 1 {
            let take = (self.consumers[0].credit() as usize).min(self.ready.len());
            for _ in 0..take {
                // A spilled head waits for the shard to read it back.
                if self.head_spilled() {
                    break;
                }
                let Some(m) = self.pop_ready() else { break };
                self.consumers[0].track(m);
                sent += 1;
            }
        } else {
            'rounds: loop {
                let mut progressed = false;
                for k in 0..n {
                    let i = (self.rr + k) % n;
                    if self.consumers[i].credit() == 0 {
                        continue;
                    }
                    if self.head_spilled() {
                        break 'rounds;
                    }
                    let Some(m) = self.pop_ready() else { break 'rounds };
                    self.consumers[i].track(m);
                    sent += 1;
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            self.rr = (self.rr + 1) % n;
        }
        for (c, first) in self.consumers.iter().zip(firsts) {
            let count = c.next_tag() - first;
            if count > 0 {
                let lo = (first - c.base_tag) as usize;
                out(c.owner, c.id, first, Deliveries(c.unacked.range(lo..lo + count as usize)));
            }
        }
        self.delivered_total += sent as u64;
        sent
    }
}

/// Messages just handed to one consumer, in tag order, borrowed from its
/// unacked store.
pub struct Deliveries<'a>(std::collections::vec_deque::Iter<'a, Option<Message>>);

impl<'a> Iterator for Deliveries<'a> {
    type Item = &'a Message;

    fn next(&mut self) -> Option<&'a Message> {
        // Just tracked, so never acked yet: every slot is `Some`.
        self.0.next().and_then(Option::as_ref)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Deliveries<'_> {}

fn unknown_consumer(id: u32, queue: &str) -> QueueError {
    QueueError::new(ErrorCode::UnknownConsumer, format!("no consumer {id} on queue '{queue}' for this connection"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const C: ConnRef = ConnRef { shard: 0, conn_id: 1 };
    const LIMITS: QueueLimits = QueueLimits { messages_max: 100 };

    fn msgs(r: std::ops::Range<u32>) -> Vec<Bytes> {
        r.map(|i| {
            let mut b = bytes::BytesMut::new();
            crate::protocol::batch::put_entry(&mut b, 0, &[], i.to_string().as_bytes());
            b.freeze()
        })
        .collect()
    }

    fn body(m: &Message) -> String {
        String::from_utf8(crate::protocol::batch::parse_entry(&m.entry).unwrap().body.to_vec()).unwrap()
    }

    fn collect(q: &mut Queue) -> Vec<(u32, u64, Vec<String>)> {
        let mut v = Vec::new();
        q.dispatch(&mut |_, consumer_id, first_tag, msgs| {
            v.push((consumer_id, first_tag, msgs.map(body).collect()));
        });
        v
    }

    #[test]
    fn prefetch_and_fifo() {
        let mut q = Queue::new("q".into(), false, LIMITS);
        q.publish(false, msgs(0..6).into_iter()).unwrap();
        q.subscribe(C, 7, 3).unwrap();
        assert_eq!(collect(&mut q), vec![(7, 1, vec!["0".into(), "1".into(), "2".into()])]);
        assert!(collect(&mut q).is_empty(), "credit exhausted");
        q.ack(C, 7, &[(1, 2)]).unwrap();
        assert_eq!(collect(&mut q), vec![(7, 4, vec!["3".into(), "4".into()])]);
    }

    #[test]
    fn bad_ack_changes_nothing() {
        let mut q = Queue::new("q".into(), false, LIMITS);
        q.publish(false, msgs(0..2).into_iter()).unwrap();
        q.subscribe(C, 1, 10).unwrap();
        collect(&mut q);
        assert_eq!(q.ack(C, 1, &[(1, 1), (5, 5)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
        assert_eq!(q.unacked_len(), 2);
        q.ack(C, 1, &[(2, 2)]).unwrap();
        assert_eq!(q.ack(C, 1, &[(2, 2)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
        q.ack(C, 1, &[(1, 1)]).unwrap();
        assert_eq!(q.unacked_len(), 0);
    }

    #[test]
    fn close_requeues_in_order_marked_redelivered() {
        let mut q = Queue::new("q".into(), false, LIMITS);
        q.publish(false, msgs(0..3).into_iter()).unwrap();
        q.subscribe(C, 1, 2).unwrap();
        collect(&mut q);
        assert_eq!(q.connection_closed(C), 2);
        let order: Vec<(String, bool)> =
            std::iter::from_fn(|| q.pop_ready()).map(|m| (body(&m), m.redelivered)).collect();
        assert_eq!(order, vec![("0".into(), true), ("1".into(), true), ("2".into(), false)]);
    }

    #[test]
    fn round_robin() {
        let mut q = Queue::new("q".into(), false, LIMITS);
        q.subscribe(C, 1, 100).unwrap();
        q.subscribe(C, 2, 100).unwrap();
        q.publish(false, msgs(0..4).into_iter()).unwrap();
        let got = collect(&mut q);
        assert_eq!(got, vec![(1, 1, vec!["0".into(), "2".into()]), (2, 1, vec!["1".into(), "3".into()])]);
    }

    #[test]
    fn length_limit_refuses_whole_batch() {
        let mut q = Queue::new("q".into(), false, QueueLimits { messages_max: 3 });
        q.publish(false, msgs(0..2).into_iter()).unwrap();
        assert_eq!(q.publish(false, msgs(0..2).into_iter()).unwrap_err().code, ErrorCode::QueueFull);
        assert_eq!(q.ready_len(), 2);
    }
}
