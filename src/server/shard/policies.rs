//! The shard's side of queue policies: the settle step after every request
//! on a queue (dispatch, expiry at the head, the length limit), which arms
//! the queue's timer (`timers.rs`) and hands removed messages to
//! dead-lettering (`dead_letters.rs`).

use super::super::queue::Queue;
use super::{bump, Shard};

impl Shard {
    /// After a request on a queue: deliver what can go, then expire heads
    /// whose deadline has come and apply `drop-head` (in that order, so a
    /// message with a TTL of 0 or a full queue still reaches a consumer
    /// waiting for it, as with RabbitMQ), hand removed messages to the log
    /// and to dead-lettering, and re-arm the queue's timer.
    pub(super) fn settle(&self, q: &mut Queue) {
        self.settle_at(q, self.timers.now_ms());
    }

    /// `settle` with the clock read by the caller (`with_queue_at`).
    pub(super) fn settle_at(&self, q: &mut Queue, now: u64) {
        let d = q.dispatch_gated(
            &mut |to, consumer_id, first_tag, msgs| self.deliver(to, consumer_id, first_tag, msgs),
            &|c| self.delivery_room(c),
            now,
        );
        self.after_gated(q, &d.full, d.skipped);
        let n = d.sent;
        bump(&self.counters.delivered, n as u64);
        bump(&self.counters.delivered_consume_auto_ack, d.sent_auto_ack as u64);
        if n > 0 && !self.publish_pause.over_half(q) {
            self.publish_pause.notify_resume();
        }
        q.enforce(now);
        if q.has_dead() {
            self.collect_dead(q);
        }
        // Resident bytes, and read-backs of spilled messages now due.
        self.after_dispatch(q);
        self.timers.arm(q);
    }
}
