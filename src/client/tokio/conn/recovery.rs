//! A connection's side of recovery (`tokio::recover`): going down when its
//! socket ends, a redial that keeps the connection's identity (producers
//! and consumers hold the same `Arc<Conn>`), the consumers subscribed
//! again under their ids, and back up.

use super::{lock, Conn, Phase};
use crate::client::core::cmds;
use crate::client::core::recovery::Event;
use crate::client::core::rounds::{check_redialled, redial_addr};
use crate::client::tokio::io::Dialer;
use crate::client::tokio::recover::Hub;
use crate::client::{ClientError, ClientOptions, Result};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Conn {
    /// Socket `gen` ended with `err`: recovery takes over when it is on
    /// and this client is not closing; otherwise the connection ends.
    pub(super) fn on_error(&self, gen: u64, err: ClientError) {
        let recovering = match &self.hub {
            Some(hub) => !hub.is_closing() && !lock(&self.out).closing,
            None => false,
        };
        if recovering {
            self.lost(gen, err);
        } else {
            self.fail(err);
        }
    }

    /// Goes down: pending requests fail (a producer keeps its unconfirmed
    /// batches for recovery), consumers recovery will resubscribe stay,
    /// the others (direct reply-to) end; what was queued for the old
    /// socket is dropped, since it spoke of that session's tags and ids.
    fn lost(&self, gen: u64, err: ClientError) {
        let (waiters, ended) = {
            let mut s = lock(&self.state);
            if self.gen.load(Ordering::Acquire) != gen || matches!(s.phase, Phase::Down | Phase::Closed) {
                return;
            }
            s.phase = Phase::Down;
            self.down.store(true, Ordering::Release);
            let w = s.requests.fail(&err);
            let ended: Vec<u32> = s.consumers.iter().filter(|(_, c)| !c.recovers()).map(|(id, _)| *id).collect();
            let ended: Vec<_> = ended.iter().filter_map(|id| s.consumers.remove(id)).collect();
            s.ack_dirty.clear();
            s.blocked = None;
            // Tags of `get`s on this socket are stale from now on.
            s.pulls.new_socket();
            (w, ended)
        };
        {
            let mut o = lock(&self.out);
            self.gen.fetch_add(1, Ordering::AcqRel);
            o.buf.clear();
            o.written = o.pushes;
        }
        self.queued.store(usize::MAX, Ordering::Relaxed);
        for w in waiters {
            w(Err(err.clone()));
        }
        for c in ended {
            c.close(err.clone());
        }
        // The old writer stops; whoever waited on it sees the change.
        self.kick.notify_one();
        self.wrote.notify_waiters();
        self.unblocked.notify_waiters();
        if let Some(hub) = &self.hub {
            hub.event(Event::Disconnected { addr: self.addr(), error: err });
            hub.conn_lost();
        }
    }

    /// Whether recovery is bringing it back.
    pub(crate) fn is_down(&self) -> bool {
        lock(&self.state).phase == Phase::Down
    }

    /// Whether it is up (no recovery under way, not closed).
    pub(crate) fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Waits until recovery brought it back (or it closed for good).
    pub(crate) async fn wait_up(&self) {
        loop {
            let n = self.up.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if matches!(lock(&self.state).phase, Phase::Up | Phase::Closed) {
                return;
            }
            n.await;
        }
    }

    /// Dials the same node and shard again and shakes hands (the new
    /// socket must reach that shard), or, with `to` (a failover, the first
    /// connection only), another node's shard at `to`, which must have the
    /// same limits. Leaves the connection `Replaying`.
    pub(crate) async fn redial(
        self: &Arc<Self>,
        dialer: &Dialer,
        opts: &ClientOptions,
        to: Option<SocketAddr>,
    ) -> Result<()> {
        let was = self.node_info();
        let addr = redial_addr(to, &was, self.addr());
        let (info, _, r, w, buf) = Self::dial(dialer, addr, opts, false).await?;
        check_redialled(addr, &info, &was, &self.info, to.is_some())?;
        let gen = {
            let mut s = lock(&self.state);
            if s.phase != Phase::Down {
                return Err(ClientError::Closed("the connection was closed meanwhile".into()));
            }
            s.phase = Phase::Replaying;
            s.requests.reopen();
            let mut o = lock(&self.out);
            o.buf.clear();
            o.written = o.pushes;
            self.gen.load(Ordering::Acquire)
        };
        *lock(&self.addr) = addr;
        *lock(&self.node) = info;
        self.clone().start(r, w, buf, gen);
        Ok(())
    }

    /// Subscribes every consumer recovery keeps again, under its id: its
    /// tags go on counting from where they were (`ConsumerShared::new_epoch`).
    pub(crate) async fn resubscribe(&self, hub: &Hub) -> Vec<(u32, Result<()>)> {
        let kept: Vec<_> = lock(&self.state).consumers.iter().map(|(id, c)| (*id, c.clone())).collect();
        let mut done = Vec::with_capacity(kept.len());
        for (id, c) in kept {
            let Some(rec) = lock(&hub.topology).consumer(id).cloned() else { continue };
            c.new_epoch();
            let o = rec.options;
            let queue = rec.queue.as_str();
            let cmd = cmds::subscribe(id, queue, &o);
            let r = self.simple(cmd).await.map(|_| ());
            if let Err(e) = &r {
                lock(&self.state).consumers.remove(&id);
                lock(&hub.topology).consumer_removed(id);
                c.close(e.clone());
            }
            done.push((id, r));
        }
        done
    }

    /// Recovery is done: the application's traffic goes on.
    pub(crate) fn set_up(&self) {
        {
            let mut s = lock(&self.state);
            if s.phase != Phase::Replaying {
                return;
            }
            s.phase = Phase::Up;
            self.down.store(false, Ordering::Release);
        }
        self.queued.store(lock(&self.out).buf.len(), Ordering::Relaxed);
        self.up.notify_waiters();
        self.wrote.notify_waiters();
        self.kick.notify_one();
    }
}
