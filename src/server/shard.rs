//! One shard: the queues it owns, the connections it holds, and the request
//! handler that every path (direct or forwarded) ends in.

use super::config::Config;
use super::mesh::{Batch, Mesh, MeshMsg};
use super::queue::{Deliveries, Queue, QueueLimits};
use super::types::{ConnRef, Delivered, QueueError, Reply, Request};
use crate::protocol::{shard_for, Entries, ErrorCode};
use crate::rt::Notify;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

mod admin;
mod durable;
mod spill;

/// What a connection must offer the shard: a place to put replies.
pub trait ConnSink {
    fn send(&self, reply: Reply);
    /// Encodes deliveries straight from the queue's unacked store.
    fn deliver(&self, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>);
    /// Ends the connection after flushing what is queued (broker shutdown).
    fn shut_down(&self, why: &str);
    /// The protocol (`native`, `amqp`) and peer address, for operators.
    fn describe(&self) -> (&'static str, String) {
        ("native", String::new())
    }
}

/// Per-shard counters: plain cells, summed across shards when read.
#[derive(Default)]
pub struct Counters {
    pub published: Cell<u64>,
    pub delivered: Cell<u64>,
    pub acked: Cell<u64>,
    pub redelivered: Cell<u64>,
    pub confirmed: Cell<u64>,
    /// Publish handled to confirm sent (`ringmq_publish_confirm_latency_seconds`).
    pub confirm_latency: super::stats::LatencyHistogram,
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

pub struct Shard {
    pub id: u16,
    pub count: u16,
    pub config: Arc<Config>,
    pub shard_addrs: Vec<String>,
    pub mesh: Mesh,
    pub counters: Counters,
    queues: RefCell<HashMap<String, Queue, ahash::RandomState>>,
    /// Signalled when a queue's backlog falls back under half of
    /// `publish_pause_messages`, for publishers that paused on it.
    publish_resume: Notify,
    conns: RefCell<HashMap<u64, Rc<dyn ConnSink>>>,
    next_conn_id: Cell<u64>,
    /// The shard's log (`None` until `open_storage`).
    durable: RefCell<Option<Rc<durable::Durable>>>,
    /// Set when the request being handled logged queue metadata.
    meta_logged: Cell<bool>,
    /// The memory budget: resident bytes, read-backs of spilled messages.
    spill: spill::Spill,
}

impl Shard {
    pub fn new(id: u16, count: u16, config: Arc<Config>, shard_addrs: Vec<String>, mesh: Mesh) -> Self {
        Self {
            id,
            count,
            config,
            shard_addrs,
            mesh,
            counters: Counters::default(),
            queues: RefCell::new(HashMap::default()),
            publish_resume: Notify::default(),
            conns: RefCell::new(HashMap::new()),
            next_conn_id: Cell::new(1),
            durable: RefCell::new(None),
            meta_logged: Cell::new(false),
            spill: spill::Spill::default(),
        }
    }

    pub fn owner_of(&self, queue: &str) -> u16 {
        shard_for(queue, u32::from(self.count)) as u16
    }

    pub fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Registers a connection; `None` when the shard is at its limit.
    pub fn register(&self, sink: Rc<dyn ConnSink>) -> Option<ConnRef> {
        if self.conns.borrow().len() >= self.config.connections_per_shard_max as usize {
            return None;
        }
        let me = ConnRef { shard: self.id, conn_id: self.next_conn_id.get() };
        self.next_conn_id.set(me.conn_id + 1);
        self.conns.borrow_mut().insert(me.conn_id, sink);
        Some(me)
    }

    pub fn unregister(&self, me: ConnRef) {
        self.conns.borrow_mut().remove(&me.conn_id);
    }

    pub fn shut_down_connections(&self, why: &str) {
        let conns: Vec<Rc<dyn ConnSink>> = self.conns.borrow().values().cloned().collect();
        for c in conns {
            c.shut_down(why);
        }
    }

    /// Sends a reply to a connection, wherever it lives.
    pub fn route_reply(&self, to: ConnRef, reply: Reply) {
        if to.shard == self.id {
            self.reply_local(to.conn_id, reply);
        } else {
            self.mesh.forward(to.shard, MeshMsg::Reply { conn_id: to.conn_id, reply });
        }
    }

