//! One queue, on its owning shard: ready messages (FIFO, or by priority),
//! consumers with credit (prefetch), unacked messages per consumer,
//! round-robin (or single-active-consumer) dispatch, ack / nack / requeue,
//! and the policies of `policy.rs` (TTL, length limits, dead-lettering).
//! No I/O: replies go to `out`, removed messages to `take_dead`.
//!
//! | file | what |
//! |---|---|
//! | `ready.rs` | the ready store: FIFO per priority level |
//! | `cold.rs` | a spilled backlog at 16 bytes a message |
//! | `consumer.rs` | a consumer's credit, tags and unacked messages |
//! | `dispatch.rs` | consumers by priority, dispatch under credit and room |
//! | `limits.rs` | publish under limits, expiry, overflow, x-expires |
//! | `spill.rs` | messages whose entry is on disk only (memory budget) |
//! | `stream.rs` | `x-queue-type: stream`: offsets, retention, a position per consumer |

mod cold;
#[cfg(test)]
mod cold_tests;
mod consumer;
mod dispatch;
#[cfg(test)]
mod dispatch_tests;
mod limits;
mod ready;
mod spill;
mod stream;
mod stream_read;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

pub use consumer::{Deliveries, Delivery};
pub use dispatch::{delivery_cost, Dispatched, DELIVERY_FRAMING_BYTES};
pub use limits::{Dead, Published};
pub use ready::HOT_LOW;
pub use spill::{Ahead, ReadAhead};
pub use stream::{with_offset_header, Stream, STORED_BYTES as STREAM_STORED_BYTES};

use super::deadletter::Reason;
use super::policy::QueueArgs;
use super::types::{ConnRef, Delivered, Message, Origin, QueueError};
use crate::protocol::ErrorCode;
use bytes::Bytes;
use consumer::Consumer;
use ready::Ready;
use std::sync::Arc;

/// Limits a queue enforces, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub messages_max: u64,
    /// Messages the queue removes without an ack (expired, dead-lettered)
    /// in one settle; the rest wait for the next (`dead_letter_batch_max`).
    pub removals_max: usize,
    /// A stream's in-memory window of entry bytes (`stream_memory_bytes_max`).
    pub stream_memory_bytes_max: u64,
    /// A stream consumer's read-ahead from the log (`stream_read_ahead_bytes`).
    pub stream_read_ahead_bytes: u64,
}

impl QueueLimits {
    /// `messages_max` with no cap on removals per settle (tests).
    pub const fn messages(messages_max: u64) -> Self {
        Self {
            messages_max,
            removals_max: usize::MAX,
            stream_memory_bytes_max: u64::MAX,
            stream_read_ahead_bytes: 1 << 20,
        }
    }
}

pub struct Queue {
    pub name: String,
    pub durable: bool,
    /// Set for exclusive queues: the one connection that may use it.
    pub exclusive_owner: Option<ConnRef>,
    /// Deleted when its last push consumer goes, once it has had one.
    pub auto_delete: bool,
    had_consumers: bool,
    ready: Ready,
    next_seq: u64,
    /// Messages published into and delivered from this queue since it was
    /// created here: what `ctl list-queues` turns into rates.
    pub published_total: u64,
    pub delivered_total: u64,
    /// By priority, highest first, then in registration order
    /// (`dispatch.rs`); cancelled and pull (get) consumers stay in it.
    consumers: Vec<Consumer>,
    /// The runs of `consumers` with one priority, highest first.
    levels: Vec<dispatch::Level>,
    /// The registration number the next consumer gets.
    next_registered: u64,
    limits: QueueLimits,
    pub args: QueueArgs,
    /// Messages removed without an ack (expired, over a limit, rejected),
    /// for the shard to log and dead-letter.
    dead: Vec<Dead>,
    /// Last declare, get or consumer change (shard milliseconds), for
    /// `x-expires`.
    last_used: u64,
    /// The deadline this queue has an entry for in the shard's timer heap.
    pub timer_at: Option<u64>,
    /// Ready messages whose entry is on disk only (`spill.rs`).
    pub spill: spill::SpillState,
    /// The bytes the shard last counted for this queue against the memory
    /// alarm (`shard/alarm.rs`).
    pub alarm_accounted: u64,
    /// Set for a stream (`stream.rs`): its messages live there, never in
    /// `ready`. Boxed: a classic queue pays one pointer.
    stream: Option<Box<Stream>>,
}

