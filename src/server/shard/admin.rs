//! Operator requests (metrics, the HTTP API, `ringmq ctl`): a shard asks
//! every shard, itself included, over the mesh and awaits their replies.
//! The waiting side is shard-local state (a thread-local map of pending
//! gathers), so nothing here is shared between cores.

use super::super::mesh::MeshMsg;
use super::super::stats::{AdminReply, AdminReq, ConnStats, QueueStats, ShardStats, PROTOCOLS};
use super::Shard;
use crate::rt::Notify;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How long a gather waits for a shard before reporting it as silent.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Gather {
    replies: RefCell<Vec<(u16, AdminReply)>>,
    done: Notify,
}

thread_local! {
    static PENDING: RefCell<HashMap<u64, Rc<Gather>>> = RefCell::new(HashMap::new());
    static NEXT_TOKEN: Cell<u64> = const { Cell::new(1) };
}

impl Shard {
    /// Sends `make(shard)` to each of `targets` and returns their replies
    /// in shard order; a shard that does not answer in time gets an error.
    pub async fn admin(&self, targets: &[u16], mut make: impl FnMut(u16) -> AdminReq) -> Vec<(u16, AdminReply)> {
        let token = NEXT_TOKEN.with(|t| {
            let v = t.get();
            t.set(v + 1);
            v
        });
        let g = Rc::new(Gather::default());
        PENDING.with(|p| p.borrow_mut().insert(token, g.clone()));
        for &s in targets {
            if s == self.id {
                let r = self.admin_local(make(s));
                g.replies.borrow_mut().push((s, r));
            } else {
                self.mesh.forward(s, MeshMsg::Admin { from: self.id, token, req: make(s) });
            }
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
        futures_lite::future::or(wait, glommio::timer::sleep(ADMIN_TIMEOUT)).await;
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
                AdminReply::Done(_) => None,
            })
            .collect()
    }

    /// An admin request from another shard.
    pub(super) fn on_admin(&self, from: u16, token: u64, req: AdminReq) {
        let reply = self.admin_local(req);
        self.mesh.forward(from, MeshMsg::AdminReply { shard: self.id, token, reply });
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
            AdminReq::Stats { detail } => AdminReply::Stats(Box::new(self.stats(detail))),
            AdminReq::Purge { queue } => {
                let r = self.with_queue(&queue, |q| Ok(self.purge_logged(q) as u64));
                self.publish_resume.notify();
                AdminReply::Done(r.map_err(|e| e.message))
            }
            AdminReq::Delete { queue } => {
                let owner = self.queues.borrow().get(&queue).and_then(|q| q.exclusive_owner);
                // The operator may delete anybody's queue: act as its owner.
                let from = owner.unwrap_or(super::super::types::ConnRef { shard: self.id, conn_id: 0 });
                AdminReply::Done(self.delete_from(from, false, &queue).map_err(|e| e.message))
            }
            AdminReq::CloseConn { conn_id } => {
                let sink = self.conns.borrow().get(&conn_id).cloned();
                match sink {
                    Some(s) => {
                        s.shut_down("closed by an operator");
                        AdminReply::Done(Ok(1))
                    }
                    None => AdminReply::Done(Err(format!("no connection {}/{conn_id}", self.id))),
                }
            }
        }
    }

    /// This shard's report: plain reads of its cells and queues.
    pub fn stats(&self, detail: bool) -> ShardStats {
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
            forwarded: self.mesh.forwarded_total(),
            confirm_latency: c.confirm_latency.snapshot(),
            ..Default::default()
        };
        for q in self.queues.borrow().values() {
            s.queue_count += 1;
            s.messages_ready += q.ready_len() as u64;
            s.messages_unacked += q.unacked_len() as u64;
            s.messages_spilled += q.spilled_len() as u64;
            s.consumers += q.consumer_count() as u64;
            if detail {
                s.queues.push(QueueStats {
                    name: q.name.clone(),
                    shard: self.id,
                    durable: q.durable,
                    exclusive: q.exclusive_owner.is_some(),
                    auto_delete: q.auto_delete,
                    ready: q.ready_len() as u64,
                    unacked: q.unacked_len() as u64,
                    consumers: q.consumer_count() as u64,
                    ready_bytes: q.ready_bytes(),
                    published: q.published_total,
                    delivered: q.delivered_total,
                });
            }
        }
        // Connections are few next to queues: always listed (the metrics
        // count them per protocol).
        for (id, sink) in self.conns.borrow().iter() {
            let (protocol, peer) = sink.describe();
            let protocol = PROTOCOLS.iter().copied().find(|p| *p == protocol).unwrap_or("native");
            s.conns.push(ConnStats { name: format!("{}:{id}", self.id), shard: self.id, protocol, peer });
        }
        s.connections = s.conns.len() as u64;
        if let Some(d) = self.durable() {
            let (n, nanos) = d.log.sync_stats();
            s.fsyncs = n;
            s.fsync_nanos = nanos;
        }
        s.resident_bytes = self.resident_bytes();
        s.disk_bytes = dir_bytes(&self.config.data_dir.join(format!("shard-{}", self.id)));
        s
    }
}

/// Bytes of the files in a shard's data dir (a few segments: cheap).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