    fn reply_local(&self, conn_id: u64, reply: Reply) {
        let sink = self.conns.borrow().get(&conn_id).cloned();
        match sink {
            Some(s) => s.send(reply),
            // The connection closed while its reply was in flight; its
            // ConnClosed has requeued (or will requeue) any delivery here.
            None => tracing::debug!(conn_id, "reply for a closed connection discarded"),
        }
    }

    /// Sends a request to the owner of `queue`: handled here when this
    /// shard owns it, forwarded over the mesh otherwise.
    pub fn submit(&self, from: ConnRef, request_id: u64, owner: u16, req: Request) {
        if owner == self.id {
            self.handle(from, request_id, req);
        } else {
            self.mesh.forward(owner, MeshMsg::Request { from, request_id, req });
        }
    }

    pub fn on_mesh(&self, msg: MeshMsg) {
        match msg {
            MeshMsg::Request { from, request_id, req } => self.handle(from, request_id, req),
            MeshMsg::Reply { conn_id, reply } => self.reply_local(conn_id, reply),
            MeshMsg::Admin { from, token, req } => self.on_admin(from, token, req),
            MeshMsg::AdminReply { shard, token, reply } => self.on_admin_reply(shard, token, reply),
        }
    }

    /// A batch the mesh could not deliver because its peer has stopped:
    /// each request gets an error back; replies have nobody left to read them.
    pub fn on_mesh_failure(&self, peer: u16, batch: Batch) {
        let mut lost_replies = 0;
        for msg in batch {
            match msg {
                MeshMsg::Request { from, request_id, .. } => self.route_reply(
                    from,
                    Reply::error(request_id, ErrorCode::ShardUnavailable, format!("shard {peer} is not running")),
                ),
                MeshMsg::Reply { .. } | MeshMsg::AdminReply { .. } => lost_replies += 1,
                MeshMsg::Admin { token, .. } => self.on_admin_reply(
                    peer,
                    token,
                    super::stats::AdminReply::Done(Err(format!("shard {peer} is not running"))),
                ),
            }
        }
        tracing::warn!(peer, lost_replies, "mesh peer stopped");
    }

    fn limits(&self) -> QueueLimits {
        QueueLimits { messages_max: self.config.queue_messages_max }
    }

