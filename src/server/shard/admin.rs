//! Operator requests (metrics, the HTTP API, `ringmq ctl`): a shard asks
//! every shard, itself included, over the mesh and awaits their replies.
//! The waiting side is shard-local state (a thread-local map of pending
//! gathers), so nothing here is shared between cores. What the operator
//! sees of it: [`crate::server::admin`] (`ringmq ctl`),
//! [`crate::server::stats`] (Prometheus text) and `crate::http`.
//!
//! A detailed snapshot (one row per queue) is built in slices of
//! [`STATS_CHUNK`] queues, and the shard serves its sockets between slices
//! ([`crate::rt::yield_to_io`]): a scrape of 10,000 queues does not hold up
//! the traffic of the shards it asks.

use super::super::mesh::MeshMsg;
use super::super::queue::Queue;
use super::super::stats::{
    AdminReply, AdminReq, ChannelStats, ConnStats, ConsumerStats, QueueStats, ShardStats, PROTOCOLS,
};
use super::Shard;
use crate::rt::Notify;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How long a gather waits for a shard before reporting it as silent.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Queues per slice of a detailed snapshot; the shard polls its sockets
/// between slices.
pub const STATS_CHUNK: usize = 256;

#[derive(Default)]
struct Gather {
    replies: RefCell<Vec<(u16, AdminReply)>>,
    done: Notify,
}

thread_local! {
    static PENDING: RefCell<HashMap<u64, Rc<Gather>>> = RefCell::new(HashMap::new());
    static NEXT_TOKEN: Cell<u64> = const { Cell::new(1) };
}

/// One operator request in flight on a shard (`admin_requests_per_shard_max`);
/// the slot is given back when it is dropped.
pub struct AdminPermit(Rc<Cell<u32>>);

impl Drop for AdminPermit {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Shard {
    /// A slot for one operator request (native `Admin`, the HTTP API,
    /// `/metrics`); `None` when `admin_requests_per_shard_max` are in
    /// flight here: each may gather a snapshot from every shard, so they
    /// are few by design, and the caller refuses the request (try again).
    pub fn admin_permit(&self) -> Option<AdminPermit> {
        let n = self.admin_in_flight.get();
        if n >= self.config.admin_requests_per_shard_max {
            tracing::debug!(shard = self.id, n, "operator request refused: admin_requests_per_shard_max reached");
            return None;
        }
        self.admin_in_flight.set(n + 1);
        Some(AdminPermit(self.admin_in_flight.clone()))
    }

    /// Sends `make(shard)` to each of `targets` and returns their replies
    /// in shard order; a shard that does not answer in time gets an error.
    pub async fn admin(&self, targets: &[u16], make: impl FnMut(u16) -> AdminReq) -> Vec<(u16, AdminReply)> {
        self.admin_within(targets, ADMIN_TIMEOUT, make).await
    }

    /// `admin`, waiting up to `timeout` (a cluster command waits on the
    /// group: a join catches the new node up first).
    pub async fn admin_within(
        &self,
        targets: &[u16],
        timeout: Duration,
        mut make: impl FnMut(u16) -> AdminReq,
    ) -> Vec<(u16, AdminReply)> {
        let token = NEXT_TOKEN.with(|t| {
            let v = t.get();
            t.set(v + 1);
            v
        });
        let g = Rc::new(Gather::default());
        PENDING.with(|p| p.borrow_mut().insert(token, g.clone()));
        // The peers first, so that they work while this shard does its part.
        for &s in targets.iter().filter(|s| **s != self.id) {
            self.mesh.forward(s, MeshMsg::Admin { from: self.id, token, req: make(s) });
        }
        if targets.contains(&self.id) {
            let r = match make(self.id) {
                AdminReq::Stats { detail: true } => AdminReply::Stats(Box::new(self.stats_detailed().await)),
                AdminReq::Stats { detail: false } => AdminReply::Stats(Box::new(self.stats_sliced().await)),
                AdminReq::Consumers => AdminReply::Consumers(self.consumers_listed().await),
                AdminReq::Users(change) => AdminReply::Users(self.change_users(change).await),
                AdminReq::Cluster(ask) => AdminReply::Cluster(self.cluster_admin(ask).await),
                AdminReq::Place { queue, balanced, remove, def } => {
                    AdminReply::Placed(self.place_queue(queue, (balanced, remove), *def).await)
                }
                req => self.admin_local(req),
            };
            g.replies.borrow_mut().push((self.id, r));
        }
        let wait = async {
            loop {
                let n = g.done.notified();
                if g.replies.borrow().len() >= targets.len() {
                    return;
                }
                n.await;
            }
        };
        futures_lite::future::or(wait, glommio::timer::sleep(timeout)).await;
        PENDING.with(|p| p.borrow_mut().remove(&token));
        let mut replies = std::mem::take(&mut *g.replies.borrow_mut());
        for &s in targets {
            if !replies.iter().any(|(r, _)| *r == s) {
                replies.push((s, AdminReply::Done(Err(format!("shard {s} did not answer")))));
            }
        }
        replies.sort_by_key(|(s, _)| *s);
        replies
    }

