//! The shard's side of queue policies: the settle step after every request
//! on a queue (dispatch, expiry at the head, the length limit), the one
//! timer per shard (a min-heap of (deadline, queue): only queues with a
//! known next deadline are ever looked at), and dead-letter republishing.
//!
//! `Shard::dead_letter` is the single place dead letters leave a queue
//! for an exchange. Without the routing table it knows the default
//! exchange only; the routing integration replaces its body.

use super::super::deadletter::{self, Death, Reason, Unmarkable};
use super::super::mesh::MeshMsg;
use super::super::queue::Queue;
use super::super::types::{ConnRef, PublishMode, Request};
use super::{bump, Shard};
use crate::protocol::batch::parse_entry;
use bytes::{Bytes, BytesMut};
use std::cmp::Reverse;
use std::rc::Rc;
use std::time::Duration;

/// A dead-lettered message waiting to be republished.
pub struct DeadLetter {
    exchange: String,
    routing_key: String,
    persistent: bool,
    entry: Bytes,
}

impl Shard {
    /// Milliseconds since this shard started: the clock of message and
    /// queue deadlines (monotonic, shard-local).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// After a request on a queue: deliver what can go, then expire heads
    /// whose deadline has come and apply `drop-head` (in that order, so a
    /// message with a TTL of 0 or a full queue still reaches a consumer
    /// waiting for it, as with RabbitMQ), hand removed messages to the log
    /// and to dead-lettering, and re-arm the queue's timer.
    pub(super) fn settle(&self, q: &mut Queue) {
        let now = self.now_ms();
        let d = q.dispatch_gated(
            &mut |to, consumer_id, first_tag, msgs| self.deliver(to, consumer_id, first_tag, msgs),
            &|c| self.takes_deliveries(c),
            now,
        );
        if d.skipped {
            self.note_skipped(q);
        }
        let n = d.sent;
        bump(&self.counters.delivered, n as u64);
        if n > 0 && !self.over_half_pause(q) {
            self.publish_resume.notify();
        }
        q.enforce(now);
        if q.has_dead() {
            self.collect_dead(q);
        }
        // Resident bytes, and read-backs of spilled messages now due.
        self.after_dispatch(q);
        self.arm_timer(q);
    }

    fn arm_timer(&self, q: &mut Queue) {
        let Some(d) = q.next_deadline() else { return };
        if q.timer_at.is_some_and(|t| t <= d) {
            return;
        }
        q.timer_at = Some(d);
        let mut heap = self.timers.borrow_mut();
        let earliest = heap.peek().is_none_or(|Reverse((t, _))| d < *t);
        heap.push(Reverse((d, q.name.clone())));
        if earliest {
            self.timer_kick.notify();
        }
    }

