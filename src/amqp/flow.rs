//! A connection's flow to and from the queue owners: the acks it gathers
//! (sent once per read, merged into ranges), the publish pause an owner on
//! another shard asks of it, and the wait while a pause or a resource
//! alarm blocks it.

use super::conn::{rid, AmqpConn, Phase, KIND_IGNORE};
use crate::protocol::amqp::method::{self, id};
use crate::protocol::amqp::wire::put_shortstr;
use crate::server::types::Request;
use std::collections::HashMap;

impl AmqpConn {
    /// Sends gathered acks, merged into ranges per consumer.
    pub fn flush_acks(&self) {
        let acks = std::mem::take(&mut *self.acks.borrow_mut());
        if acks.is_empty() {
            return;
        }
        let mut by: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for (cid, first, last) in acks {
            let v = by.entry(cid).or_default();
            match v.last_mut() {
                Some(l) if l.1 + 1 == first => l.1 = last,
                _ => v.push((first, last)),
            }
        }
        let reqs: Vec<(u16, Request)> = {
            let st = self.st.borrow();
            by.into_iter()
                .filter_map(|(consumer_id, ranges)| {
                    let c = st.consumers.get(&consumer_id)?;
                    Some((c.owner, Request::Ack { consumer_id, queue: c.queue.clone(), ranges }))
                })
                .collect()
        };
        // Sent with the state free: the deliveries the acks make room for
        // are then encoded at once rather than held in the inbox.
        for (owner, req) in reqs {
            self.shard.submit(self.me(), rid(KIND_IGNORE, 0, 0), owner, req);
        }
    }

    /// A queue owner on another shard pauses or resumes this connection's
    /// publishing. A connection that also consumes is never paused: its
    /// acks may be what drains the queue.
    pub fn remote_pause(&self, queue: &str, pause: bool) {
        let mut paused = self.remote_paused.borrow_mut();
        if !pause {
            paused.retain(|q| q != queue);
            self.resumed.notify();
        } else if self.st.borrow().consumers.is_empty() && !paused.iter().any(|q| q == queue) {
            paused.push(queue.to_string());
        }
    }

    pub(super) async fn wait_remote_resume(&self) {
        loop {
            let n = self.resumed.notified();
            if self.remote_paused.borrow().is_empty() || self.done.get() || self.outbox.is_closing() {
                return;
            }
            n.await;
        }
    }

    /// Stops reading while a publish pause (a deep queue) or, after a read
    /// that carried a publish, a resource alarm is in effect; a client
    /// with the `connection.blocked` capability hears connection.blocked
    /// (why) before and connection.unblocked after.
    pub(super) async fn block_if_needed(&self) {
        let paused = self.paused_on.borrow_mut().take();
        let remote = self.remote_paused.borrow().first().cloned();
        let pause = paused.or(remote);
        let alarm = self.published.replace(false) && self.shard.alarm_in_effect();
        if pause.is_none() && !alarm {
            return;
        }
        let tell = self.st.borrow().blocked_cap;
        if tell {
            let why = match &pause {
                _ if alarm => self.shard.alarms().reason(),
                Some(q) => format!("queue '{q}' is over publish_pause_messages"),
                None => String::new(),
            };
            // put_shortstr cuts the text at 255 bytes.
            self.outbox.push(|b| method::put(b, 0, id::CONNECTION_BLOCKED, |b| put_shortstr(b, &why)));
        }
        if alarm {
            tracing::debug!(peer = ?self.peer, "AMQP publisher blocked by a resource alarm");
            self.shard.wait_alarm_clear(self.closing()).await;
        }
        if let Some(q) = pause {
            self.shard.wait_publish_resume(&q).await;
            self.wait_remote_resume().await;
        }
        if tell {
            self.outbox.push(|b| method::put(b, 0, id::CONNECTION_UNBLOCKED, |_| ()));
        }
    }

    /// Finishes once the connection is closing (either side) or its
    /// socket is gone: a blocked connection must read again to see the
    /// close handshake.
    async fn closing(&self) {
        let closing = async {
            loop {
                let n = self.kick.notified();
                if self.done.get() || self.st.borrow().phase != Phase::Running {
                    return;
                }
                n.await;
            }
        };
        futures_lite::future::or(closing, self.outbox.wait_finished()).await
    }
}