    /// Every shard's report, in shard order (a silent shard is left out).
    pub async fn gather_stats(&self, detail: bool) -> Vec<ShardStats> {
        let all: Vec<u16> = (0..self.count).collect();
        self.admin(&all, |_| AdminReq::Stats { detail })
            .await
            .into_iter()
            .filter_map(|(_, r)| match r {
                AdminReply::Stats(s) => Some(*s),
                AdminReply::Done(_)
                | AdminReply::Consumers(_)
                | AdminReply::Channels(_)
                | AdminReply::Queue(_)
                | AdminReply::Users(_)
                | AdminReply::Cluster(_)
                | AdminReply::Placed(_) => None,
            })
            .collect()
    }

    /// An admin request from another shard. A detailed snapshot is built
    /// by a task of its own, in slices; the rest is answered at once, in
    /// order with the mesh messages around it.
    pub(super) fn on_admin(self: &Rc<Self>, from: u16, token: u64, req: AdminReq) {
        let me = self.clone();
        // On the bulk queue: the mesh receiver that takes the request is
        // on the latency one, and a snapshot walks every queue.
        let later = move |reply: std::pin::Pin<Box<dyn std::future::Future<Output = AdminReply>>>| {
            let sh = me.clone();
            let spawned = me.sched.spawn(crate::server::sched::Class::Bulk, async move {
                let reply = reply.await;
                sh.mesh.forward(from, MeshMsg::AdminReply { shard: sh.id, token, reply });
            });
            match spawned {
                Ok(t) => drop(t.detach()),
                // The asking shard's wait times out and says so.
                Err(e) => tracing::error!(shard = me.id, "admin request not run: {e}"),
            };
        };
        let me = self.clone();
        match req {
            AdminReq::Stats { detail: true } => {
                later(Box::pin(async move { AdminReply::Stats(Box::new(me.stats_detailed().await)) }))
            }
            AdminReq::Stats { detail: false } => {
                later(Box::pin(async move { AdminReply::Stats(Box::new(me.stats_sliced().await)) }))
            }
            AdminReq::Cluster(ask) => later(Box::pin(async move { AdminReply::Cluster(me.cluster_admin(ask).await) })),
            AdminReq::Consumers => later(Box::pin(async move { AdminReply::Consumers(me.consumers_listed().await) })),
            AdminReq::Users(change) => later(Box::pin(async move { AdminReply::Users(me.change_users(change).await) })),
            AdminReq::Place { queue, balanced, remove, def } => {
                later(Box::pin(
                    async move { AdminReply::Placed(me.place_queue(queue, (balanced, remove), *def).await) },
                ))
            }
            req => {
                let reply = self.admin_local(req);
                self.mesh.forward(from, MeshMsg::AdminReply { shard: self.id, token, reply });
            }
        }
    }

    /// A reply to a gather this shard started (or an error for a peer
    /// that stopped).
    pub(super) fn on_admin_reply(&self, shard: u16, token: u64, reply: AdminReply) {
        if let Some(g) = PENDING.with(|p| p.borrow().get(&token).cloned()) {
            g.replies.borrow_mut().push((shard, reply));
            g.done.notify();
        }
    }

