//! The core as an AMQP handler calls it: at once, while the handler holds
//! its borrow of the connection's state. That is safe because nothing
//! the shard does for this connection during the call reaches that state:
//! replies wait in the connection's inbox and deliveries that cannot be
//! encoded at once are held there too (`out.rs`), both drained once the
//! handler has returned (`AmqpConn::drain_inbox`).
//!
//! Names the client gave are scoped here by the connection's vhost
//! (`AmqpConn::q`); queue requests passed to [`Core::submit`] are scoped
//! already.

use super::conn::AmqpConn;
use crate::routing::{BindingDef, Dest, ExchangeDef};
use crate::server::ops::PublishBatch;
use crate::server::shard::routing_replica::PubOpts;
use crate::server::shard::tx::TxPublish;
use crate::server::shard::ReplyOpts;
use crate::server::types::{PublishMode, Request, TxAck};
use bytes::Bytes;

/// A handler's way to the core, made for one call chain.
pub struct Core<'a> {
    c: &'a AmqpConn,
    /// Whether a publish may pause this connection: not while it consumes
    /// (its acks may be what drains the queue). Read once, up front,
    /// because the state may be borrowed during the call.
    may_pause: bool,
}

impl<'a> Core<'a> {
    pub fn new(c: &'a AmqpConn, consumes: bool) -> Self {
        Self { c, may_pause: !consumes }
    }

    /// Counts a publish batch the client sent (`Shard::count_received`).
    pub fn count_received(&self, count: u32, confirm: bool) {
        self.c.shard.count_received(u64::from(count), confirm);
    }

    /// Counts messages that no queue can take (a name no queue may have).
    pub fn count_unroutable(&self, mandatory: bool, count: u32) {
        self.c.shard.count_unroutable(Some(mandatory), u64::from(count));
    }

    pub fn submit(&self, owner: u16, rid: u64, req: Request) {
        self.c.shard.submit(self.c.me(), rid, owner, req);
    }

    /// A batch of publishes to one queue through the default exchange.
    pub fn publish(&self, rid: u64, mode: PublishMode, queue: &str, entries: Bytes, count: u32) {
        let c = self.c;
        c.published.set(true);
        let batch = PublishBatch::Built { entries, count };
        let may_pause = self.may_pause;
        let full = c.shard.publish_to_queue(c.me(), rid, mode, c.q_owned(queue.to_string()), batch, || may_pause);
        if full.is_some() {
            *c.paused_on.borrow_mut() = full;
        }
    }

    /// A batch of publishes through an exchange, routed here.
    pub fn publish_to(&self, rid: u64, opts: PubOpts, (exchange, key): (&str, &str), entries: Bytes, count: u32) {
        let c = self.c;
        c.published.set(true);
        let may_pause = self.may_pause;
        let exchange = c.q(exchange);
        let full = c.shard.publish_to(c.me(), rid, opts, &exchange, key, (entries, count), || may_pause);
        if full.is_some() {
            *c.paused_on.borrow_mut() = full;
        }
    }

    /// A batch to a direct reply-to name (`reply_to.rs`), through the
    /// default exchange: straight to the requester, wherever it is.
    pub fn direct_reply(&self, rid: u64, name: &str, o: ReplyOpts, entries: Bytes, count: u32) {
        let c = self.c;
        c.published.set(true);
        c.shard.direct_reply(c.me(), rid, name, o, (entries, count));
    }

    /// A direct reply-to consumer is gone with its channel: replies to
    /// its name are dropped from now on.
    pub fn forget_reply(&self, cid: u32) {
        self.c.replies.borrow_mut().retain(|r| r.cid != cid);
    }

    /// What the connection's transactions are held to (`amqp/tx.rs`).
    pub fn tx_limits(&self) -> super::tx::TxLimits<'a> {
        super::tx::limits(self.c)
    }

    /// A transaction's commit (`amqp/tx.rs`): names scoped already.
    pub fn commit_tx(&self, rid: u64, publishes: Vec<TxPublish>, acks: Vec<(u16, TxAck)>) {
        let c = self.c;
        // Publishes, for the resource alarms' blocking (`flow.rs`).
        c.published.set(!publishes.is_empty() || c.published.get());
        c.shard.commit_tx(c.me(), rid, publishes, acks);
    }

    pub fn declare_exchange(&self, rid: u64, mut def: ExchangeDef) {
        let c = self.c;
        def.name = c.q_owned(def.name);
        def.alternate = def.alternate.map(|a| c.q_owned(a));
        c.shard.declare_exchange(c.me(), rid, def);
    }

    pub fn check_exchange(&self, rid: u64, name: &str) {
        let c = self.c;
        // The default exchange is in every vhost.
        let name = if name.is_empty() { name.into() } else { c.q(name) };
        c.shard.check_exchange(c.me(), rid, &name);
    }

    pub fn delete_exchange(&self, rid: u64, name: &str, if_unused: bool) {
        let c = self.c;
        c.shard.delete_exchange(c.me(), rid, c.q(name).into_owned(), if_unused);
    }

    pub fn bind(&self, rid: u64, mut binding: BindingDef, unbind: bool) {
        let c = self.c;
        binding.source = c.q_owned(binding.source);
        binding.dest = match binding.dest {
            Dest::Queue(q) => Dest::Queue(c.q_owned(q)),
            Dest::Exchange(x) => Dest::Exchange(c.q_owned(x)),
        };
        c.shard.bind(c.me(), rid, binding, unbind);
    }
}
