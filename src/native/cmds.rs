//! The client commands, each one method: a queue declare, a publish
//! (direct or through an exchange), an exchange declare, a bind, a
//! subscribe, a get. `NativeConn::on_frame` (mod.rs)
//! dispatches to them; the short ones stay inline there.

use super::{check_queue_name, refused, Fatal, NativeConn};
use crate::auth::permissions::Perm;
use crate::protocol::{self, ErrorCode};
use crate::protocol::{op, Entries};
use crate::routing::{BindingDef, Dest};
use crate::server::grants::Kind;
use crate::server::ops::{slice_of, PublishBatch};
use crate::server::policy::QueueArgs;
use crate::server::shard::routing_replica::check_exchange_name;
use crate::server::shard::routing_replica::{check_table, exchange_def, PubOpts};
use crate::server::types::StreamStart;
use crate::server::types::{PublishMode, Request};
use bytes::Bytes;
use std::rc::Rc;

impl NativeConn {
    /// `Declare`: a queue at its owner (passive: checked there).
    pub(super) fn declare(&self, rid: u64, flags: u8, queue: &str, args: &[u8]) -> Result<(), Fatal> {
        check_queue_name(queue)?;
        // Direct reply-to names are never made: a declare asks about one.
        if self.reply_declare(rid, queue) {
            return Ok(());
        }
        let passive = flags & op::DECLARE_PASSIVE != 0;
        if !passive {
            self.may(rid, Perm::Configure, Kind::Queue, queue)?;
        }
        let args =
            QueueArgs::parse(args, queue).map_err(|e| Fatal { request_id: rid, code: e.code, message: e.message })?;
        let queue = self.q(queue);
        let owner = self.shard.owner_of(&queue);
        let req = Request::Declare {
            durable: flags & op::DECLARE_DURABLE != 0,
            passive,
            queue: queue.into_owned(),
            exclusive: false,
            auto_delete: false,
            strict: false,
            args: Box::new(args),
        };
        self.shard.submit(self.me(), rid, owner, req);
        Ok(())
    }

    /// `PublishTo`: a batch routed here through an exchange.
    #[inline]
    pub(super) fn publish_to(
        &self,
        chunk: &Bytes,
        rid: u64,
        flags: u8,
        (exchange, routing_key): (&str, &str),
        entries: Entries<'_>,
    ) -> Result<(), Fatal> {
        self.published.set(true);
        self.may_publish(rid, exchange)?;
        self.check_sizes(rid, &entries)?;
        if exchange.is_empty() && crate::protocol::reply_to::is_reply_name(routing_key) {
            return self.publish_reply(chunk, rid, flags, routing_key, &entries);
        }
        let o = PubOpts {
            persistent: flags & op::PUBLISH_PERSISTENT != 0,
            confirm: flags & op::PUBLISH_CONFIRM != 0,
            mandatory: flags & op::PUBLISH_MANDATORY != 0,
        };
        let (shard, me) = (&self.shard, self.me());
        let no_consumers = || self.consumers.borrow().is_empty();
        let full = if exchange.is_empty() && self.vhost.get().is_some() {
            // The default exchange of a vhost other than `/` is not in the
            // table: the key names the queue.
            let mode = PublishMode {
                persistent: o.persistent,
                confirm: o.confirm,
                partial: false,
                mandatory: Some(o.mandatory),
            };
            let batch = PublishBatch::Read { chunk, entries };
            shard.publish_to_queue(me, rid, mode, self.q(routing_key), batch, no_consumers)
        } else {
            let batch = (slice_of(chunk, entries.raw()), entries.len());
            shard.publish_to(me, rid, o, &self.q(exchange), routing_key, batch, no_consumers)
        };
        if full.is_some() {
            *self.paused_on.borrow_mut() = full;
        }
        Ok(())
    }

    /// `ExchangeDeclare`: checked here, made by shard 0 (passive: looked up).
    pub(super) fn declare_exchange(
        &self,
        chunk: &Bytes,
        rid: u64,
        flags: u8,
        (exchange, kind): (&str, &str),
        args: &[u8],
    ) -> Result<(), Fatal> {
        let (shard, me) = (&self.shard, self.me());
        if flags & op::EXCHANGE_PASSIVE != 0 {
            // The default exchange is in every vhost.
            let name = if exchange.is_empty() { exchange.into() } else { self.q(exchange) };
            shard.check_exchange(me, rid, &name);
            return Ok(());
        }
        self.may(rid, Perm::Configure, Kind::Exchange, exchange)?;
        check_table(args, shard.config.table_depth_max).map_err(|e| refused(rid, e))?;
        let def = exchange_def(
            exchange,
            kind,
            flags & op::EXCHANGE_DURABLE != 0,
            flags & op::EXCHANGE_AUTO_DELETE != 0,
            flags & op::EXCHANGE_INTERNAL != 0,
            slice_of(chunk, args),
        )
        .map_err(|e| refused(rid, e))?;
        let def = crate::routing::ExchangeDef {
            name: self.q(&def.name).into_owned(),
            alternate: def.alternate.as_deref().map(|a| self.q(a).into_owned()),
            ..def
        };
        shard.declare_exchange(me, rid, def);
        Ok(())
    }
}

