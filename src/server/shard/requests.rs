//! The owner's side of the requests that touch one queue's consumers, and
//! of a publish forwarded from another shard: one function per request
//! (`Shard::handle_one` dispatches). Each returns the answer to send after
//! the log, or `None` when it answers itself (or sends none).

use super::super::types::{ConnRef, PublishMode, QueueError, Reply, StreamStart};
use super::{bump, check_lock, not_found, Shard};
use crate::protocol::{Entries, ErrorCode};
use bytes::Bytes;

type Answer = Option<Result<u64, QueueError>>;

impl Shard {
    /// A publish another shard forwarded: its bytes were validated there,
    /// and are checked again because they crossed a boundary.
    pub(super) fn forwarded_publish(
        &self,
        from: ConnRef,
        request_id: u64,
        mode: PublishMode,
        queue: &str,
        (entries, count): (Bytes, u32),
    ) -> Answer {
        match Entries::parse(&entries, count) {
            Ok(parsed) => {
                let msgs = parsed.raw_iter().map(|raw| entries.slice_ref(raw));
                self.publish(from, request_id, mode, queue, msgs);
            }
            Err(e) => {
                tracing::error!(error = %e, "forwarded publish failed validation (bug)");
                let reply = Reply::error(request_id, ErrorCode::Internal, "forwarded batch was corrupt");
                self.route_reply(from, reply);
            }
        }
        None
    }

    /// The Ok goes out before the consumer's first Deliver.
    pub(super) fn subscribe(
        &self,
        from: ConnRef,
        request_id: u64,
        (consumer_id, prefetch, exclusive, priority, auto_ack): (u32, u32, bool, i64, bool),
        stream: StreamStart,
        queue: &str,
    ) -> Answer {
        let now = self.timers.now_ms();
        let r = self.queues.borrow_mut().get_mut(queue).ok_or_else(|| not_found(queue)).and_then(|q| {
            check_lock(q, from)?;
            q.touch(now);
            if q.is_stream() {
                return q.subscribe_stream(from, consumer_id, prefetch, stream);
            }
            q.subscribe_with(from, consumer_id, prefetch, exclusive, priority)?;
            if auto_ack {
                q.set_auto_ack(from, consumer_id);
            }
            Ok(())
        });
        let ok = r.is_ok();
        self.reply_result(from, request_id, r.map(|()| 0));
        if ok {
            if let Some(q) = self.queues.borrow_mut().get_mut(queue) {
                self.settle(q);
            }
        }
        None
    }

    pub(super) fn unsubscribe(&self, from: ConnRef, consumer_id: u32, queue: &str) -> Result<u64, QueueError> {
        let now = self.timers.now_ms();
        let r = self.with_queue(queue, |q| {
            q.touch(now);
            q.unsubscribe(from, consumer_id).map(|()| 0)
        });
        self.auto_delete_check(queue);
        r
    }

    /// AMQP basic.cancel: answered by the front end; only a failure here.
    pub(super) fn cancel(&self, from: ConnRef, consumer_id: u32, queue: &str) -> Answer {
        let now = self.timers.now_ms();
        let r = self.with_queue(queue, |q| {
            q.touch(now);
            q.cancel(from, consumer_id)
        });
        self.auto_delete_check(queue);
        r.err().map(Err)
    }

    /// Acks are not answered; only a failure is.
    pub(super) fn ack(&self, from: ConnRef, consumer_id: u32, queue: &str, ranges: &[(u64, u64)]) -> Answer {
        let r = self.with_queue(queue, |q| {
            let auto = q.is_auto_ack(from, consumer_id);
            self.ack_logged(q, from, consumer_id, ranges).map(|n| (n as u64, auto))
        });
        match r {
            // An auto-ack consumer's acks come from the front end, not
            // the client: RabbitMQ does not count them as acknowledged.
            Ok((n, auto)) => {
                if !auto {
                    bump(&self.counters.acked, n);
                }
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Nacks are not answered; only a failure is.
    pub(super) fn nack(
        &self,
        from: ConnRef,
        consumer_id: u32,
        queue: &str,
        requeue: bool,
        ranges: &[(u64, u64)],
    ) -> Answer {
        let r = self.with_queue(queue, |q| self.nack_logged(q, from, consumer_id, requeue, ranges).map(|n| n as u64));
        r.err().map(Err)
    }
}
