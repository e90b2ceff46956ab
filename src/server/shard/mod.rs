//! One shard: the queues it owns, the connections it holds, and the request
//! handler that every path (direct or forwarded) ends in.

use super::config::Config;
use super::mesh::{Batch, Mesh, MeshMsg};
use super::queue::{Deliveries, Queue};
use super::types::{ConnRef, Delivered, Origin, PublishMode, QueueError, Reply, Request};
use crate::protocol::{shard_for, ErrorCode};
use bytes::Bytes;
use declare::DeclareOpts;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

mod admin;
mod alarm;
pub mod ask;
mod caps;
mod cluster;
mod cluster_admin;
pub mod conns;
mod counters;
mod dead_letters;
mod declare;
mod defs;
mod direct;
pub use direct::ReplyOpts;
mod durable;
mod gate;
mod get;
mod login;
pub use login::Credential;
mod meta;
mod pause;
mod policies;
mod queues;
mod remote;
mod requests;
pub mod routing_replica;
mod sink;
mod spill;
mod stream_reads;
mod timeout;
mod timers;
pub mod tx;
mod users;

pub(crate) use counters::bump;
pub use counters::Counters;

pub use crate::auth::access::stored_permission as users_stored_permission;
pub use conns::{HttpSlot, PromoteError};
pub use sink::{ConnSink, SinkBuffers};

/// Every shard's own native address, in shard order: a client that logs
/// in on a TLS listener is given the TLS ones, so it stays on TLS.
#[derive(Debug, Clone, Default)]
pub struct ShardAddrs {
    pub plain: Vec<String>,
    /// Empty when `tls_listen` is off.
    pub tls: Vec<String>,
}

/// A shard thread's one owner of its state, behind an `Rc` shared by the
/// shard's tasks and connections. The state is in parts, each with one
/// job and its own file under `shard/` (docs/architecture.md, "A shard's
/// parts"); the request handler here ties them together.
pub struct Shard {
    pub id: u16,
    pub count: u16,
    pub config: Arc<Config>,
    /// Each shard's native address, plain and TLS: the Hello's shard map.
    pub shard_addrs: ShardAddrs,
    pub mesh: Mesh,
    pub counters: Counters,
    /// Its glommio task queues and their scheduling figures (`server::sched`).
    pub sched: Rc<crate::server::sched::ShardSched>,
    /// The queues this shard owns (`queues.rs`).
    queues: queues::QueueSet,
    /// Publishers paused on this shard's queues (`pause.rs`).
    publish_pause: pause::PublishPause,
    /// The connections on this shard and their caps (`conns.rs`).
    pub conns: conns::ConnTable,
    /// This shard's copy of who may log in (`src/auth/`).
    users: users::UserStore,
    /// Refused logins logged per peer (login.rs).
    login_log: login::LoginLog,
    /// The shard's log (`None` until `open_storage`).
    durable: RefCell<Option<Rc<durable::Durable>>>,
    /// The memory budget: resident bytes, read-backs of spilled messages.
    spill: spill::Spill,
    stream_reads: stream_reads::StreamReads,
    /// This shard's copy of the routing table, and its fan-ins.
    pub routing: routing_replica::RoutingReplica,
    /// Shard 0: its agreement with the peers on routing changes (`meta.rs`).
    meta: meta::MetaOwner,
    /// The clock of message and queue deadlines, and the one timer
    /// (`timers.rs`).
    timers: timers::Timers,
    /// Dead letters waiting to be republished (`dead_letters.rs`).
    dead_letters: dead_letters::DeadLetters,
    /// Resource alarms: accounted bytes, blocked connections (`alarm.rs`).
    alarm: alarm::ShardAlarm,
    /// Connections whose outbox is full (`gate.rs`).
    stopped: gate::StoppedConns,
    /// Shard 0: the definitions file's writer state.
    defs: defs::DefsWriter,
    /// Operator requests started here and not answered yet.
    admin_in_flight: Rc<Cell<u32>>,
    /// Shard 0 of a clustered node: the metadata group's member.
    cluster: cluster::ClusterPart,
    /// Transaction commits waiting on several owners (`tx.rs`).
    tx: tx::TxFanIns,
    /// Queues on other nodes: the placement copy and the data links
    /// (`server::remote`, `remote.rs`).
    pub remote: crate::server::remote::RemotePart,
    /// The node's listeners and start state (`server/health.rs`).
    node_status: Arc<crate::server::health::NodeStatus>,
}