    fn admin_local(&self, req: AdminReq) -> AdminReply {
        match req {
            AdminReq::Stats { detail: false } => AdminReply::Stats(Box::new(self.stats())),
            // Callers build these with `stats_detailed`; answered the
            // same, in one go, should one get here.
            AdminReq::Stats { detail: true } => {
                let mut s = self.stats_base();
                let names: Vec<String> = self.queues.borrow().keys().cloned().collect();
                self.add_queue_rows(&mut s, &mut names.into_iter(), usize::MAX);
                AdminReply::Stats(Box::new(s))
            }
            AdminReq::Queue { queue } => {
                let row = self.queues.borrow().get(&queue).map(|q| Box::new(self.queue_row(queue.clone(), q)));
                AdminReply::Queue(row)
            }
            AdminReq::Purge { queue } => {
                let r = self.with_queue(&queue, |q| Ok(self.purge_logged(q) as u64));
                self.publish_pause.notify_resume();
                AdminReply::Done(r.map_err(|e| e.message))
            }
            AdminReq::Delete { queue } => {
                let owner = self.queues.borrow().get(&queue).and_then(|q| q.exclusive_owner);
                // The operator may delete anybody's queue: act as its owner.
                let from = owner.unwrap_or(super::super::types::ConnRef { shard: self.id, conn_id: 0 });
                AdminReply::Done(
                    self.delete_from(from, (false, false), &queue, None).map(|n| n.unwrap_or(0)).map_err(|e| e.message),
                )
            }
            AdminReq::CloseConn { conn_id } => {
                let sink = self.conns.get(conn_id);
                match sink {
                    Some(s) => {
                        s.shut_down("closed by an operator");
                        AdminReply::Done(Ok(1))
                    }
                    None => AdminReply::Done(Err(format!("no connection {}/{conn_id}", self.id))),
                }
            }
            // Callers build this with `consumers_listed`; answered the
            // same, in one go, should one get here.
            AdminReq::Consumers => {
                let names: Vec<String> = self.queues.borrow().keys().cloned().collect();
                let mut rows = Vec::new();
                self.add_consumer_rows(&mut rows, &mut names.into_iter(), usize::MAX);
                AdminReply::Consumers(rows)
            }
            AdminReq::Channels => AdminReply::Channels(self.channels_listed()),
            // Callers run these with `change_users`, which waits.
            AdminReq::Users(_) => AdminReply::Users(Err(crate::server::admin_users::UserChangeFailed::NotStored(
                "a user change reached the synchronous path (bug)".into(),
            ))),
            AdminReq::Cluster(_) => AdminReply::Cluster(serde_json::json!({
                "error": "a cluster command reached the synchronous path (bug)"
            })),
            AdminReq::Place { .. } => AdminReply::Placed(Err(super::super::types::QueueError::new(
                crate::protocol::ErrorCode::Internal,
                "a placement reached the synchronous path (bug)",
            ))),
        }
    }

    /// This shard's report with queue totals only: plain reads of its
    /// cells and queues, no allocation per queue.
    pub fn stats(&self) -> ShardStats {
        let mut s = self.stats_base();
        for q in self.queues.borrow().values() {
            add_queue(&mut s, &self.queue_row(String::new(), q));
        }
        s
    }

    /// `stats`, `STATS_CHUNK` queues at a time with the shard's sockets
    /// served in between: a scrape of a shard with many queues must not
    /// hold its connections up for a walk over all of them.
    pub async fn stats_sliced(&self) -> ShardStats {
        let mut s = self.stats_base();
        let names: Vec<String> = self.queues.borrow().keys().cloned().collect();
        for chunk in names.chunks(STATS_CHUNK) {
            {
                let queues = self.queues.borrow();
                for q in chunk.iter().filter_map(|n| queues.get(n)) {
                    s.queue_count += 1;
                    s.messages_ready += (q.ready_len() + q.stream_len()) as u64;
                    s.messages_unacked += q.unacked_len() as u64;
                    s.ready_bytes += q.ready_bytes() + q.stream_bytes();
                    s.messages_spilled += q.spilled_len() as u64;
                    s.consumers += q.consumer_count() as u64;
                }
            }
            if names.len() > STATS_CHUNK {
                crate::rt::yield_to_io().await;
            }
        }
        s
    }

    /// This shard's report with a row per queue, built `STATS_CHUNK`
    /// queues at a time with the shard's sockets served in between. The
    /// names are listed first (one pass, no other work); a queue deleted
    /// before its slice is left out, one declared meanwhile comes in the
    /// next snapshot. Totals are summed from the rows, so they agree.
    pub async fn stats_detailed(&self) -> ShardStats {
        let mut s = self.stats_base();
        let names: Vec<String> = self.queues.borrow().keys().cloned().collect();
        s.queues.reserve(names.len());
        let mut names = names.into_iter();
        loop {
            self.add_queue_rows(&mut s, &mut names, STATS_CHUNK);
            if names.len() == 0 {
                return s;
            }
            crate::rt::yield_to_io().await;
        }
    }

