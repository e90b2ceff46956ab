//! AMQP transactions in the core (docs/amqp.md, "Transactions"). The
//! front end buffers a transaction's publishes and acks; at commit it
//! hands them to [`Shard::commit_tx`] on its own shard, the coordinator:
//!
//! 1. every publish is routed there, from the shard's copy of the
//!    routing table, before anything is sent (a routing error refuses the
//!    whole commit with nothing applied);
//! 2. the targets and acks are grouped by owning shard, and each owner
//!    gets one `Request::TxPart`;
//! 3. an owner checks its part can be stored (its log is not poisoned),
//!    then applies all of it in one step on its thread (no consumer or
//!    publisher there sees half of it) and answers `TxCommitted` once
//!    what it logged (persistent messages and acks of durable queues)
//!    is fdatasync'ed: one group commit covers the part;
//! 4. with several owners the answers meet in a fan-in here, as the
//!    confirms of a routed publish do, and the connection gets one
//!    `TxCommitted` (or the first error) when every owner has answered.
//!
//! Across a crash this is not all-or-none: the parts are stored by
//! independent logs, so a crash (or a storage failure) between two
//! owners' flushes keeps the part of one and not the other. The client
//! has had no commit-ok then. docs/amqp.md says what can be observed.

use super::routing_replica::FANIN_BIT;
use super::{bump, Shard};
use crate::protocol::{Entries, ErrorCode};
use crate::server::ops::queue_name_ok;
use crate::server::types::{ConnRef, Origin, Reply, Request, Target, TxAck, TxTarget};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

/// With `FANIN_BIT`: the fan-in is a transaction's, not a confirm's.
pub(super) const TX_FANIN_BIT: u64 = 1 << 62;

/// One publish batch of a transaction, as the front end buffered it.
#[derive(Debug)]
pub struct TxPublish {
    /// The exchange, scoped by the vhost; `""` is the default exchange.
    pub exchange: String,
    /// The routing key; for the default exchange, the queue's scoped name.
    pub key: String,
    pub persistent: bool,
    pub entries: Bytes,
    pub count: u32,
}

/// A commit waiting on several owners.
struct TxFanIn {
    to: ConnRef,
    request_id: u64,
    parts: usize,
    routed: Vec<u32>,
    error: Option<(ErrorCode, String)>,
}

/// The coordinator's fan-ins, by token. One part of `Shard`.
#[derive(Default)]
pub struct TxFanIns {
    waiting: RefCell<HashMap<u64, TxFanIn>>,
    next_token: Cell<u64>,
}

/// One owner's share of a commit.
#[derive(Default)]
struct Part {
    publishes: Vec<TxTarget>,
    acks: Vec<TxAck>,
}

impl Shard {
    /// Commits a transaction of connection `from`: `acks` are each with
    /// the owner of its queue (kept by the front end from the subscribe).
    /// The answer, `TxCommitted` or an error, comes back as a reply.
    pub fn commit_tx(&self, from: ConnRef, request_id: u64, publishes: Vec<TxPublish>, acks: Vec<(u16, TxAck)>) {
        let mut parts: Vec<(u16, Part)> = Vec::new();
        let mut part = |owner: u16| -> usize {
            match parts.iter().position(|(o, _)| *o == owner) {
                Some(i) => i,
                None => {
                    parts.push((owner, Part::default()));
                    parts.len() - 1
                }
            }
        };
        let mut grouped = Vec::new();
        for (i, p) in publishes.into_iter().enumerate() {
            match self.tx_targets(p) {
                Ok(ts) => grouped.extend(ts.into_iter().map(|t| (crate::protocol::wire::len32(i), t))),
                Err((code, message)) => return self.route_reply(from, Reply::error(request_id, code, message)),
            }
        }
        let mut placed: Vec<(usize, TxTarget)> = Vec::with_capacity(grouped.len());
        for (publish, (t, persistent, origin)) in grouped {
            let i = part(self.owner_of(&t.queue));
            placed.push((i, TxTarget { publish, target: t, persistent, origin }));
        }
        let mut ack_parts = Vec::with_capacity(acks.len());
        for (owner, a) in acks {
            ack_parts.push((part(owner), a));
        }
        for (i, t) in placed {
            parts[i].1.publishes.push(t);
        }
        for (i, a) in ack_parts {
            parts[i].1.acks.push(a);
        }
        self.send_parts(from, request_id, parts);
    }

    /// A publish's targets: the named queue for the default exchange,
    /// else what the exchange routes the batch to (maybe nothing).
    #[allow(clippy::type_complexity)]
    fn tx_targets(&self, p: TxPublish) -> Result<Vec<(Target, bool, Option<Arc<Origin>>)>, (ErrorCode, String)> {
        let persistent = p.persistent;
        if p.exchange.is_empty() {
            if !queue_name_ok(&p.key) {
                return Ok(Vec::new());
            }
            return Ok(vec![(Target { queue: p.key, entries: p.entries, count: p.count }, persistent, None)]);
        }
        let (targets, _) =
            self.route_batch(&p.exchange, &p.key, &p.entries, p.count).map_err(|e| (e.code, e.message))?;
        let origin =
            Arc::new(Origin { exchange: crate::routing::vhost::name_of(&p.exchange).to_owned(), routing_key: p.key });
        Ok(targets.into_iter().map(|t| (t, persistent, Some(origin.clone()))).collect())
    }

