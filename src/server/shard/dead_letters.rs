//! Dead letters: messages a queue removed (expired, rejected, over its
//! length limit) with a dead-letter exchange are marked with `x-death`
//! and republished through it, as RabbitMQ does.
//!
//! `Shard::dead_letter` is the single place dead letters leave a queue
//! for an exchange. They are queued while a queue is borrowed
//! (`collect_dead`, from the settle step) and republished once none is
//! (`flush_dead_letters`, at the end of a request or timer).

use super::super::deadletter::{self, Death, Reason, Unmarkable};
use super::super::queue::Queue;
use super::super::types::{ConnRef, PublishMode, Request};
use super::{bump, Shard};
use crate::protocol::batch::parse_entry;
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

/// A dead-lettered message waiting to be republished.
struct DeadLetter {
    exchange: String,
    routing_key: String,
    persistent: bool,
    entry: Bytes,
}

/// Dead letters waiting to be republished, and the guard against
/// re-entry (a dead letter's publish dead-letters more). One part of
/// `Shard`.
#[derive(Default)]
pub struct DeadLetters {
    pending: RefCell<VecDeque<DeadLetter>>,
    flushing: Cell<bool>,
    /// A drop has been logged at warn level (once per shard).
    warned: Cell<bool>,
}

impl DeadLetters {
    fn push(&self, d: DeadLetter) {
        self.pending.borrow_mut().push_back(d);
    }

    /// Takes every dead letter waiting, oldest first.
    fn take(&self) -> Vec<DeadLetter> {
        self.pending.borrow_mut().drain(..).collect()
    }

    /// Starts a flush; false when one is already running.
    fn begin_flush(&self) -> bool {
        !self.flushing.replace(true)
    }

    fn end_flush(&self) {
        self.flushing.set(false);
    }

    /// Whether this is the shard's first dropped dead letter.
    fn first_drop(&self) -> bool {
        !self.warned.replace(true)
    }
}

impl Shard {
    /// Takes the messages a queue removed: persistent ones are logged gone;
    /// with a dead-letter exchange they are marked (`x-death`) and queued
    /// for republishing, otherwise dropped.
    pub(super) fn collect_dead(&self, q: &mut Queue) {
        let dead = q.take_dead();
        let seqs: Vec<(u64, usize)> =
            dead.iter().filter(|d| d.logged && d.msg.persistent).map(|d| (d.msg.seq, d.msg.bytes())).collect();
        self.log_gone(q, seqs);
        let has_dlx = usize::from(q.args.dead_letter_exchange.is_some());
        for d in &dead {
            bump(&self.counters.dead_by_reason[d.reason.index()][has_dlx], 1);
        }
        let Some(dlx) = q.args.dead_letter_exchange.as_deref() else { return };
        // The queue's arguments name exchanges and queues in its vhost;
        // x-death names them as its clients do.
        let (vhost, queue_name) = crate::routing::vhost::split(&q.name);
        let dlx_key =
            if dlx.is_empty() { String::new() } else { crate::routing::vhost::qualify(vhost, dlx).into_owned() };
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
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
                None => ("", queue_name),
            };
            let death = Death { queue: queue_name, reason: d.reason, exchange, routing_key: key, time };
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
            let mut routing_key = q.args.dead_letter_routing_key.clone().unwrap_or_else(|| key.to_string());
            if dlx.is_empty() {
                // Through the default exchange: the key names a queue of the vhost.
                routing_key = crate::routing::vhost::qualify_owned(vhost, routing_key);
            }
            self.dead_letters.push(DeadLetter {
                exchange: dlx_key.clone(),
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
        if !self.dead_letters.begin_flush() {
            return;
        }
        loop {
            let batch = self.dead_letters.take();
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
        self.dead_letters.end_flush();
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
        let name = crate::routing::vhost::name_of(queue);
        let (keep, cycled): (Vec<Bytes>, Vec<Bytes>) =
            entries.into_iter().partition(|e| !deadletter::is_cycle(e, name));
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
        let mode = PublishMode { persistent, confirm: false, partial: true, mandatory: None };
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
            mandatory: None,
            queue: queue.into(),
            entries: buf.freeze(),
            count: crate::protocol::wire::len32(keep.len()),
        };
        // Another shard here, or another node's (`submit` carries it).
        self.submit(from, 0, owner, req);
    }

    fn dead_letter_dropped(&self, n: u64, why: &str) {
        bump(&self.counters.dead_lettered_dropped, n);
        if self.dead_letters.first_drop() {
            tracing::warn!(shard = self.id, "dead-lettered messages dropped: {why} (logged once per shard)");
        } else {
            tracing::debug!(shard = self.id, n, "dead-lettered messages dropped: {why}");
        }
    }
}