    /// Every push consumer of this shard's queues, gathered `STATS_CHUNK`
    /// queues at a time with the shard's sockets served in between (as
    /// `stats_detailed`). Their number is bounded by the connections and
    /// `consumers_per_connection_max`.
    pub async fn consumers_listed(&self) -> Vec<ConsumerStats> {
        let names: Vec<String> = self.queues.borrow().keys().cloned().collect();
        let mut rows = Vec::new();
        let mut names = names.into_iter();
        loop {
            self.add_consumer_rows(&mut rows, &mut names, STATS_CHUNK);
            if names.len() == 0 {
                return rows;
            }
            crate::rt::yield_to_io().await;
        }
    }

    fn add_consumer_rows(&self, rows: &mut Vec<ConsumerStats>, names: &mut std::vec::IntoIter<String>, n: usize) {
        let queues = self.queues.borrow();
        for name in names.by_ref().take(n) {
            let Some(q) = queues.get(&name) else { continue };
            rows.extend(q.push_consumer_list().map(|c| ConsumerStats {
                queue: name.clone(),
                shard: self.id,
                connection: format!("{}:{}", c.owner.shard, c.owner.conn_id),
                consumer_id: c.id,
                prefetch: c.prefetch(),
                unacked: c.unacked_live,
                priority: c.priority,
                exclusive: c.exclusive,
            }));
        }
    }

    /// Adds up to `n` of `names` to `s` as rows and totals.
    fn add_queue_rows(&self, s: &mut ShardStats, names: &mut std::vec::IntoIter<String>, n: usize) {
        let queues = self.queues.borrow();
        for name in names.by_ref().take(n) {
            let Some(q) = queues.get(&name) else { continue };
            let row = self.queue_row(name, q);
            add_queue(s, &row);
            s.queues.push(row);
        }
    }

    fn queue_row(&self, name: String, q: &Queue) -> QueueStats {
        let (_, unacked_bytes) = q.unacked_totals();
        let stream_on_disk = q.stream_on_disk();
        // A stream stores every message (a log), whatever its delivery mode.
        let (persistent, persistent_bytes) =
            if q.is_stream() { (q.stream_len() as u64, q.stream_bytes()) } else { q.persistent_totals() };
        QueueStats {
            name,
            shard: self.id,
            durable: q.durable,
            exclusive: q.exclusive_owner.is_some(),
            auto_delete: q.auto_delete,
            ready: (q.ready_len() + q.stream_len()) as u64,
            unacked: q.unacked_len() as u64,
            consumers: q.consumer_count() as u64,
            ready_bytes: q.ready_bytes() + q.stream_bytes(),
            unacked_bytes,
            persistent,
            persistent_bytes,
            spilled: q.spilled_len() as u64 + stream_on_disk.0,
            spilled_bytes: q.spilled_bytes() + stream_on_disk.1,
            head_timestamp: q.head_timestamp().unwrap_or(0),
            published: q.published_total,
            delivered: q.delivered_total,
            args: q.args.raw.clone(),
        }
    }

    /// Every channel of this shard's connections: a few per connection,
    /// read from each connection's own state.
    fn channels_listed(&self) -> Vec<ChannelStats> {
        let mut rows = Vec::new();
        self.conns.for_each(|id, sink| {
            let list = sink.channel_rows();
            if list.is_empty() {
                return;
            }
            let connection = format!("{}:{id}", self.id);
            let user = sink.login_user().unwrap_or_default();
            let vhost = sink.login_vhost().unwrap_or_else(|| crate::protocol::vhost::DEFAULT_VHOST.into());
            let peer = sink.describe().1;
            for row in list {
                let (connection, user, vhost, peer) = (connection.clone(), user.clone(), vhost.clone(), peer.clone());
                rows.push(ChannelStats { connection, user, vhost, peer, row });
            }
        });
        rows
    }