    /// One `TxPart` to each owner; with more than one, through a fan-in.
    fn send_parts(&self, from: ConnRef, request_id: u64, parts: Vec<(u16, Part)>) {
        if parts.is_empty() {
            return self.route_reply(from, Reply::TxCommitted { request_id, routed: Vec::new() });
        }
        let mut via = from;
        if parts.len() > 1 {
            let token = self.tx.next_token.get() + 1;
            self.tx.next_token.set(token);
            let f = TxFanIn { to: from, request_id, parts: parts.len(), routed: Vec::new(), error: None };
            self.tx.waiting.borrow_mut().insert(token, f);
            via = ConnRef { shard: self.id, conn_id: FANIN_BIT | TX_FANIN_BIT | token };
        }
        for (owner, p) in parts {
            let req = Request::TxPart { conn: from, publishes: p.publishes, acks: p.acks };
            self.submit(via, request_id, owner, req);
        }
    }

    /// An owner's answer to a transaction's fan-in.
    pub(super) fn tx_fanin_reply(&self, conn_id: u64, reply: Reply) {
        let token = conn_id & !(FANIN_BIT | TX_FANIN_BIT);
        let mut map = self.tx.waiting.borrow_mut();
        let Some(f) = map.get_mut(&token) else {
            tracing::error!(token, "reply for an unknown transaction fan-in (bug)");
            return;
        };
        match reply {
            Reply::TxCommitted { routed, .. } => f.routed.extend(routed),
            Reply::Error { code, message, .. } => {
                f.error.get_or_insert((code, message));
            }
            other => tracing::error!(?other, "unexpected reply to a transaction fan-in (bug)"),
        }
        f.parts -= 1;
        if f.parts > 0 {
            return;
        }
        let Some(mut f) = map.remove(&token) else { return };
        drop(map);
        let reply = match f.error {
            Some((code, message)) => Reply::error(f.request_id, code, message),
            None => {
                f.routed.sort_unstable();
                f.routed.dedup();
                Reply::TxCommitted { request_id: f.request_id, routed: f.routed }
            }
        };
        self.route_reply(f.to, reply);
    }

    /// The owner's side: checks, then applies the whole part in this one
    /// call; answered after the log's flush when anything was logged.
    pub(super) fn tx_part(
        &self,
        via: ConnRef,
        request_id: u64,
        conn: ConnRef,
        publishes: Vec<TxTarget>,
        acks: Vec<TxAck>,
    ) {
        // A log that cannot take the part refuses all of it, before any
        // of it is applied here.
        for p in &publishes {
            if let Err(e) = self.log_target(p.persistent, &p.target.queue) {
                return self.route_reply(via, Reply::error(request_id, e.code, e.message));
            }
        }
        let mut logged = false;
        for a in acks {
            logged |= self.tx_ack(conn, a);
        }
        let mut routed = Vec::new();
        for p in publishes {
            let (found, log) = self.tx_publish(&p);
            if found {
                routed.push(p.publish);
            }
            logged |= log;
        }
        self.flush_dead_letters();
        routed.sort_unstable();
        routed.dedup();
        let reply = Reply::TxCommitted { request_id, routed };
        match self.durable().filter(|_| logged) {
            Some(d) => self.reply_after_flush(&d, via, request_id, reply),
            None => self.route_reply(via, reply),
        }
    }

    /// Applies one ack or nack; whether it touched a durable queue (its
    /// acks are logged with the next flush, which the commit waits for).
    fn tx_ack(&self, conn: ConnRef, a: TxAck) -> bool {
        let durable = self.durable().is_some_and(|d| d.ids.borrow().contains_key(&a.queue));
        let r = self.with_queue(&a.queue, |q| match a.nack {
            None => self.ack_logged(q, conn, a.consumer_id, &a.ranges),
            Some(requeue) => self.nack_logged(q, conn, a.consumer_id, requeue, &a.ranges),
        });
        match r {
            Ok(n) if a.nack.is_none() => bump(&self.counters.acked, n as u64),
            Ok(_) => {}
            // Requeued meanwhile (consumer timeout, queue deleted): as
            // for an ack outside a transaction, nothing to undo.
            Err(e) => tracing::debug!(queue = %a.queue, code = ?e.code, "transaction ack refused: {}", e.message),
        }
        durable
    }

    /// Appends one target's messages: (the queue exists, something was
    /// logged). A queue full under its limits drops what it refuses, as
    /// for a publish without confirms.
    fn tx_publish(&self, p: &TxTarget) -> (bool, bool) {
        let t = &p.target;
        let Ok(parsed) = Entries::parse(&t.entries, t.count) else {
            tracing::error!("transaction publish failed validation (bug)");
            return (false, false);
        };
        let msgs = parsed.raw_iter().map(|raw| t.entries.slice_ref(raw));
        match self.enqueue(p.persistent, true, &t.queue, msgs, p.origin.as_ref()) {
            Ok((n, log)) => {
                bump(&self.counters.published, u64::from(n));
                (true, log.is_some())
            }
            Err(e) if e.code == ErrorCode::QueueNotFound => (false, false),
            Err(e) => {
                tracing::debug!(queue = %t.queue, code = ?e.code, "transaction publish refused: {}", e.message);
                (true, false)
            }
        }
    }
}
