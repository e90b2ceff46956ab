//! Publish pause. A connection publishing to a queue on its own shard
//! stops reading while that queue's backlog is past
//! `publish_pause_messages` (`Shard::wait_publish_resume`). A connection on
//! another shard or node (an AMQP client lands on any shard), publishing
//! directly or through an exchange, cannot watch the queue, so the owner
//! tells it: `Reply::PublishPaused` once its publish
//! takes the queue over the mark, `Reply::PublishResumed` once the queue
//! has drained to half, lost its consumers or gone. Without this a max-rate
//! publisher on the wrong shard grows the queue without bound, and the
//! consumer's acks wait behind its publishes on the mesh.

use super::super::queue::Queue;
use super::Shard;
use crate::rt::notify::Notified;
use crate::rt::Notify;
use crate::server::config::Config;
use crate::server::types::{ConnRef, Reply};
use std::cell::RefCell;
use std::rc::Rc;

/// The marks publishers pause at, the signal that wakes them, and the
/// publishers on other shards paused on this shard's queues. One part of
/// `Shard`.
pub struct PublishPause {
    /// `publish_pause_messages`, `publish_pause_bytes`.
    messages: u64,
    bytes: u64,
    /// Signalled when a queue's backlog may have fallen back under half
    /// of the mark (or it lost its consumers, or went away).
    resume: Notify,
    /// Connections on other shards told to pause on a queue of this one,
    /// until it drains.
    remote: RefCell<Vec<(ConnRef, String)>>,
}

impl PublishPause {
    pub fn new(config: &Config) -> Self {
        Self {
            messages: config.publish_pause_messages,
            bytes: config.publish_pause_bytes,
            resume: Notify::default(),
            remote: RefCell::default(),
        }
    }

    /// Whether publishers to `q` should stop reading: its backlog is past
    /// the mark and it has consumers that will drain it. Without consumers
    /// the queue simply fills up to its limit; pausing would only stall
    /// the connection.
    fn over(&self, q: &Queue) -> bool {
        (q.ready_len() as u64 > self.messages || q.ready_bytes() > self.bytes) && q.consumer_count() > 0
    }

    /// Whether `q`'s backlog is past half the mark.
    pub(super) fn over_half(&self, q: &Queue) -> bool {
        q.ready_len() as u64 > self.messages / 2 || q.ready_bytes() > self.bytes / 2
    }

    /// Whether publishers paused on `q` may go on: it drained to half of
    /// the mark or lost its consumers.
    fn may_resume(&self, q: &Queue) -> bool {
        !self.over_half(q) || q.consumer_count() == 0
    }

    /// Wakes paused publishers to check their queue again.
    pub(super) fn notify_resume(&self) {
        self.resume.notify();
    }

    fn resumed(&self) -> Notified<'_> {
        self.resume.notified()
    }

    /// Records that `from` is paused on `queue`; false when it already was.
    fn pause_remote(&self, from: ConnRef, queue: &str) -> bool {
        let mut paused = self.remote.borrow_mut();
        if paused.iter().any(|(c, q)| *c == from && q == queue) {
            return false;
        }
        paused.push((from, queue.to_string()));
        true
    }

    /// Whether any publisher elsewhere is paused on this shard's queues.
    pub(super) fn has_remote(&self) -> bool {
        !self.remote.borrow().is_empty()
    }

    /// Takes the remote publishers `go_on` says may resume on their queue.
    fn take_resumable(&self, mut go_on: impl FnMut(ConnRef, &str) -> bool) -> Vec<(ConnRef, String)> {
        let mut due = Vec::new();
        self.remote.borrow_mut().retain(|(c, name)| {
            let go = go_on(*c, name);
            if go {
                due.push((*c, name.clone()));
            }
            !go
        });
        due
    }
}

impl Shard {
    /// Whether publishers to this (local) queue should stop reading
    /// (`PublishPause::over`).
    pub fn over_publish_pause(&self, queue: &str) -> bool {
        self.queues.borrow().get(queue).is_some_and(|q| self.publish_pause.over(q))
    }

    /// Waits until `queue` has drained to half of `publish_pause_messages`,
    /// lost its consumers, or gone away.
    pub async fn wait_publish_resume(&self, queue: &str) {
        loop {
            let n = self.publish_pause.resumed();
            if self.may_resume(queue) {
                return;
            }
            n.await;
        }
    }

    /// Whether the resource alarm holds publisher `c` back: one on another
    /// node, while an alarm is in effect here.
    fn alarm_pauses(&self, c: ConnRef) -> bool {
        crate::server::remote::is_remote(c.shard) && self.alarm_in_effect()
    }

    fn may_resume(&self, queue: &str) -> bool {
        self.queues.borrow().get(queue).is_none_or(|q| self.publish_pause.may_resume(q))
    }

    /// After a publish from a connection on another shard: pauses it if
    /// the queue is over the mark (once per connection and queue). One on
    /// another node is paused by this node's resource alarm too: its node
    /// does not see the alarm, and its publishes arrive over a data link,
    /// which no alarm blocks.
    pub(super) fn pause_if_remote(&self, from: ConnRef, queue: &str) {
        // Conn id 0 is the shard itself (dead letters): nobody to pause. A
        // fan-in (a routed batch with confirms split over several owners)
        // only counts answers: its publisher is not paused (the fan-in may
        // be gone before the queue drains, and a resume would be lost).
        if from.shard == self.id || from.conn_id == 0 || from.conn_id & super::routing_replica::FANIN_BIT != 0 {
            return;
        }
        if !self.over_publish_pause(queue) && !self.alarm_pauses(from) {
            return;
        }
        if !self.publish_pause.pause_remote(from, queue) {
            return;
        }
        tracing::debug!(shard = self.id, ?from, queue, "remote publisher paused");
        self.route_reply(from, Reply::PublishPaused { queue: queue.to_string() });
    }

    /// The shard's task that resumes paused remote publishers: woken by
    /// the same signal as local ones, it checks the same condition.
    pub async fn run_remote_resumes(self: Rc<Self>) {
        loop {
            let n = self.publish_pause.resumed();
            let due = self.publish_pause.take_resumable(|c, name| self.may_resume(name) && !self.alarm_pauses(c));
            for (c, queue) in due {
                tracing::debug!(shard = self.id, conn = ?c, queue, "remote publisher resumed");
                self.route_reply(c, Reply::PublishResumed { queue });
            }
            n.await;
        }
    }
}
