//! Queue metadata on the owner: declare (flags, arguments, redeclare
//! checks), delete, and the automatic removals (exclusive owner gone,
//! auto-delete, `x-expires`).

use super::super::policy::QueueArgs;
use super::super::queue::Queue;
use super::super::types::{ConnRef, QueueError, Reply};
use super::{bump, check_lock, not_found, Shard};
use crate::protocol::ErrorCode;

/// Flags of a declare beyond durable and passive, and the queue's
/// arguments (`Request::Declare`).
pub(super) struct DeclareOpts {
    pub exclusive: bool,
    pub auto_delete: bool,
    pub strict: bool,
    pub args: Box<QueueArgs>,
}

impl Shard {
    fn declare(&self, durable: bool, passive: bool, name: String, args: &QueueArgs) -> Result<u64, QueueError> {
        bump(&self.counters.queues_declared, 1);
        let mut queues = self.queues.borrow_mut();
        if let Some(q) = queues.get(&name) {
            if !passive && q.durable != durable {
                return Err(QueueError::new(
                    ErrorCode::QueueMismatch,
                    format!(
                        "queue {} exists with durable={}; declared with durable={durable}",
                        crate::routing::vhost::describe(&name),
                        q.durable
                    ),
                ));
            }
            return Ok(q.ready_len() as u64);
        }
        if passive {
            return Err(not_found(&name));
        }
        if queues.len() >= self.config.queues_per_shard_max as usize {
            return Err(QueueError::new(
                ErrorCode::QueueLimit,
                format!("shard {} holds queues_per_shard_max = {} queues", self.id, self.config.queues_per_shard_max),
            ));
        }
        self.log_declare(&name, durable, &args.raw)?;
        tracing::debug!(queue = %name, durable, "queue declared");
        queues.insert(name.clone(), self.queues.new_queue(name, durable, args.clone()));
        bump(&self.counters.queues_created, 1);
        Ok(0)
    }

    /// `declare` plus the exclusive and auto-delete flags, the arguments,
    /// and their checks. A declare counts as a use for `x-expires`.
    pub(super) fn declare_with(
        &self,
        from: ConnRef,
        durable: bool,
        passive: bool,
        name: String,
        o: DeclareOpts,
    ) -> Result<u64, QueueError> {
        let now = self.timers.now_ms();
        if o.args.stream && !passive {
            check_stream_flags(&name, durable, &o)?;
        }
        let existed = match self.queues.borrow_mut().get_mut(&name) {
            Some(q) => {
                check_lock(q, from)?;
                if o.strict
                    && !passive
                    && (q.exclusive_owner.is_some() != o.exclusive || q.auto_delete != o.auto_delete)
                {
                    return Err(QueueError::new(
                        ErrorCode::QueueMismatch,
                        format!(
                            "queue '{name}' exists with exclusive={} auto_delete={}",
                            q.exclusive_owner.is_some(),
                            q.auto_delete
                        ),
                    ));
                }
                if !passive {
                    q.args
                        .equivalent(&o.args, &name)
                        .map_err(|m| QueueError::new(ErrorCode::QueueMismatch, m.to_string()))?;
                }
                q.touch(now);
                // Counts after expiry, as a consumer would see them.
                self.settle(q);
                true
            }
            None => false,
        };
        let ready = self.declare(durable, passive, name.clone(), &o.args)?;
        let mut queues = self.queues.borrow_mut();
        let Some(q) = queues.get_mut(&name) else { return Ok(ready) };
        if !existed {
            q.exclusive_owner = o.exclusive.then_some(from);
            q.auto_delete = o.auto_delete;
            q.touch(now);
            self.settle(q);
        }
        if o.strict {
            return Ok((q.consumer_count() as u64) << 32 | ready.min(u64::from(u32::MAX)));
        }
        Ok(ready)
    }

    /// `Ok(None)`: the answer to `reply` (connection, request id) goes out
    /// later (`queue_gone`).
    fn delete(
        &self,
        (if_empty, if_unused): (bool, bool),
        name: &str,
        reply: Option<(ConnRef, u64)>,
    ) -> Result<Option<u64>, QueueError> {
        let mut queues = self.queues.borrow_mut();
        let q = queues.get(name).ok_or_else(|| not_found(name))?;
        if if_unused && q.consumer_count() > 0 {
            return Err(QueueError::new(
                ErrorCode::QueueMismatch,
                format!("queue {} in use", crate::routing::vhost::describe(name)),
            ));
        }
        if if_empty && q.ready_len() + q.unacked_len() > 0 {
            return Err(QueueError::new(
                ErrorCode::QueueMismatch,
                format!("queue {} is not empty", crate::routing::vhost::describe(name)),
            ));
        }
        let n = q.ready_len() as u64;
        if let Some(q) = queues.remove(name) {
            self.forget_resident(&q);
            bump(&self.counters.queues_deleted, 1);
        }
        self.log_delete(name);
        let deferred = self.queue_gone(name, reply.map(|(to, id)| (to, id, n)));
        tracing::debug!(queue = %name, "queue deleted");
        Ok((!deferred).then_some(n))
    }

    /// `delete` after the exclusive check; push consumers hear that their
    /// queue is gone.
    /// `conditions`: (if-empty, if-unused).
    /// With `request_id`, the Ok may be sent later (`Ok(None)`, see
    /// `delete`).
    pub(super) fn delete_from(
        &self,
        from: ConnRef,
        conditions: (bool, bool),
        name: &str,
        request_id: Option<u64>,
    ) -> Result<Option<u64>, QueueError> {
        let consumers: Vec<(ConnRef, u32)> = {
            let queues = self.queues.borrow();
            let q = queues.get(name).ok_or_else(|| not_found(name))?;
            check_lock(q, from)?;
            q.push_consumers().collect()
        };
        let n = self.delete(conditions, name, request_id.map(|id| (from, id)))?;
        self.publish_pause.notify_resume();
        for (to, consumer_id) in consumers {
            self.route_reply(to, Reply::ConsumerGone { consumer_id });
        }
        Ok(n)
    }

    /// Deletes an auto-delete queue that has lost its last consumer. Also
    /// wakes publishers paused on a queue that may have lost its consumers
    /// (they resume when it has none).
    pub(super) fn auto_delete_check(&self, name: &str) {
        self.publish_pause.notify_resume();
        let mut queues = self.queues.borrow_mut();
        if queues.get(name).is_some_and(Queue::auto_delete_due) {
            self.remove_queue(&mut queues, name);
        }
    }

    pub(super) fn remove_queue(&self, queues: &mut super::queues::QueueMap, name: &str) {
        if let Some(q) = queues.remove(name) {
            self.forget_resident(&q);
            bump(&self.counters.queues_deleted, 1);
            self.log_delete(name);
            self.queue_gone(name, None);
            for (to, consumer_id) in q.push_consumers() {
                self.route_reply(to, Reply::ConsumerGone { consumer_id });
            }
            tracing::debug!(queue = %name, "queue deleted (exclusive owner closed, auto-delete or x-expires)");
        }
    }
}

/// A stream is durable, and neither exclusive nor auto-delete: RabbitMQ's
/// checks, in its order and words.
fn check_stream_flags(name: &str, durable: bool, o: &DeclareOpts) -> Result<(), QueueError> {
    let bad = if o.auto_delete {
        "auto-delete"
    } else if o.exclusive {
        "exclusive-owner"
    } else if !durable {
        "non-durable"
    } else {
        return Ok(());
    };
    let queue = crate::routing::vhost::describe(name);
    Err(QueueError::new(ErrorCode::InvalidArgument, format!("invalid property '{bad}' for queue {queue}")))
}