    /// Counters, connections and storage figures, without the queues.
    fn stats_base(&self) -> ShardStats {
        let c = &self.counters;
        let mut s = ShardStats {
            shard: self.id,
            published: c.published.get(),
            delivered: c.delivered.get(),
            acked: c.acked.get(),
            redelivered: c.redelivered.get(),
            confirmed: c.confirmed.get(),
            dead_lettered: c.dead_lettered.get(),
            dead_lettered_dropped: c.dead_lettered_dropped.get(),
            auth_failures: c.auth_failures.get(),
            auth_successes: c.auth_successes.get(),
            dead_by_reason: c.dead_by_reason.each_ref().map(|r| r.each_ref().map(Cell::get)),
            tls_handshake_failures: c.tls_handshake_failures.get(),
            queues_declared: c.queues_declared.get(),
            queues_created: c.queues_created.get(),
            queues_deleted: c.queues_deleted.get(),
            connections_opened: self.conns.opened_total(),
            delivered_consume_auto_ack: c.delivered_consume_auto_ack.get(),
            delivered_get_auto_ack: c.delivered_get_auto_ack.get(),
            delivered_get_manual_ack: c.delivered_get_manual_ack.get(),
            get_empty: c.get_empty.get(),
            received: c.received.get(),
            received_confirm: c.received_confirm.get(),
            routed: c.routed.get(),
            unroutable_dropped: c.unroutable_dropped.get(),
            unroutable_returned: c.unroutable_returned.get(),
            channels_opened: c.channels_opened.get(),
            http_connections: self.conns.http_count() as u64,
            sockets_max: u64::from(self.config.connections_per_shard_max)
                + u64::from(self.config.unauthenticated_connections_max),
            forwarded: self.mesh.forwarded_total(),
            node_forwarded: self.remote.forwarded.get(),
            node_served: self.remote.served.get(),
            data_links: self.remote.links_up(),
            confirm_latency: c.confirm_latency.snapshot(),
            sched: self.sched.snapshot(),
            ..Default::default()
        };
        // Connections are few next to queues: always listed (the metrics
        // count them per protocol).
        self.conns.for_each(|id, sink| {
            let (protocol, peer) = sink.describe();
            let protocol = PROTOCOLS.iter().copied().find(|p| *p == protocol).unwrap_or("native");
            let outbox_bytes = sink.outbox_bytes() as u64;
            let vhost = sink.login_vhost().unwrap_or_else(|| crate::protocol::vhost::DEFAULT_VHOST.into());
            let name = format!("{}:{id}", self.id);
            let channel_rows = sink.channel_rows();
            let channels = channel_rows.len() as u64;
            let publishers = if protocol == "amqp" {
                channel_rows.iter().filter(|c| c.published > 0).count() as u64
            } else {
                u64::from(sink.publishes())
            };
            let [recv_oct, recv_cnt, send_oct, send_cnt] = sink.traffic();
            s.conns.push(ConnStats {
                name,
                shard: self.id,
                protocol,
                peer,
                vhost,
                outbox_bytes,
                channels,
                recv_oct,
                recv_cnt,
                send_oct,
                send_cnt,
                channel_rows,
                publishers,
            });
        });
        s.connections = s.conns.len() as u64;
        s.channels = s.conns.iter().map(|c| c.channels).sum();
        if let Some(d) = self.durable() {
            let (n, nanos) = d.log.sync_stats();
            s.fsyncs = n;
            s.fsync_nanos = nanos;
            s.io = d.log.io_totals();
            s.segments_reused = d.log.segments_reused();
        }
        s.resident_bytes = self.resident_bytes();
        s.accounted_bytes = self.accounted_bytes();
        s.blocked_connections = self.blocked_connections();
        s.disk_bytes = dir_bytes(&self.config.data_dir.join(format!("shard-{}", self.id)));
        s
    }
}

/// Adds a queue's row to the shard's totals.
fn add_queue(s: &mut ShardStats, row: &QueueStats) {
    s.queue_count += 1;
    s.messages_ready += row.ready;
    s.messages_unacked += row.unacked;
    s.ready_bytes += row.ready_bytes;
    s.messages_spilled += row.spilled;
    s.consumers += row.consumers;
    s.unacked_bytes += row.unacked_bytes;
    s.persistent += row.persistent;
    s.persistent_bytes += row.persistent_bytes;
    s.spilled_bytes += row.spilled_bytes;
    if row.head_timestamp != 0 && (s.head_timestamp_min == 0 || row.head_timestamp < s.head_timestamp_min) {
        s.head_timestamp_min = row.head_timestamp;
    }
}

/// Bytes of the files in a shard's data dir (a few segments: cheap).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
