//! Publish pause across shards. A connection publishing to a queue on its
//! own shard stops reading while that queue's backlog is past
//! `publish_pause_messages` (`Shard::wait_publish_resume`). A connection on
//! another shard (an AMQP client lands on any shard) cannot watch the
//! queue, so the owner tells it: `Reply::PublishPaused` once its publish
//! takes the queue over the mark, `Reply::PublishResumed` once the queue
//! has drained to half, lost its consumers or gone. Without this a max-rate
//! publisher on the wrong shard grows the queue without bound, and the
//! consumer's acks wait behind its publishes on the mesh.

use super::Shard;
use crate::server::types::{ConnRef, Reply};
use std::rc::Rc;

impl Shard {
    /// After a publish from a connection on another shard: pauses it if
    /// the queue is over the mark (once per connection and queue).
    pub(super) fn pause_if_remote(&self, from: ConnRef, queue: &str) {
        // Conn id 0 is the shard itself (dead letters): nobody to pause.
        if from.shard == self.id || from.conn_id == 0 || !self.over_publish_pause(queue) {
            return;
        }
        let mut paused = self.remote_paused.borrow_mut();
        if paused.iter().any(|(c, q)| *c == from && q == queue) {
            return;
        }
        paused.push((from, queue.to_string()));
        drop(paused);
        tracing::debug!(shard = self.id, ?from, queue, "remote publisher paused");
        self.route_reply(from, Reply::PublishPaused { queue: queue.to_string() });
    }

    /// The shard's task that resumes paused remote publishers: woken by
    /// the same signal as local ones, it checks the same condition.
    pub async fn run_remote_resumes(self: Rc<Self>) {
        loop {
            let n = self.publish_resume.notified();
            let due: Vec<(ConnRef, String)> = {
                let queues = self.queues.borrow();
                let mut paused = self.remote_paused.borrow_mut();
                let mut due = Vec::new();
                paused.retain(|(c, name)| {
                    let go_on = queues.get(name).is_none_or(|q| !self.over_half_pause(q) || q.consumer_count() == 0);
                    if go_on {
                        due.push((*c, name.clone()));
                    }
                    !go_on
                });
                due
            };
            for (c, queue) in due {
                tracing::debug!(shard = self.id, conn = ?c, queue, "remote publisher resumed");
                self.route_reply(c, Reply::PublishResumed { queue });
            }
            n.await;
        }
    }
}
