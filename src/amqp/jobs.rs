//! What a connection asks of the queue owners, submitted once no borrow
//! of its state is held (see `conn.rs`): the jobs its handlers queue, the
//! acks it gathers, the publish pause an owner on another shard asks of
//! it in return, and the wait while a pause or a resource alarm blocks it.

use super::conn::{rid, AmqpConn, Phase, KIND_IGNORE};
use crate::protocol::amqp::method::{self, id};
use crate::protocol::amqp::wire::put_shortstr;
use crate::routing::{BindingDef, Dest, ExchangeDef};
use crate::server::ops::PublishBatch;
use crate::server::shard::routing_replica::PubOpts;
use crate::server::types::{PublishMode, Request};
use bytes::Bytes;
use std::collections::HashMap;

/// A request to submit once no borrow is held.
pub enum Job {
    Submit { owner: u16, rid: u64, req: Request },
    PublishTo { rid: u64, opts: PubOpts, exchange: String, key: String, entries: Bytes, count: u32 },
    DeclareExchange { rid: u64, def: ExchangeDef },
    CheckExchange { rid: u64, name: String },
    DeleteExchange { rid: u64, name: String, if_unused: bool },
    Bind { rid: u64, binding: BindingDef, unbind: bool },
    Publish { rid: u64, mode: PublishMode, queue: String, entries: Bytes, count: u32 },
}

impl AmqpConn {
    /// Submits queued jobs, in order, with no borrow held.
    #[inline]
    pub fn run_jobs(&self) {
        // Called after every frame: most queue nothing.
        if self.jobs.borrow().is_empty() {
            return;
        }
        self.run_queued_jobs();
    }

    fn run_queued_jobs(&self) {
        loop {
            let jobs = std::mem::take(&mut *self.jobs.borrow_mut());
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                self.run_job(job);
            }
        }
    }

    /// Runs one job against the core, the client's names of queues and
    /// exchanges scoped by the connection's vhost (`AmqpConn::q`; queue
    /// requests in `Submit` are scoped already).
    fn run_job(&self, job: Job) {
        let me = self.me();
        match job {
            Job::Submit { owner, rid, req } => self.shard.submit(me, rid, owner, req),
            Job::PublishTo { rid, opts, exchange, key, entries, count } => {
                self.published.set(true);
                let may_pause = || self.st.borrow().consumers.is_empty();
                let exchange = self.q(&exchange);
                let full = self.shard.publish_to(me, rid, opts, &exchange, &key, (entries, count), may_pause);
                if full.is_some() {
                    *self.paused_on.borrow_mut() = full;
                }
            }
            Job::DeclareExchange { rid, mut def } => {
                def.name = self.q_owned(def.name);
                def.alternate = def.alternate.map(|a| self.q_owned(a));
                self.shard.declare_exchange(me, rid, def)
            }
            // The default exchange is in every vhost.
            Job::CheckExchange { rid, name } if name.is_empty() => self.shard.check_exchange(me, rid, &name),
            Job::CheckExchange { rid, name } => self.shard.check_exchange(me, rid, &self.q(&name)),
            Job::DeleteExchange { rid, name, if_unused } => {
                self.shard.delete_exchange(me, rid, self.q_owned(name), if_unused)
            }
            Job::Bind { rid, mut binding, unbind } => {
                binding.source = self.q_owned(binding.source);
                binding.dest = match binding.dest {
                    Dest::Queue(q) => Dest::Queue(self.q_owned(q)),
                    Dest::Exchange(x) => Dest::Exchange(self.q_owned(x)),
                };
                self.shard.bind(me, rid, binding, unbind)
            }
            Job::Publish { rid, mode, queue, entries, count } => {
                self.published.set(true);
                let batch = PublishBatch::Built { entries, count };
                let may_pause = || self.st.borrow().consumers.is_empty();
                let full = self.shard.publish_to_queue(me, rid, mode, self.q_owned(queue), batch, may_pause);
                if full.is_some() {
                    *self.paused_on.borrow_mut() = full;
                }
            }
        }
    }

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
        let st = self.st.borrow();
        let mut jobs = self.jobs.borrow_mut();
        for (consumer_id, ranges) in by {
            if let Some(c) = st.consumers.get(&consumer_id) {
                let req = Request::Ack { consumer_id, queue: c.queue.clone(), ranges };
                jobs.push(Job::Submit { owner: c.owner, rid: rid(KIND_IGNORE, 0, 0), req });
            }
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