    /// The owner's side of every request. Runs on this shard's thread only.
    pub fn handle(&self, from: ConnRef, request_id: u64, req: Request) {
        let result = match req {
            Request::Publish { persistent, confirm, queue, entries, count } => {
                // The sending shard validated these bytes; checked again
                // because they crossed a boundary.
                match Entries::parse(&entries, count) {
                    Ok(parsed) => {
                        let msgs = parsed.raw_iter().map(|raw| entries.slice_ref(raw));
                        self.publish(from, request_id, persistent, confirm, &queue, msgs);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "forwarded publish failed validation (bug)");
                        self.route_reply(
                            from,
                            Reply::error(request_id, ErrorCode::Internal, "forwarded batch was corrupt"),
                        );
                    }
                }
                return;
            }
            Request::ConnClosed { queues } => {
                self.connection_closed(from, &queues);
                return;
            }
            Request::Get { consumer_id, no_ack, queue } => {
                self.get(from, request_id, consumer_id, no_ack, &queue);
                return;
            }
            Request::Declare { durable, passive, queue, exclusive, auto_delete, amqp } => {
                self.declare_with(from, durable, passive, queue, DeclareOpts { exclusive, auto_delete, amqp })
            }
            Request::Delete { if_empty, queue } => self.delete_from(from, if_empty, &queue),
            Request::Purge { queue } => self.with_queue(&queue, |q| {
                check_lock(q, from)?;
                Ok(self.purge_logged(q) as u64)
            }),
            Request::Subscribe { consumer_id, prefetch, queue } => {
                // The Ok goes out before the first Deliver of this consumer.
                let r = self.queues.borrow_mut().get_mut(&queue).ok_or_else(|| not_found(&queue)).and_then(|q| {
                    check_lock(q, from)?;
                    q.subscribe(from, consumer_id, prefetch)
                });
                let ok = r.is_ok();
                self.reply_result(from, request_id, r.map(|()| 0));
                if ok {
                    if let Some(q) = self.queues.borrow_mut().get_mut(&queue) {
                        self.dispatch(q);
                    }
                }
                return;
            }
            Request::Unsubscribe { consumer_id, queue } => {
                let r = self.with_queue(&queue, |q| q.unsubscribe(from, consumer_id).map(|()| 0));
                self.auto_delete_check(&queue);
                r
            }
            Request::Cancel { consumer_id, queue } => {
                let r = self.with_queue(&queue, |q| q.cancel(from, consumer_id));
                self.auto_delete_check(&queue);
                match r {
                    Ok(()) => return,
                    Err(e) => Err(e),
                }
            }
            Request::Ack { consumer_id, queue, ranges } => {
                let r = self.with_queue(&queue, |q| self.ack_logged(q, from, consumer_id, &ranges).map(|n| n as u64));
                match r {
                    Ok(n) => {
                        bump(&self.counters.acked, n);
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Nack { consumer_id, queue, requeue, ranges } => {
                match self
                    .with_queue(&queue, |q| self.nack_logged(q, from, consumer_id, requeue, &ranges).map(|n| n as u64))
                {
                    Ok(_) => return,
                    Err(e) => Err(e),
                }
            }
        };
        self.reply_after_log(from, request_id, result);
    }

    fn reply_result(&self, to: ConnRef, request_id: u64, result: Result<u64, QueueError>) {
        let reply = match result {
            Ok(value) => Reply::Ok { request_id, value },
            Err(e) => Reply::Error { request_id, code: e.code, message: e.message },
        };
        self.route_reply(to, reply);
    }

    /// Runs `f` on a queue this shard owns, then dispatches whatever `f`
    /// made deliverable.
    fn with_queue<T>(&self, name: &str, f: impl FnOnce(&mut Queue) -> Result<T, QueueError>) -> Result<T, QueueError> {
        let mut queues = self.queues.borrow_mut();
        let q = queues.get_mut(name).ok_or_else(|| not_found(name))?;
        let r = f(q);
        self.dispatch(q);
        r
    }

    fn dispatch(&self, q: &mut Queue) {
        let n = q.dispatch(&mut |to, consumer_id, first_tag, msgs| self.deliver(to, consumer_id, first_tag, msgs));
        bump(&self.counters.delivered, n as u64);
        self.after_dispatch(q);
        if n > 0 && !self.over_half_pause(q) {
            self.publish_resume.notify();
        }
    }

    /// Whether publishers to this (local) queue should stop reading: its
    /// backlog is past `publish_pause_messages` and it has consumers that
    /// will drain it. Without consumers the queue simply fills up to its
    /// limit; pausing would only stall the connection.
    pub fn over_publish_pause(&self, queue: &str) -> bool {
        let c = &self.config;
        self.queues.borrow().get(queue).is_some_and(|q| {
            (q.ready_len() as u64 > c.publish_pause_messages || q.ready_bytes() > c.publish_pause_bytes)
                && q.consumer_count() > 0
        })
    }

    fn over_half_pause(&self, q: &Queue) -> bool {
        let c = &self.config;
        q.ready_len() as u64 > c.publish_pause_messages / 2 || q.ready_bytes() > c.publish_pause_bytes / 2
    }

    /// Waits until `queue` has drained to half of `publish_pause_messages`,
    /// lost its consumers, or gone away.
    pub async fn wait_publish_resume(&self, queue: &str) {
        loop {
            let n = self.publish_resume.notified();
            let go_on =
                self.queues.borrow().get(queue).is_none_or(|q| !self.over_half_pause(q) || q.consumer_count() == 0);
            if go_on {
                return;
            }
            n.await;
        }
    }

    /// Local consumers get their batch encoded in place; remote ones get
    /// an owned copy (reference-counted bodies) over the mesh.
    fn deliver(&self, to: ConnRef, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>) {
        if to.shard == self.id {
            let sink = self.conns.borrow().get(&to.conn_id).cloned();
            match sink {
                Some(s) => s.deliver(consumer_id, first_tag, msgs),
                None => tracing::debug!(conn_id = to.conn_id, "delivery for a closed connection discarded"),
            }
        } else {
            let msgs = msgs.map(Delivered::from).collect();
            let reply = Reply::Deliver { consumer_id, first_tag, msgs };
            self.mesh.forward(to.shard, MeshMsg::Reply { conn_id: to.conn_id, reply });
        }
    }

    fn declare(&self, durable: bool, passive: bool, name: String) -> Result<u64, QueueError> {
        let mut queues = self.queues.borrow_mut();
        if let Some(q) = queues.get(&name) {
            if !passive && q.durable != durable {
                return Err(QueueError::new(
                    ErrorCode::QueueMismatch,
                    format!("queue '{name}' exists with durable={}; declared with durable={durable}", q.durable),
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
        self.log_declare(&name, durable)?;
        tracing::debug!(queue = %name, durable, "queue declared");
        queues.insert(name.clone(), Queue::new(name, durable, self.limits()));
        Ok(0)
    }

    fn delete(&self, if_empty: bool, name: &str) -> Result<u64, QueueError> {
        let mut queues = self.queues.borrow_mut();
        let q = queues.get(name).ok_or_else(|| not_found(name))?;
        if if_empty && q.ready_len() + q.unacked_len() > 0 {
            return Err(QueueError::new(ErrorCode::QueueMismatch, format!("queue '{name}' is not empty")));
        }
        let n = q.ready_len() as u64;
        if let Some(q) = queues.remove(name) {
            self.forget_resident(&q);
        }
        self.log_delete(name);
        tracing::debug!(queue = %name, "queue deleted");
        Ok(n)
    }

    /// Appends a batch; used by the direct path with borrowed entries and by
    /// the forwarded path with owned ones.
    pub fn publish(
        &self,
        from: ConnRef,
        request_id: u64,
        persistent: bool,
        confirm: bool,
        queue: &str,
        entries: impl ExactSizeIterator<Item = Bytes>,
    ) {
        // Persistent messages into a durable queue are logged, and their
        // confirm waits for the flush; everything else stays in memory.
        let (result, log) = match self.log_target(persistent, queue) {
            Err(e) => (Err(e), None),
            Ok(None) => (self.with_queue(queue, |q| q.publish(persistent, entries)), None),
            Ok(Some((d, id))) => {
                let r = self.with_queue(queue, |q| {
                    let mut seq = q.next_seq();
                    let mut locs = Vec::new();
                    let n = q.publish(
                        persistent,
                        entries.inspect(|e| {
                            // Not poisoned: checked by log_target, just now.
                            if let Ok(Some(loc)) = d.log.publish(id, seq, e) {
                                locs.push((seq, loc));
                            }
                            seq += 1;
                        }),
                    )?;
                    self.spill_over_budget(q, &locs);
                    Ok(n)
                });
                (r, Some(d))
            }
        };
        match result {
            Ok(n) => {
                bump(&self.counters.published, u64::from(n));
                if let (true, Some(d)) = (confirm, &log) {
                    self.confirm_after_log(d, from, request_id, n);
                } else if confirm {
                    bump(&self.counters.confirmed, u64::from(n));
                    self.counters.confirm_latency.observe(std::time::Duration::ZERO, u64::from(n));
                    self.route_reply(from, Reply::Confirm { request_id, count: n });
                }
            }
            Err(e) => {
                tracing::debug!(queue, code = ?e.code, "publish refused: {}", e.message);
                self.route_reply(from, Reply::Error { request_id, code: e.code, message: e.message });
            }
        }
    }

    fn get(&self, from: ConnRef, request_id: u64, consumer_id: u32, no_ack: bool, queue: &str) {
        if self.queues.borrow().get(queue).is_some_and(Queue::head_spilled) {
            return self.get_after_fetch(queue, spill::PendingGet { from, request_id, consumer_id, no_ack });
        }
        let r = self.with_queue(queue, |q| {
            check_lock(q, from)?;
            Ok((self.get_logged(q, from, consumer_id, no_ack)?, q.ready_len()))
        });
        let reply = match r {
            Ok((Some((tag, msg)), remaining)) => {
                bump(&self.counters.delivered, 1);
                Reply::GetOk { request_id, consumer_id, tag, remaining: remaining.min(u32::MAX as usize) as u32, msg }
            }
            Ok((None, _)) => Reply::GetEmpty { request_id },
            Err(e) => Reply::Error { request_id, code: e.code, message: e.message },
        };
        self.route_reply(from, reply);
    }

    fn connection_closed(&self, from: ConnRef, names: &[String]) {
        let mut queues = self.queues.borrow_mut();
        for name in names {
            if let Some(q) = queues.get_mut(name) {
                let n = q.connection_closed(from);
                bump(&self.counters.redelivered, n as u64);
                self.dispatch(q);
                if q.exclusive_owner == Some(from) || q.auto_delete_due() {
                    self.remove_queue(&mut queues, name);
                }
                self.publish_resume.notify();
            }
        }
    }
}

/// Flags of a declare beyond the native protocol's (AMQP).
struct DeclareOpts {
    exclusive: bool,
    auto_delete: bool,
    amqp: bool,
}

impl Shard {
    /// `declare` plus the exclusive and auto-delete flags and their checks.
    fn declare_with(
        &self,
        from: ConnRef,
        durable: bool,
        passive: bool,
        name: String,
        o: DeclareOpts,
    ) -> Result<u64, QueueError> {
        let existed = match self.queues.borrow().get(&name) {
            Some(q) => {
                check_lock(q, from)?;
                if o.amqp && !passive && (q.exclusive_owner.is_some() != o.exclusive || q.auto_delete != o.auto_delete)
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
                true
            }
            None => false,
        };
        let ready = self.declare(durable, passive, name.clone())?;
        let mut queues = self.queues.borrow_mut();
        let Some(q) = queues.get_mut(&name) else { return Ok(ready) };
        if !existed {
            q.exclusive_owner = o.exclusive.then_some(from);
            q.auto_delete = o.auto_delete;
        }
        if o.amqp {
            return Ok((q.consumer_count() as u64) << 32 | ready.min(u64::from(u32::MAX)));
        }
        Ok(ready)
    }

    /// `delete` after the exclusive check; push consumers hear that their
    /// queue is gone.
    fn delete_from(&self, from: ConnRef, if_empty: bool, name: &str) -> Result<u64, QueueError> {
        let consumers: Vec<(ConnRef, u32)> = {
            let queues = self.queues.borrow();
            let q = queues.get(name).ok_or_else(|| not_found(name))?;
            check_lock(q, from)?;
            q.push_consumers().collect()
        };
        let n = self.delete(if_empty, name)?;
        self.publish_resume.notify();
        for (to, consumer_id) in consumers {
            self.route_reply(to, Reply::ConsumerGone { consumer_id });
        }
        Ok(n)
    }

    /// Deletes an auto-delete queue that has lost its last consumer. Also
    /// wakes publishers paused on a queue that may have lost its consumers
    /// (they resume when it has none).
    fn auto_delete_check(&self, name: &str) {
        self.publish_resume.notify();
        let mut queues = self.queues.borrow_mut();
        if queues.get(name).is_some_and(Queue::auto_delete_due) {
            self.remove_queue(&mut queues, name);
        }
    }

    fn remove_queue(&self, queues: &mut HashMap<String, Queue, ahash::RandomState>, name: &str) {
        if let Some(q) = queues.remove(name) {
            self.forget_resident(&q);
            self.log_delete(name);
            for (to, consumer_id) in q.push_consumers() {
                self.route_reply(to, Reply::ConsumerGone { consumer_id });
            }
            tracing::debug!(queue = %name, "queue deleted (exclusive owner closed or auto-delete)");
        }
    }
}

/// Exclusive queues serve only the connection that declared them.
fn check_lock(q: &Queue, from: ConnRef) -> Result<(), QueueError> {
    match q.exclusive_owner {
        Some(owner) if owner != from => Err(QueueError::new(
            ErrorCode::QueueLocked,
            format!("queue '{}' is exclusive to another connection", q.name),
        )),
        _ => Ok(()),
    }
}

fn not_found(name: &str) -> QueueError {
    QueueError::new(ErrorCode::QueueNotFound, format!("no queue '{name}'"))
}
