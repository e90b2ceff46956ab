//! The owner's side of delivery back pressure (`server/gate.rs`): the
//! connections whose outbox is full, skipped by dispatch, and the queues
//! to dispatch again when they drain.

use super::super::queue::Queue;
use super::super::types::ConnRef;
use super::Shard;
use std::cell::RefCell;
use std::collections::HashMap;

/// Connections whose outbox is full, and the queues that skipped them
/// since: dispatched again when they drain. One part of `Shard`.
#[derive(Default)]
pub struct StoppedConns {
    conns: RefCell<HashMap<ConnRef, Vec<String>, ahash::RandomState>>,
}

impl StoppedConns {
    /// Whether dispatch may hand `c` more messages: its outbox is not full.
    /// The hot path: one `is_empty` while no connection is stopped.
    #[inline]
    pub(super) fn takes(&self, c: ConnRef) -> bool {
        let stopped = self.conns.borrow();
        stopped.is_empty() || !stopped.contains_key(&c)
    }

    /// Stops dispatching to `c` until it drains.
    pub(super) fn stop(&self, c: ConnRef) {
        self.conns.borrow_mut().entry(c).or_default();
    }

    /// Forgets `c` (it drained or closed): the queues that skipped it.
    pub(super) fn take(&self, c: ConnRef) -> Option<Vec<String>> {
        self.conns.borrow_mut().remove(&c)
    }

    /// After a dispatch skipped stopped connections: remember the queue
    /// for each, to dispatch it again when they drain.
    pub(super) fn note_skipped(&self, q: &Queue) {
        let mut stopped = self.conns.borrow_mut();
        for (c, _) in q.all_consumers() {
            if let Some(names) = stopped.get_mut(&c) {
                if !names.contains(&q.name) {
                    names.push(q.name.clone());
                }
            }
        }
    }
}

impl Shard {
    /// A connection's outbox filled (`open: false`: stop dispatching to
    /// it) or drained (dispatch again to the queues that skipped it).
    pub(super) fn deliveries_gate(&self, from: ConnRef, open: bool) {
        if !open {
            self.stopped.stop(from);
            return;
        }
        let Some(skipped) = self.stopped.take(from) else { return };
        let mut queues = self.queues.borrow_mut();
        for name in skipped {
            if let Some(q) = queues.get_mut(&name) {
                self.settle(q);
            }
        }
    }
}