/// What every shard of a node holds a handle on.
pub struct NodeShared {
    pub alarms: Arc<crate::server::alarm::Alarms>,
    pub remote: Arc<crate::server::remote::RemoteShared>,
    pub status: Arc<crate::server::health::NodeStatus>,
}

impl Shard {
    pub fn new(
        id: u16,
        count: u16,
        config: Arc<Config>,
        shard_addrs: ShardAddrs,
        mesh: Mesh,
        NodeShared { alarms, remote, status }: NodeShared,
        stored_access: Option<&crate::storage::definitions::StoredAccess>,
    ) -> Self {
        let users = users::UserStore::new(&config, stored_access);
        // Every vhost's standard exchanges, before any routing change
        // arrives (a stored binding may name one).
        let routing = routing_replica::RoutingReplica::default();
        for vhost in users.users.borrow().vhosts() {
            routing.table.borrow_mut().add_vhost(vhost);
        }
        Self {
            id,
            count,
            // The parts that keep their own copy of limits, before `config`
            // moves in.
            queues: queues::QueueSet::new(&config),
            publish_pause: pause::PublishPause::new(&config),
            conns: conns::ConnTable::new(id, config.clone()),
            users,
            stopped: gate::StoppedConns::new(config.outbox_bytes_max, count),
            login_log: login::LoginLog::default(),
            config,
            shard_addrs,
            mesh,
            counters: Counters::default(),
            sched: crate::server::sched::ShardSched::create(),
            durable: RefCell::new(None),
            spill: spill::Spill::default(),
            stream_reads: stream_reads::StreamReads::default(),
            routing,
            meta: meta::MetaOwner::default(),
            timers: timers::Timers::default(),
            dead_letters: dead_letters::DeadLetters::default(),
            alarm: alarm::ShardAlarm::new(alarms),
            defs: defs::DefsWriter::default(),
            admin_in_flight: Rc::new(Cell::new(0)),
            cluster: cluster::ClusterPart::default(),
            tx: tx::TxFanIns::default(),
            remote: crate::server::remote::RemotePart::new(remote),
            node_status: status,
        }
    }

    /// The node's listeners and start state, shared by its shards.
    pub fn node_status(&self) -> &crate::server::health::NodeStatus {
        &self.node_status
    }

    /// The owner of `queue`: a shard of this node, or (clustered) the slot
    /// of its owning shard on another node (`server::remote`).
    #[inline]
    pub fn owner_of(&self, queue: &str) -> u16 {
        if let Some(slot) = self.remote.remote_owner(queue, self.id) {
            return slot;
        }
        self.local_owner(queue)
    }

    /// The shard of this node that owns (or would own) `queue`.
    #[inline]
    pub fn local_owner(&self, queue: &str) -> u16 {
        // Below the shard count, a u16.
        crate::protocol::wire::saturate(shard_for(queue, u32::from(self.count)))
    }

    /// Waits while the mesh or a data link to another node is full: back
    /// pressure for the connections that feed them.
    pub async fn wait_for_space(&self) {
        self.mesh.wait_for_space().await;
        // A single node has no data links: one `is_empty`.
        if self.remote.peers.borrow().is_empty() {
            return;
        }
        let max = crate::server::remote::peer::BACKLOG_BYTES_MAX;
        loop {
            let full = self.remote.peers.borrow().values().find(|p| p.backlog() >= max).cloned();
            match full {
                Some(p) => p.wait_below(max).await,
                None => return,
            }
        }
    }

    /// Sends a reply to a connection, wherever it lives.
    pub fn route_reply(&self, to: ConnRef, reply: Reply) {
        if to.shard == self.id {
            self.reply_local(to.conn_id, reply);
        } else if crate::server::remote::is_remote(to.shard) {
            self.remote_reply(to, reply);
        } else {
            self.mesh.forward(to.shard, MeshMsg::Reply { conn_id: to.conn_id, reply });
        }
    }

    fn reply_local(&self, conn_id: u64, reply: Reply) {
        let Some(reply) = self.waiter_reply(conn_id, reply) else { return };
        let Some(reply) = self.fanin_reply(conn_id, reply) else { return };
        let sink = self.conns.get(conn_id);
        match sink {
            Some(s) => {
                // Deliveries from another shard: counted for the credit
                // this connection grants back to their owner.
                if let Reply::Deliver { owner, msgs, .. } = &reply {
                    let bytes = msgs.iter().map(|m| crate::server::gate::delivery_cost(m.entry.len())).sum();
                    s.delivered_from(*owner, bytes, self.stopped.window());
                }
                s.send(reply)
            }
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
        } else if crate::server::remote::is_remote(owner) {
            self.remote_submit(owner, from, request_id, req);
        } else {
            self.mesh.forward(owner, MeshMsg::Request { from, request_id, req });
        }
    }