impl NativeConn {
    /// Bind or unbind; `names` is (source, destination, routing key).
    pub(super) fn bind(
        &self,
        chunk: &Bytes,
        rid: u64,
        flags: u8,
        names: (&str, &str, &str),
        args: &[u8],
        unbind: bool,
    ) -> Result<(), Fatal> {
        let (source, destination, key) = names;
        check_table(args, self.shard.config.table_depth_max).map_err(|e| refused(rid, e))?;
        check_exchange_name(source).map_err(|e| refused(rid, e))?;
        let dest = if flags & op::BIND_TO_EXCHANGE != 0 {
            check_exchange_name(destination).map_err(|e| refused(rid, e))?;
            self.may(rid, Perm::Write, Kind::Exchange, destination)?;
            Dest::Exchange(self.q(destination).into_owned())
        } else {
            check_queue_name(destination)?;
            self.may(rid, Perm::Write, Kind::Queue, destination)?;
            Dest::Queue(self.q(destination).into_owned())
        };
        self.may(rid, Perm::Read, Kind::Exchange, source)?;
        let source = self.q(source).into_owned();
        let binding = BindingDef { source, dest, key: key.into(), args: slice_of(chunk, args) };
        self.shard.bind(self.me(), rid, binding, unbind);
        Ok(())
    }

    pub(super) fn publish(
        &self,
        chunk: &Bytes,
        rid: u64,
        flags: u8,
        queue: &str,
        entries: protocol::Entries<'_>,
    ) -> Result<(), Fatal> {
        self.check_sizes(rid, &entries)?;
        if protocol::reply_to::is_reply_name(queue) {
            return self.publish_reply(chunk, rid, flags, queue, &entries);
        }
        let persistent = flags & op::PUBLISH_PERSISTENT != 0;
        let confirm = flags & op::PUBLISH_CONFIRM != 0;
        // Native batches are all or nothing: one Confirm covers them.
        let mandatory = flags & op::PUBLISH_MANDATORY != 0;
        let mode = PublishMode { persistent, confirm, partial: false, mandatory: Some(mandatory) };
        let batch = PublishBatch::Read { chunk, entries };
        let no_consumers = || self.consumers.borrow().is_empty();
        let full = self.shard.publish_to_queue(self.me(), rid, mode, self.q(queue), batch, no_consumers);
        if full.is_some() {
            *self.paused_on.borrow_mut() = full;
        }
        Ok(())
    }

    pub(super) fn subscribe(
        &self,
        rid: u64,
        (consumer_id, prefetch, priority, origin): (u32, u32, i64, bool),
        stream: StreamStart,
        queue: &str,
    ) -> Result<(), Fatal> {
        let c = &self.shard.config;
        if prefetch == 0 || prefetch > c.prefetch_max {
            return Err(Fatal {
                request_id: rid,
                code: ErrorCode::PrefetchOutOfRange,
                message: format!("prefetch {prefetch} is outside 1..={}", c.prefetch_max),
            });
        }
        check_queue_name(queue)?;
        let origin = origin.then(|| Rc::<str>::from(queue));
        let queue = self.q(queue);
        let owner = self.add_consumer(consumer_id, &queue, false, origin)?;
        self.pending_routes.borrow_mut().insert(rid, consumer_id);
        let req = Request::Subscribe {
            consumer_id,
            prefetch,
            queue: queue.into_owned(),
            exclusive: false,
            priority,
            auto_ack: false,
            stream,
        };
        self.shard.submit(self.me(), rid, owner, req);
        Ok(())
    }

    pub(super) fn get(&self, rid: u64, no_ack: bool, consumer_id: u32, queue: &str) -> Result<(), Fatal> {
        check_queue_name(queue)?;
        let queue = &*self.q(queue);
        let known = self.consumers.borrow().get(&consumer_id).map(|c| c.pull && c.queue == queue);
        let owner = match known {
            Some(true) => self.shard.owner_of(queue),
            Some(false) => {
                return Err(Fatal::new(
                    ErrorCode::ConsumerExists,
                    format!("consumer id {consumer_id} is in use for something else"),
                ))
            }
            None if no_ack => self.shard.owner_of(queue),
            None => {
                let owner = self.add_consumer(consumer_id, queue, true, None)?;
                self.pending_routes.borrow_mut().insert(rid, consumer_id);
                owner
            }
        };
        self.shard.submit(self.me(), rid, owner, Request::Get { consumer_id, no_ack, queue: queue.into() });
        Ok(())
    }
}
