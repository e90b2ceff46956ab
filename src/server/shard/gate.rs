//! The owner's side of delivery back pressure (`server/gate.rs`): how many
//! bytes each consumer's connection may take, the connections stopped until
//! they drain, and the queues to dispatch again when they do.
//!
//! A connection on this shard is asked directly: its room is
//! `outbox_bytes_max` less what its outbox holds; once that runs out it is
//! stopped, and its gate resumes it when the outbox has drained to half. A
//! connection on another shard has a window of credit instead: the bytes
//! forwarded to it and not yet granted back stay within
//! [`remote_window`]; its gate grants them back while its outbox is at
//! half or below, so the outbox never holds more than its bound plus one
//! message per consumer.

use super::super::gate::remote_window;
use super::super::queue::{delivery_cost, Queue};
use super::super::types::{ConnRef, Delivered};
use super::Shard;
use std::cell::RefCell;
use std::collections::HashMap;

type ConnMap<T> = HashMap<ConnRef, T, ahash::RandomState>;

/// Connections whose outbox is full, the queues that skipped them since,
/// and the bytes forwarded to remote ones. One part of `Shard`.
pub struct StoppedConns {
    conns: RefCell<ConnMap<Vec<String>>>,
    /// Bytes forwarded to each connection on another shard and not yet
    /// granted back.
    forwarded: RefCell<ConnMap<usize>>,
    /// What may be forwarded to one remote connection and not granted back.
    window: usize,
}

impl StoppedConns {
    pub(super) fn new(outbox_bytes_max: u32, shards: u16) -> Self {
        let window = remote_window(outbox_bytes_max, shards);
        Self { conns: RefCell::default(), forwarded: RefCell::default(), window }
    }

    /// Whether `c` is stopped. The hot path: one `is_empty` while no
    /// connection is.
    #[inline]
    fn is_stopped(&self, c: ConnRef) -> bool {
        let stopped = self.conns.borrow();
        !stopped.is_empty() && stopped.contains_key(&c)
    }

    /// Stops dispatching to `c` until it drains.
    fn stop(&self, c: ConnRef) {
        self.conns.borrow_mut().entry(c).or_default();
    }

    /// Resumes `c` (it drained): the queues that skipped it.
    fn take(&self, c: ConnRef) -> Option<Vec<String>> {
        self.conns.borrow_mut().remove(&c)
    }

    /// Forgets `c`: it closed.
    pub(super) fn forget(&self, c: ConnRef) {
        self.forwarded.borrow_mut().remove(&c);
        self.conns.borrow_mut().remove(&c);
    }

    /// After a dispatch skipped stopped connections: remember the queue
    /// for each, to dispatch it again when they drain.
    fn note_skipped(&self, q: &Queue) {
        let mut stopped = self.conns.borrow_mut();
        for (c, _) in q.all_consumers() {
            if let Some(names) = stopped.get_mut(&c) {
                if !names.contains(&q.name) {
                    names.push(q.name.clone());
                }
            }
        }
    }

    /// A remote connection's window of credit.
    pub(super) fn window(&self) -> usize {
        self.window
    }

    fn remote_room(&self, c: ConnRef) -> usize {
        let sent = self.forwarded.borrow().get(&c).copied().unwrap_or(0);
        let window = if crate::server::remote::is_remote(c.shard) {
            self.window.max(crate::server::gate::REMOTE_NODE_WINDOW_MIN)
        } else {
            self.window
        };
        window.saturating_sub(sent)
    }

    /// Remote connection `c` granted `bytes` back.
    fn granted(&self, c: ConnRef, bytes: usize) {
        if let Some(sent) = self.forwarded.borrow_mut().get_mut(&c) {
            *sent = sent.saturating_sub(bytes);
        }
    }

    /// Counts a batch forwarded to remote connection `c`.
    pub(super) fn forwarded(&self, c: ConnRef, msgs: &[Delivered]) {
        let bytes: usize = msgs.iter().map(|m| delivery_cost(m.entry.len())).sum();
        let mut forwarded = self.forwarded.borrow_mut();
        let sent = forwarded.entry(c).or_default();
        *sent = sent.saturating_add(bytes);
    }
}

impl Shard {
    /// Bytes consumer connection `c` may take in one dispatch: none while
    /// it is stopped.
    pub(super) fn delivery_room(&self, c: ConnRef) -> usize {
        if self.stopped.is_stopped(c) {
            0
        } else if c.shard == self.id {
            self.conns.with(c.conn_id, |s| s.delivery_room()).unwrap_or(usize::MAX)
        } else {
            self.stopped.remote_room(c)
        }
    }

    /// After a dispatch: stops the connections whose room ran out (one on
    /// this shard is told, and its gate resumes this owner once it drains;
    /// one on another shard resumes with its next grant of credit), and
    /// remembers the queue for every stopped one it skipped.
    pub(super) fn after_gated(&self, q: &Queue, full: &[ConnRef], skipped: bool) {
        for &c in full {
            self.stopped.stop(c);
            if c.shard == self.id {
                if let Some(s) = self.conns.get(c.conn_id) {
                    s.deliveries_stopped(self.id);
                }
            }
        }
        if skipped || !full.is_empty() {
            self.stopped.note_skipped(q);
        }
    }

    /// A remote connection granted credit back: room again, so dispatch to
    /// it resumes if it was stopped.
    pub(super) fn deliveries_credit(&self, from: ConnRef, bytes: usize) {
        self.stopped.granted(from, bytes);
        self.deliveries_resumed(from);
    }

    /// A connection's outbox drained: dispatch again to the queues that
    /// skipped it.
    pub(super) fn deliveries_resumed(&self, from: ConnRef) {
        let Some(skipped) = self.stopped.take(from) else { return };
        let mut queues = self.queues.borrow_mut();
        for name in skipped {
            if let Some(q) = queues.get_mut(&name) {
                self.settle(q);
            }
        }
    }
}
