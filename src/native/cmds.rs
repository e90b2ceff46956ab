//! The longer client commands, each one method: a queue declare, a publish
//! through an exchange, an exchange declare. `NativeConn::on_frame` (mod.rs)
//! dispatches to them; the short ones stay inline there.

use super::{check_queue_name, refused, Fatal, NativeConn};
use crate::auth::permissions::Perm;
use crate::protocol::{op, Entries};
use crate::server::grants::Kind;
use crate::server::ops::{slice_of, PublishBatch};
use crate::server::policy::QueueArgs;
use crate::server::shard::routing_replica::{check_table, exchange_def, PubOpts};
use crate::server::types::{PublishMode, Request};
use bytes::Bytes;

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