    /// The shard's timer task: sleeps until the earliest queue deadline
    /// (or until an earlier one is armed), then settles the queues due.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            let kicked = self.timer_kick.notified();
            let next = self.timers.borrow().peek().map(|Reverse((t, _))| *t);
            let now = self.now_ms();
            match next {
                Some(t) if t <= now => {
                    self.fire_timers(now);
                    // More may be due at once (`dead_letter_batch_max`):
                    // serve the sockets first, and let dead letters bound
                    // for other shards leave before making more.
                    crate::rt::yield_to_reactor().await;
                    self.mesh.wait_for_space().await;
                }
                Some(t) => {
                    let sleep = glommio::timer::sleep(Duration::from_millis(t - now));
                    futures_lite::future::or(kicked, sleep).await;
                }
                None => kicked.await,
            }
        }
    }

    fn fire_timers(&self, now: u64) {
        let mut due = Vec::new();
        {
            let mut heap = self.timers.borrow_mut();
            while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
                if let Some(Reverse((_, name))) = heap.pop() {
                    due.push(name);
                }
            }
        }
        due.sort_unstable();
        due.dedup();
        for name in due {
            let mut queues = self.queues.borrow_mut();
            let Some(q) = queues.get_mut(&name) else { continue };
            q.timer_at = None;
            if q.unused_deadline().is_some_and(|d| d <= now) {
                tracing::debug!(queue = %name, "queue unused for its x-expires");
                self.remove_queue(&mut queues, &name);
                continue;
            }
            self.settle(q);
        }
        self.flush_dead_letters();
    }

    /// Takes the messages a queue removed: persistent ones are logged gone;
    /// with a dead-letter exchange they are marked (`x-death`) and queued
    /// for republishing, otherwise dropped.
    fn collect_dead(&self, q: &mut Queue) {
        let dead = q.take_dead();
        let seqs: Vec<(u64, usize)> =
            dead.iter().filter(|d| d.logged && d.msg.persistent).map(|d| (d.msg.seq, d.msg.bytes())).collect();
        self.log_gone(q, seqs);
        let Some(dlx) = q.args.dead_letter_exchange.as_deref() else { return };
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut pending = self.dl_pending.borrow_mut();
        for d in dead {
            if d.msg.spilled.is_some() {
                // Not expected: a queue with a dead-letter exchange has its
                // spilled heads read back before it removes them.
                self.dead_letter_dropped(1, "its entry was on disk only");
                continue;
            }
            let (exchange, key) = match &d.msg.origin {
                Some(o) => (o.exchange.as_str(), o.routing_key.as_str()),
                // The default exchange: the routing key was the queue's name.
                None => ("", q.name.as_str()),
            };
            let death = Death { queue: &q.name, reason: d.reason, exchange, routing_key: key, time };
            let entry = match deadletter::mark(&d.msg.entry, &death) {
                Ok(e) => e,
                // A consumer's rejection cannot loop by itself: such a
                // message goes on unmarked rather than lose its properties.
                Err(Unmarkable::OpaqueProps) if d.reason == Reason::Rejected => d.msg.entry.clone(),
                Err(why) => {
                    self.dead_letter_dropped(1, &format!("cannot add x-death to its properties: {why:?}"));
                    continue;
                }
            };
            let routing_key = q.args.dead_letter_routing_key.clone().unwrap_or_else(|| key.to_string());
            pending.push_back(DeadLetter {
                exchange: dlx.to_string(),
                routing_key,
                persistent: d.msg.persistent,
                entry,
            });
        }
    }

    /// Republishes queued dead letters, consecutive ones with the same
    /// route as one batch. Runs when no queue is borrowed (end of a
    /// request or timer); re-entry (a dead letter's publish dead-letters
    /// more) only queues, and the loop here picks it up.
    pub(super) fn flush_dead_letters(&self) {
        if self.dl_flushing.replace(true) {
            return;
        }
        loop {
            let batch: Vec<DeadLetter> = self.dl_pending.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                break;
            }
            let mut it = batch.into_iter().peekable();
            while let Some(first) = it.next() {
                let mut entries = vec![first.entry];
                while let Some(n) = it.next_if(|n| {
                    n.exchange == first.exchange
                        && n.routing_key == first.routing_key
                        && n.persistent == first.persistent
                }) {
                    entries.push(n.entry);
                }
                self.dead_letter(&first.exchange, &first.routing_key, first.persistent, entries);
            }
        }
        self.dl_flushing.set(false);
    }

    /// Publishes dead-lettered entries (already marked with `x-death`) to
    /// `exchange` with `routing_key`, like a publisher without confirms:
    /// routed with this shard's copy of the routing table (per message for
    /// a headers exchange), then into each queue. A dead-letter exchange
    /// that does not exist drops the messages, counted in
    /// `ringmq_messages_dead_lettered_dropped_total`, as RabbitMQ does.
    pub fn dead_letter(&self, exchange: &str, routing_key: &str, persistent: bool, entries: Vec<Bytes>) {
        if exchange.is_empty() {
            self.dead_letter_to_queue(routing_key, persistent, entries);
            return;
        }
        let mut per_queue: Vec<(String, Vec<Bytes>)> = Vec::new();
        {
            let table = self.routing.table.borrow();
            let mut out = Vec::new();
            let n = entries.len() as u64;
            for e in entries {
                let headers = parse_entry(&e).ok().and_then(|p| crate::routing::headers_of(p.props));
                if let Err(why) = table.route(exchange, routing_key, headers, &mut out) {
                    drop(table);
                    self.dead_letter_dropped(n, &format!("dead-letter exchange '{exchange}': {why}"));
                    return;
                }
                for q in out.drain(..) {
                    match per_queue.iter_mut().find(|(n, _)| n == q) {
                        Some((_, v)) => v.push(e.clone()),
                        None => per_queue.push((q.to_owned(), vec![e.clone()])),
                    }
                }
            }
        }
        for (queue, entries) in per_queue {
            self.dead_letter_to_queue(&queue, persistent, entries);
        }
    }

    /// Dead-letters entries into one queue: those that would close an
    /// automatic cycle (see `deadletter::is_cycle`) are dropped, the rest
    /// are published; a missing or full queue drops them, as RabbitMQ does.
    pub fn dead_letter_to_queue(&self, queue: &str, persistent: bool, entries: Vec<Bytes>) {
        let (keep, cycled): (Vec<Bytes>, Vec<Bytes>) =
            entries.into_iter().partition(|e| !deadletter::is_cycle(e, queue));
        if !cycled.is_empty() {
            bump(&self.counters.dead_lettered_dropped, cycled.len() as u64);
            tracing::debug!(queue, dropped = cycled.len(), "dead-letter cycle without a rejection: messages dropped");
        }
        if keep.is_empty() {
            return;
        }
        bump(&self.counters.dead_lettered, keep.len() as u64);
        // Conn id 0 is never a connection: replies to it are discarded.
        let from = ConnRef { shard: self.id, conn_id: 0 };
        let mode = PublishMode { persistent, confirm: false, partial: true };
        let owner = self.owner_of(queue);
        if owner == self.id {
            self.publish(from, 0, mode, queue, keep.into_iter());
            return;
        }
        let mut buf = BytesMut::with_capacity(keep.iter().map(Bytes::len).sum());
        for e in &keep {
            buf.extend_from_slice(e);
        }
        let req = Request::Publish {
            persistent,
            confirm: false,
            partial: true,
            queue: queue.into(),
            entries: buf.freeze(),
            count: keep.len() as u32,
        };
        self.mesh.forward(owner, MeshMsg::Request { from, request_id: 0, req });
    }

    fn dead_letter_dropped(&self, n: u64, why: &str) {
        bump(&self.counters.dead_lettered_dropped, n);
        if !self.dl_warned.replace(true) {
            tracing::warn!(shard = self.id, "dead-lettered messages dropped: {why} (logged once per shard)");
        } else {
            tracing::debug!(shard = self.id, n, "dead-lettered messages dropped: {why}");
        }
    }
}
