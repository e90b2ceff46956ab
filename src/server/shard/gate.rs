//! The owner's side of delivery back pressure (`server/gate.rs`): the
//! connections whose outbox is full, skipped by dispatch, and the queues
//! to dispatch again when they drain.

use super::super::queue::Queue;
use super::super::types::ConnRef;
use super::Shard;

impl Shard {
    /// Whether dispatch may hand `c` more messages: its outbox is not full.
    /// The hot path: one `is_empty` while no connection is stopped.
    pub(super) fn takes_deliveries(&self, c: ConnRef) -> bool {
        let stopped = self.stopped.borrow();
        stopped.is_empty() || !stopped.contains_key(&c)
    }

    /// A connection's outbox filled (`open: false`: stop dispatching to
    /// it) or drained (dispatch again to the queues that skipped it).
    pub(super) fn deliveries_gate(&self, from: ConnRef, open: bool) {
        if !open {
            self.stopped.borrow_mut().entry(from).or_default();
            return;
        }
        let Some(skipped) = self.stopped.borrow_mut().remove(&from) else { return };
        let mut queues = self.queues.borrow_mut();
        for name in skipped {
            if let Some(q) = queues.get_mut(&name) {
                self.settle(q);
            }
        }
    }

    /// After a dispatch skipped stopped connections: remember the queue
    /// for each, to dispatch it again when they drain.
    pub(super) fn note_skipped(&self, q: &Queue) {
        let mut stopped = self.stopped.borrow_mut();
        for (c, _) in q.all_consumers() {
            if let Some(names) = stopped.get_mut(&c) {
                if !names.contains(&q.name) {
                    names.push(q.name.clone());
                }
            }
        }
    }
}