/// Where dispatch hands each consumer's share: owner, consumer id, first tag.
pub type Out<'a> = &'a mut dyn FnMut(ConnRef, u32, u64, Deliveries<'_>);

impl Queue {
    pub fn new(name: String, durable: bool, limits: QueueLimits, args: QueueArgs) -> Self {
        let stream = args
            .stream
            .then(|| Box::new(Stream::new(args.max_length_bytes, args.max_age_ms, args.stream_segment_bytes)));
        Self {
            name,
            durable,
            exclusive_owner: None,
            auto_delete: false,
            had_consumers: false,
            ready: Ready::new(args.priority_levels()),
            next_seq: 0,
            published_total: 0,
            delivered_total: 0,
            consumers: Vec::new(),
            levels: Vec::new(),
            next_registered: 0,
            limits,
            args,
            dead: Vec::new(),
            last_used: 0,
            timer_at: None,
            spill: spill::SpillState::default(),
            alarm_accounted: 0,
            stream,
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
    /// Its TTL counts from `now`: enqueue times are not logged. `origin`:
    /// the exchange and routing key the log recorded for it.
    pub fn restore(&mut self, seq: u64, entry: Bytes, now: u64, origin: Option<Arc<Origin>>) {
        if self.stream.is_some() {
            return self.stream_restore(seq, entry, None, origin);
        }
        let mut msg = self.incoming(seq, entry, true, now, origin);
        msg.redelivered = true;
        self.ready.push_back(msg);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// Recovery: sequence numbers continue past every logged one.
    pub fn set_next_seq(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    pub fn ready_bytes(&self) -> u64 {
        self.ready.bytes()
    }

    pub fn unacked_len(&self) -> usize {
        self.consumers.iter().map(|c| c.unacked_live as usize).sum()
    }

    /// Messages delivered and not acked yet, and their entry bytes (one
    /// pass over the consumers: the memory alarm asks after every settle).
    pub fn unacked_totals(&self) -> (u64, u64) {
        self.consumers.iter().fold((0, 0), |(n, b), c| (n + u64::from(c.unacked_live), b + c.unacked_bytes))
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.iter().filter(|c| !c.pull).count()
    }

    /// Persistent messages, ready and unacked, and their entry bytes.
    pub fn persistent_totals(&self) -> (u64, u64) {
        let (n, b) = self.ready.persistent();
        self.consumers
            .iter()
            .fold((n as u64, b), |(n, b), c| (n + u64::from(c.unacked_persistent.0), b + c.unacked_persistent.1))
    }

    /// The `timestamp` property of the message dispatch would take next
    /// (seconds), when it has one and its entry is in memory; a stream's
    /// have none here. Parsed when an operator asks, never per message.
    pub fn head_timestamp(&self) -> Option<u64> {
        let m = self.ready.front()?;
        if m.spilled.is_some() {
            return None;
        }
        let e = crate::protocol::batch::parse_entry(&m.entry).ok()?;
        crate::protocol::props::timestamp_of(e.props)
    }

    /// Entry bytes of the ready messages that are on disk only.
    pub fn spilled_bytes(&self) -> u64 {
        self.ready.spilled_bytes()
    }

    /// Puts messages back at the head, oldest first, marked redelivered.
    /// They keep their deadlines: a TTL counts from the first enqueue.
    fn requeue(&mut self, mut msgs: Vec<Message>) {
        // A stream's deliveries are references to its log: nothing goes back.
        if self.stream.is_some() {
            return;
        }
        // Newest first, so most inserts land at the front.
        msgs.sort_unstable_by_key(|m| m.seq);
        for mut m in msgs.into_iter().rev() {
            m.redelivered = true;
            self.ready.insert_by_seq(m);
        }
    }

    fn consumer_index(&self, owner: ConnRef, id: u32) -> Option<usize> {
        self.consumers.iter().position(|c| c.owner == owner && c.id == id)
    }

    /// Marks a consumer as auto-ack (`Consumer::auto_ack`).
    pub fn set_auto_ack(&mut self, owner: ConnRef, id: u32) {
        if let Some(i) = self.consumer_index(owner, id) {
            self.consumers[i].auto_ack = true;
        }
    }

    /// Whether the consumer is an auto-ack one (its acks come from the
    /// front end, not the client).
    pub fn is_auto_ack(&self, owner: ConnRef, id: u32) -> bool {
        self.consumer_index(owner, id).is_some_and(|i| self.consumers[i].auto_ack)
    }

    pub fn subscribe(&mut self, owner: ConnRef, id: u32, prefetch: u32) -> Result<(), QueueError> {
        self.subscribe_with(owner, id, prefetch, false, 0)
    }

    /// `subscribe`; an `exclusive` consumer (AMQP basic.consume's flag)
    /// is the queue's only one: refused while it has another, and others
    /// are refused while it is there, as RabbitMQ does (ACCESS_REFUSED,
    /// "in exclusive use"). A cancelled consumer no longer counts.
    /// `priority` (AMQP `x-priority`): see `dispatch.rs`.
    pub fn subscribe_with(
        &mut self,
        owner: ConnRef,
        id: u32,
        prefetch: u32,
        exclusive: bool,
        priority: i64,
    ) -> Result<(), QueueError> {
        if self.consumer_index(owner, id).is_some() {
            return Err(QueueError::new(
                ErrorCode::ConsumerExists,
                format!("consumer {id} already exists on this connection"),
            ));
        }
        let pushed = self.consumers.iter().filter(|c| !c.pull);
        let taken = if exclusive { pushed.count() > 0 } else { pushed.clone().any(|c| c.exclusive) };
        if taken {
            let queue = crate::protocol::vhost::describe(&self.name);
            return Err(QueueError::new(ErrorCode::AccessRefused, format!("queue {queue} in exclusive use")));
        }
        let mut c = Consumer::new(owner, id, prefetch, false);
        c.exclusive = exclusive;
        c.priority = priority;
        self.insert_consumer(c);
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

    /// Removes every consumer whose oldest unacked message went out
    /// `timeout_ms` or more before `now`, and requeues all it had not
    /// acked (`consumer_timeout_ms`). Returns them and how many messages
    /// went back.
    pub fn expire_consumers(&mut self, now: u64, timeout_ms: u64) -> (Vec<(ConnRef, u32)>, usize) {
        let mut gone = Vec::new();
        let mut back = Vec::new();
        let mut i = 0;
        while i < self.consumers.len() {
            let due = self.consumers[i].oldest_unacked_at().is_some_and(|at| now.saturating_sub(at) >= timeout_ms);
            if due {
                let mut c = self.remove_consumer(i);
                back.extend(c.drain_unacked());
                gone.push((c.owner, c.id));
            } else {
                i += 1;
            }
        }
        let n = back.len();
        self.requeue(back);
        (gone, n)
    }

    /// Whether any consumer holds unacked messages (the timeout sweep
    /// skips the others without looking at their consumers).
    pub fn has_unacked(&self) -> bool {
        self.consumers.iter().any(|c| c.unacked_live > 0)
    }

    /// Whether an auto-delete queue has lost its last push consumer.
    pub fn auto_delete_due(&self) -> bool {
        self.auto_delete && self.had_consumers && self.consumer_count() == 0
    }

    /// The push consumers themselves (operator listings).
    pub fn push_consumer_list(&self) -> impl Iterator<Item = &Consumer> + '_ {
        self.consumers.iter().filter(|c| !c.pull)
    }

    /// The push consumers: (connection, consumer id).
    pub fn push_consumers(&self) -> impl Iterator<Item = (ConnRef, u32)> + '_ {
        self.consumers.iter().filter(|c| !c.pull).map(|c| (c.owner, c.id))
    }

    /// Every consumer, push and pull: (connection, consumer id).
    pub fn all_consumers(&self) -> impl Iterator<Item = (ConnRef, u32)> + '_ {
        self.consumers.iter().map(|c| (c.owner, c.id))
    }

    /// Removes a consumer and requeues what it had not acked.
    pub fn unsubscribe(&mut self, owner: ConnRef, id: u32) -> Result<(), QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        let mut c = self.remove_consumer(i);
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
                let mut c = self.remove_consumer(i);
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

    /// Without requeue, the messages go to the dead list (reason
    /// `rejected`): the shard logs them gone and dead-letters them.
    pub fn nack(&mut self, owner: ConnRef, id: u32, requeue: bool, ranges: &[(u64, u64)]) -> Result<usize, QueueError> {
        let i = self.consumer_index(owner, id).ok_or_else(|| unknown_consumer(id, &self.name))?;
        let c = &mut self.consumers[i];
        c.check_ranges(ranges)?;
        let mut back = Vec::new();
        c.take_ranges(ranges, |m| back.push(m));
        let n = back.len();
        // A stream neither requeues nor dead-letters: a nack, like an ack,
        // gives the credit back (RabbitMQ).
        if requeue || self.stream.is_some() {
            self.requeue(back);
        } else {
            self.dead.extend(back.into_iter().map(|msg| Dead { msg, reason: Reason::Rejected, logged: true }));
        }
        Ok(n)
    }

    /// Pulls one message. Unless `no_ack`, it stays unacked under a pull
    /// consumer `id` of this connection until acked or nacked.
    pub fn get(
        &mut self,
        owner: ConnRef,
        id: u32,
        no_ack: bool,
        now: u64,
    ) -> Result<Option<(u64, Delivered)>, QueueError> {
        self.get_each(owner, id, no_ack, now, |_| {})
    }

    /// `get`; with `no_ack`, the message (gone at once) goes to `dropped`.
    pub fn get_each(
        &mut self,
        owner: ConnRef,
        id: u32,
        no_ack: bool,
        now: u64,
        dropped: impl FnOnce(&Message),
    ) -> Result<Option<(u64, Delivered)>, QueueError> {
        self.refuse_on_stream("basic.get")?;
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
        let Some(m) = self.pop_live(now) else { return Ok(None) };
        self.delivered_total += 1;
        let d = Delivered::from(&m);
        if no_ack {
            dropped(&m);
            return Ok(Some((0, d)));
        }
        let i = i.unwrap_or_else(|| {
            // Pull consumers are never pushed to: placed below every push
            // consumer, they stay out of the levels dispatch serves first.
            let mut c = Consumer::new(owner, id, 0, true);
            c.priority = i64::MIN;
            self.insert_consumer(c)
        });
        let c = &mut self.consumers[i];
        let tag = c.track(m);
        c.mark_sent(tag, now);
        Ok(Some((tag, d)))
    }

    pub fn purge(&mut self) -> usize {
        self.purge_each(|_| {})
    }

    /// `purge`, handing each removed message to `each`.
    pub fn purge_each(&mut self, each: impl FnMut(&Message)) -> usize {
        self.ready.for_each(each);
        let n = self.ready.len();
        self.ready.clear();
        n
    }
}

fn unknown_consumer(id: u32, queue: &str) -> QueueError {
    QueueError::new(
        ErrorCode::UnknownConsumer,
        format!("no consumer {id} on queue {} for this connection", crate::routing::vhost::describe(queue)),
    )
}
