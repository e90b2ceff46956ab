//! Direct reply-to (`protocol::reply_to`; docs/amqp.md, "Direct
//! reply-to"): a publish to a generated name goes straight to the shard
//! that holds the requesting connection (this one, another of this node
//! over the mesh, or one of another node over a data link) as
//! `Request::DirectReply`, and that shard hands it to the connection. No
//! queue, nothing stored: a requester that is gone loses its replies, as
//! in RabbitMQ.

use super::Shard;
use crate::cluster::NodeId;
use crate::protocol::reply_to::ReplyTo;
use crate::protocol::{Entries, ErrorCode};
use crate::server::types::{ConnRef, Reply, Request};
use bytes::Bytes;

/// How a direct reply is answered (see `Request::DirectReply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyOpts {
    pub confirm: bool,
    pub mandatory: bool,
}

/// Where the requester's shard is.
enum Target {
    Here(u16),
    Node(NodeId, u16),
}

impl Shard {
    /// The generated name of reply consumer `channel` of connection `me`
    /// (on this shard), which holds `token`.
    pub fn reply_name(&self, me: ConnRef, channel: u32, token: u64) -> String {
        ReplyTo { node: self.remote.shared.me(), shard: me.shard, conn_id: me.conn_id, channel, token }.encode()
    }

    /// Publishes `count` entries to the generated name `name` (as the
    /// client gave it: checked here). A name that names nobody is dropped
    /// as unroutable.
    pub fn direct_reply(&self, from: ConnRef, request_id: u64, name: &str, o: ReplyOpts, batch: (Bytes, u32)) {
        let (entries, count) = batch;
        let Some((to, target)) = self.reply_target(name) else {
            return self.reply_dropped(from, request_id, o, count);
        };
        let (conn_id, channel, token) = (to.conn_id, to.channel, to.token);
        let (confirm, mandatory) = (o.confirm, o.mandatory);
        let req = Request::DirectReply { conn_id, channel, token, entries, count, confirm, mandatory };
        match target {
            Target::Here(shard) => self.submit(from, request_id, shard, req),
            Target::Node(node, shard) => self.remote_submit_to(node, shard, from, request_id, req),
        }
    }

    /// A declare of a generated name: `Ok(0)` (no message ready) while
    /// its consumer is there, `QueueNotFound` otherwise (RabbitMQ's way to ask whether a
    /// requester is still waiting).
    pub fn reply_alive(&self, from: ConnRef, request_id: u64, name: &str) {
        let o = ReplyOpts { confirm: true, mandatory: false };
        self.direct_reply(from, request_id, name, o, (Bytes::new(), 0));
    }

    /// The requester's shard, from a name a client wrote: every field
    /// checked (a node this one knows, a shard it has).
    fn reply_target(&self, name: &str) -> Option<(ReplyTo, Target)> {
        let to = match ReplyTo::decode(name.as_bytes()) {
            Ok(to) => to,
            Err(e) => {
                tracing::debug!(error = %e, "a direct reply to a name that is none; dropped");
                return None;
            }
        };
        let remote = &self.remote.shared;
        if to.node == remote.me() {
            return (to.shard < self.count).then_some((to, Target::Here(to.shard)));
        }
        if !remote.is_clustered() || self.remote.placement.borrow().addr_of(to.node, to.shard).is_none() {
            tracing::debug!(node = to.node, shard = to.shard, "a direct reply to an unknown node or shard; dropped");
            return None;
        }
        Some((to, Target::Node(to.node, to.shard)))
    }

    /// Nobody took the reply: a look-up hears `QueueNotFound`, a mandatory
    /// publish `NoRoute` (returned), a confirmed one its confirm.
    fn reply_dropped(&self, from: ConnRef, request_id: u64, o: ReplyOpts, count: u32) {
        let reply = if count == 0 {
            Reply::error(request_id, ErrorCode::QueueNotFound, "no direct reply-to consumer of that name")
        } else if o.mandatory {
            Reply::error(request_id, ErrorCode::NoRoute, "no direct reply-to consumer of that name")
        } else if o.confirm {
            Reply::Confirm { request_id, count }
        } else {
            return;
        };
        self.route_reply(from, reply);
    }

    /// The requester's shard: `Request::DirectReply` for its connection.
    pub(super) fn deliver_direct(
        &self,
        from: ConnRef,
        request_id: u64,
        (conn_id, channel, token): (u64, u32, u64),
        (entries, count): (Bytes, u32),
        o: ReplyOpts,
    ) {
        // Entries from another node are checked as any forwarded batch.
        let msgs: Vec<Bytes> = match Entries::parse(&entries, count) {
            Ok(parsed) => parsed.raw_iter().map(|raw| crate::server::ops::slice_of(&entries, raw)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "a direct reply's entries failed validation; dropped");
                return self.reply_dropped(from, request_id, o, count.max(1));
            }
        };
        let bytes: usize = msgs.iter().map(|m| crate::server::queue::delivery_cost(m.len())).sum();
        let taken = self.conns.get(conn_id).is_some_and(|s| {
            // Nothing holds replies back (no queue, no credit): a requester
            // that does not read loses them rather than growing its outbox
            // past `outbox_bytes_max`.
            if s.delivery_room() < bytes {
                tracing::debug!(conn_id, bytes, "a direct reply for a connection whose outbox is full; dropped");
                return false;
            }
            s.direct_reply(channel, token, &msgs)
        });
        if !taken {
            return self.reply_dropped(from, request_id, o, count);
        }
        if count == 0 {
            self.route_reply(from, Reply::Ok { request_id, value: 0 });
        } else if o.confirm {
            self.route_reply(from, Reply::Confirm { request_id, count });
        }
    }
}
