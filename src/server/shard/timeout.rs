//! The consumer timeout (`consumer_timeout_ms`, as RabbitMQ's): a consumer
//! that leaves a delivery unacked that long loses its consumer, and every
//! message it had not acked goes back to its queue for others. Checked by
//! one periodic sweep per shard over each consumer's oldest unacked
//! delivery (a mark per delivery batch, `queue/consumer.rs`), never by a
//! timer per message.

use super::super::types::Reply;
use super::{bump, Shard};
use std::rc::Rc;
use std::time::Duration;

/// How often the sweep runs for a timeout: a quarter of it, between 10 ms
/// and 10 s, so a consumer is cancelled within 1.25 times its timeout.
pub fn sweep_period(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 4).clamp(10, 10_000))
}

impl Shard {
    /// The sweep task; returns at once when the timeout is off (0).
    pub async fn run_consumer_timeouts(self: Rc<Self>) {
        let timeout = self.config.consumer_timeout_ms;
        if timeout == 0 {
            return;
        }
        loop {
            glommio::timer::sleep(sweep_period(timeout)).await;
            self.sweep_consumer_timeouts(timeout);
        }
    }

    /// Cancels every consumer whose oldest unacked delivery is `timeout`
    /// ms old or more: its connection is told (AMQP closes the channel
    /// with 406, native gets a `ConsumerCancelled` notice), its unacked
    /// messages are requeued and dispatched to the others.
    pub(super) fn sweep_consumer_timeouts(&self, timeout: u64) {
        let now = self.timers.now_ms();
        let mut emptied = Vec::new();
        {
            let mut queues = self.queues.borrow_mut();
            for q in queues.values_mut() {
                if !q.has_unacked() {
                    continue;
                }
                let (gone, requeued) = q.expire_consumers(now, timeout);
                if gone.is_empty() {
                    continue;
                }
                bump(&self.counters.redelivered, requeued as u64);
                for (to, consumer_id) in gone {
                    tracing::warn!(
                        queue = %q.name, conn = ?to, consumer_id, timeout_ms = timeout,
                        "consumer cancelled: a delivery stayed unacked past consumer_timeout_ms"
                    );
                    let message = format!(
                        "delivery acknowledgement on queue '{}' timed out. Timeout value used: {timeout} ms \
                         (consumer_timeout_ms)",
                        q.name
                    );
                    self.route_reply(to, Reply::ConsumerTimeout { consumer_id, timeout_ms: timeout, message });
                }
                self.settle(q);
                if q.auto_delete_due() {
                    emptied.push(q.name.clone());
                }
            }
        }
        for name in emptied {
            self.auto_delete_check(&name);
        }
        self.flush_dead_letters();
    }
}

#[cfg(test)]
mod tests {
    use super::sweep_period;
    use std::time::Duration;

    #[test]
    fn sweep_period_is_a_quarter_within_bounds() {
        assert_eq!(sweep_period(1_800_000), Duration::from_secs(10));
        assert_eq!(sweep_period(400), Duration::from_millis(100));
        assert_eq!(sweep_period(1), Duration::from_millis(10));
    }
}