    pub fn on_mesh(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::Request { from, request_id, req } => self.handle(from, request_id, req),
            MeshMsg::Reply { conn_id, reply } => self.reply_local(conn_id, reply),
            MeshMsg::Admin { from, token, req } => self.on_admin(from, token, req),
            MeshMsg::AdminReply { shard, token, reply } => self.on_admin_reply(shard, token, reply),
            MeshMsg::MetaApply { version, change } => self.on_meta_apply(version, change),
            MeshMsg::UsersApply { version, change } => self.on_users_apply(version, change),
            MeshMsg::MetaApplied { shard, version } => self.on_meta_applied(shard, version),
            MeshMsg::MetaReady => self.set_routing_ready(),
            MeshMsg::RemoteRequest { node, shard, from, request_id, req } => {
                self.send_remote(node, shard, from, request_id, req)
            }
            MeshMsg::RemoteReply { to, reply } => self.remote_reply(to, reply),
            MeshMsg::Placement(m) => self.on_placement(m),
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
                MeshMsg::RemoteRequest { from, request_id, req, .. } => crate::server::remote::peer::refuse(
                    self,
                    from,
                    request_id,
                    &req,
                    ErrorCode::ShardUnavailable,
                    &format!("shard {peer} is not running"),
                ),
                MeshMsg::Reply { .. } | MeshMsg::AdminReply { .. } | MeshMsg::RemoteReply { .. } => lost_replies += 1,
                MeshMsg::Placement(_) => tracing::error!(peer, "placement change not delivered: peer stopped"),
                MeshMsg::MetaApply { .. }
                | MeshMsg::MetaReady
                | MeshMsg::MetaApplied { .. }
                | MeshMsg::UsersApply { .. } => {
                    tracing::error!(peer, "routing change not delivered: peer stopped");
                    self.on_meta_applied(peer, u64::MAX);
                }
                MeshMsg::Admin { token, .. } => self.on_admin_reply(
                    peer,
                    token,
                    super::stats::AdminReply::Done(Err(format!("shard {peer} is not running"))),
                ),
            }
        }
        tracing::warn!(peer, lost_replies, "mesh peer stopped");
    }

    /// The owner's side of every request. Runs on this shard's thread only.
    pub fn handle(&self, from: ConnRef, request_id: u64, req: Request) {
        // Only a declare on a clustered node may need its queue placed.
        if matches!(req, Request::Declare { passive: false, .. }) {
            let Some(req) = self.placing(from, request_id, req) else { return };
            return self.handle_placed(from, request_id, req);
        }
        self.handle_placed(from, request_id, req);
    }

    /// A request whose queue needs no placement (or has it now).
    fn handle_placed(&self, from: ConnRef, request_id: u64, req: Request) {
        self.handle_one(from, request_id, req);
        // Dead letters go out once no queue is borrowed.
        self.flush_dead_letters();
    }

    /// One request: each kind in its own function (`requests.rs`); those
    /// that answer themselves (deliveries first, after a log write, or not
    /// at all) return `None`.
    fn handle_one(&self, from: ConnRef, request_id: u64, req: Request) {
        let answer = match req {
            Request::Publish { persistent, confirm, partial, mandatory, queue, entries, count } => {
                let mode = PublishMode { persistent, confirm, partial, mandatory };
                self.forwarded_publish(from, request_id, mode, &queue, (entries, count))
            }
            Request::PublishMany { persistent, confirm, mandatory, targets, count, origin } => {
                let o = routing_replica::PubOpts { persistent, confirm, mandatory };
                self.publish_many(from, request_id, o, targets, count, origin);
                None
            }
            Request::Meta { change, durable_dest, if_unused, count } => {
                self.on_meta(from, request_id, change, (durable_dest, if_unused), count);
                None
            }
            Request::BindQueue { binding, unbind } => {
                self.bind_queue(from, request_id, binding, unbind);
                None
            }
            Request::TxPart { conn, publishes, acks } => {
                self.tx_part(from, request_id, conn, publishes, acks);
                None
            }
            Request::ConnClosed { queues } => {
                self.stopped.forget(from);
                self.connection_closed(from, &queues);
                None
            }
            Request::DirectReply { conn_id, channel, token, entries, count, confirm, mandatory } => {
                let o = ReplyOpts { confirm, mandatory };
                self.deliver_direct(from, request_id, (conn_id, channel, token), (entries, count), o);
                None
            }
            Request::DeliveriesResume => {
                self.deliveries_resumed(from);
                None
            }
            Request::DeliveriesCredit { bytes } => {
                self.deliveries_credit(from, bytes);
                None
            }
            Request::Get { consumer_id, no_ack, queue } => {
                self.get(from, request_id, consumer_id, no_ack, &queue);
                None
            }
            Request::Declare { durable, passive, queue, exclusive, auto_delete, strict, args } => Some(
                self.declare_with(from, durable, passive, queue, DeclareOpts { exclusive, auto_delete, strict, args }),
            ),
            // A queue that is not there is deleted already: Ok, count 0,
            // as RabbitMQ answers (cleanup code deletes before it declares).
            // Operators' deletes (`AdminReq`) still say it is not there.
            Request::Delete { queue, .. } if !self.queues.borrow().contains_key(&queue) => Some(Ok(0)),
            Request::Delete { if_empty, if_unused, queue } => {
                // `Ok(None)`: answered once its bindings are gone everywhere.
                self.delete_from(from, (if_empty, if_unused), &queue, Some(request_id)).transpose()
            }
            Request::Purge { queue } => Some(self.with_queue(&queue, |q| {
                check_lock(q, from)?;
                q.refuse_on_stream("queue.purge")?;
                Ok(self.purge_logged(q) as u64)
            })),
            Request::StoreOffset { queue, reference, offset } => Some(self.store_offset(&queue, &reference, offset)),
            Request::QueryOffset { queue, reference } => Some(self.with_queue(&queue, |q| {
                check_lock(q, from)?;
                q.stored_offset(&reference)
            })),
            Request::Subscribe { consumer_id, prefetch, queue, exclusive, priority, auto_ack, stream } => {
                self.subscribe(from, request_id, (consumer_id, prefetch, exclusive, priority, auto_ack), stream, &queue)
            }
            Request::Unsubscribe { consumer_id, queue } => Some(self.unsubscribe(from, consumer_id, &queue)),
            Request::Cancel { consumer_id, queue } => self.cancel(from, consumer_id, &queue),
            Request::Ack { consumer_id, queue, ranges } => self.ack(from, consumer_id, &queue, &ranges),
            Request::Nack { consumer_id, queue, requeue, ranges } => {
                self.nack(from, consumer_id, &queue, requeue, &ranges)
            }
        };
        if let Some(result) = answer {
            self.reply_after_log(from, request_id, result);
        }
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
        self.with_queue_at(name, self.timers.now_ms(), f)
    }

    /// As `with_queue`, settling at `now`: a publish dispatches at the time
    /// its messages' deadlines were set from, so a TTL of 0 reaches a
    /// waiting consumer even when the clock ticks in between.
    fn with_queue_at<T>(
        &self,
        name: &str,
        now: u64,
        f: impl FnOnce(&mut Queue) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut queues = self.queues.borrow_mut();
        let q = queues.get_mut(name).ok_or_else(|| not_found(name))?;
        let r = f(q);
        self.settle_at(q, now);
        r
    }

    /// Local consumers get their batch encoded in place; remote ones get
    /// an owned copy (reference-counted bodies) over the mesh.
    fn deliver(&self, to: ConnRef, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>) {
        if to.shard == self.id {
            let sink = self.conns.get(to.conn_id);
            match sink {
                Some(s) => s.deliver(consumer_id, first_tag, msgs),
                None => tracing::debug!(conn_id = to.conn_id, "delivery for a closed connection discarded"),
            }
        } else {
            let msgs: Vec<Delivered> = msgs.map(Delivered::from).collect();
            self.stopped.forwarded(to, &msgs);
            let reply = Reply::Deliver { owner: self.id, consumer_id, first_tag, msgs };
            // Over the mesh, or a data link for a consumer on another node.
            self.route_reply(to, reply);
        }
    }

    /// Appends a batch; used by the direct path with borrowed entries, by
    /// the forwarded path with owned ones, and by dead-lettering.
    pub fn publish(
        &self,
        from: ConnRef,
        request_id: u64,
        mode: PublishMode,
        queue: &str,
        entries: impl ExactSizeIterator<Item = Bytes>,
    ) {
        let PublishMode { persistent, confirm, partial, mandatory } = mode;
        let count = entries.len() as u64;
        match self.enqueue(persistent, partial, queue, entries, None) {
            Ok((n, log)) => {
                bump(&self.counters.published, u64::from(n));
                if mandatory.is_some() {
                    bump(&self.counters.routed, count);
                }
                if confirm {
                    self.confirm(from, request_id, n, log.as_deref());
                }
                self.pause_if_remote(from, queue);
            }
            Err(e) => {
                if e.code == ErrorCode::QueueNotFound {
                    self.count_unroutable(mandatory, count);
                }
                tracing::debug!(queue, code = ?e.code, "publish refused: {}", e.message);
                self.route_reply(from, Reply::Error { request_id, code: e.code, message: e.message });
            }
        }
        self.flush_dead_letters();
    }

    /// Confirms `count` messages: after the log's next flush when some were
    /// logged, now otherwise.
    fn confirm(&self, to: ConnRef, request_id: u64, count: u32, log: Option<&durable::Durable>) {
        match log {
            Some(d) => self.confirm_after_log(d, to, request_id, count),
            None => {
                bump(&self.counters.confirmed, u64::from(count));
                self.counters.confirm_latency.observe(std::time::Duration::ZERO, u64::from(count));
                self.route_reply(to, Reply::Confirm { request_id, count });
            }
        }
    }

    /// Appends a batch to one queue: all or nothing, or with `partial` as
    /// much as its length limit lets in (the count is returned).
    /// Persistent messages into a durable queue are logged, and the log is
    /// returned: their confirm must wait for its flush.
    fn enqueue(
        &self,
        persistent: bool,
        partial: bool,
        queue: &str,
        entries: impl ExactSizeIterator<Item = Bytes>,
        origin: Option<&Arc<Origin>>,
    ) -> Result<(u32, Option<Rc<durable::Durable>>), QueueError> {
        let now = self.timers.now_ms();
        // A stream stores every message, whatever its delivery mode. The
        // lookup is made only once a stream has ever existed here.
        let stored = persistent || (self.queues.has_streams() && self.queues.is_stream(queue));
        match self.log_target(stored, queue)? {
            None => {
                let p = self.with_queue_at(queue, now, |q| {
                    let p = q.publish(persistent, partial, now, entries, origin, |_, _| {});
                    q.take_stream_dropped();
                    q.take_stream_chunk();
                    p
                })?;
                Ok((p.accepted, None))
            }
            Some((d, id)) => {
                let p = self.with_queue_at(queue, now, |q| {
                    let mut locs = Vec::new();
                    let first = q.next_seq();
                    let p = q.publish(persistent, partial, now, entries, origin, |seq, e| {
                        // Not poisoned: checked by log_target, just now.
                        if let Ok(Some(loc)) = d.log.publish(id, seq, e) {
                            locs.push((seq, loc));
                        }
                    })?;
                    // Where the batch came from, once, after its records
                    // (the accepted ones have consecutive numbers from
                    // `first`); nothing for the default exchange.
                    if let Some(o) = origin {
                        if let Err(e) = d.log.origin(id, first, p.accepted, o) {
                            tracing::warn!(shard = self.id, queue, "message origin not logged: {e}");
                        }
                    }
                    // Past the memory budget, the newest keep only `loc`;
                    // a stream keeps its window of the newest.
                    self.spill_over_budget(q, &locs);
                    q.stream_locate(&locs);
                    self.log_stream_dropped(&d, id, q);
                    Ok(p)
                })?;
                Ok((p.accepted, Some(d)))
            }
        }
    }

    fn connection_closed(&self, from: ConnRef, names: &[String]) {
        let mut queues = self.queues.borrow_mut();
        for name in names {
            if let Some(q) = queues.get_mut(name) {
                let n = q.connection_closed(from);
                bump(&self.counters.redelivered, n as u64);
                q.touch(self.timers.now_ms());
                self.settle(q);
                if q.exclusive_owner == Some(from) || q.auto_delete_due() {
                    self.remove_queue(&mut queues, name);
                }
                self.publish_pause.notify_resume();
            }
        }
    }
}

/// Exclusive queues serve only the connection that declared them.
pub(super) fn check_lock(q: &Queue, from: ConnRef) -> Result<(), QueueError> {
    match q.exclusive_owner {
        Some(owner) if owner != from => Err(QueueError::new(
            ErrorCode::QueueLocked,
            format!("queue {} is exclusive to another connection", crate::routing::vhost::describe(&q.name)),
        )),
        _ => Ok(()),
    }
}

pub(super) fn not_found(name: &str) -> QueueError {
    QueueError::new(ErrorCode::QueueNotFound, format!("no queue {}", crate::routing::vhost::describe(name)))
}
