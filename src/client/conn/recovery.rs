//! A glommio connection's side of recovery (`client::recover`), as the
//! tokio client's: going down when its socket ends, a redial that keeps
//! the connection's identity (producers and consumers hold the same
//! `Rc<Conn>`), the consumers subscribed again under their ids, and back
//! up.

use super::{Conn, Phase};
use crate::client::core::cmds;
use crate::client::core::recovery::Event;
use crate::client::core::rounds::{check_redialled, redial_addr};
use crate::client::dial::Dialer;
use crate::client::handshake::Greeting;
use crate::client::recover::Hub;
use crate::client::{ClientError, ClientOptions, Result};
use std::net::SocketAddr;
use std::rc::Rc;

impl Conn {
    /// Socket `gen` ended with `err`: recovery takes over when it is on
    /// and this client is not closing; otherwise the connection ends.
    pub(super) fn on_error(&self, gen: u64, err: ClientError) {
        // The client closing marks its hub first.
        let recovering = self.hub.as_ref().is_some_and(|hub| !hub.is_closing());
        if recovering {
            self.lost(gen, err);
        } else {
            self.fail(err);
        }
    }

    /// Goes down: pending requests fail (a producer keeps its unconfirmed
    /// batches for recovery), consumers recovery will resubscribe stay,
    /// the others (direct reply-to) end; the old socket's outbox closes
    /// with what it held (it spoke of that session's tags and ids).
    fn lost(&self, gen: u64, err: ClientError) {
        if self.gen.get() != gen || matches!(self.phase.get(), Phase::Down | Phase::Closed) {
            return;
        }
        self.phase.set(Phase::Down);
        self.gen.set(gen + 1);
        self.outbox.borrow().close();
        let waiters = self.requests.borrow_mut().fail(&err);
        let ended: Vec<u32> =
            self.consumers.borrow().iter().filter(|(_, c)| !c.recovers()).map(|(id, _)| *id).collect();
        let ended: Vec<_> = ended.iter().filter_map(|id| self.consumers.borrow_mut().remove(id)).collect();
        self.ack_dirty.borrow_mut().clear();
        self.blocked.borrow_mut().take();
        // Tags of `get`s on this socket are stale from now on.
        self.pulls.borrow_mut().new_socket();
        for w in waiters {
            w(Err(err.clone()));
        }
        for c in ended {
            c.close(err.clone());
        }
        self.unblocked.notify();
        if let Some(hub) = &self.hub {
            hub.event(Event::Disconnected { addr: self.addr.get(), error: err });
            hub.conn_lost();
        }
    }

    /// Whether recovery is bringing it back.
    pub(crate) fn is_down(&self) -> bool {
        self.phase.get() == Phase::Down
    }

    /// Whether it is up (no recovery under way, not closed).
    pub(crate) fn is_up(&self) -> bool {
        self.phase.get() == Phase::Up
    }

    /// Waits until recovery brought it back (or it closed for good).
    pub(crate) async fn wait_up(&self) {
        loop {
            let n = self.up.notified();
            if matches!(self.phase.get(), Phase::Up | Phase::Closed) {
                return;
            }
            n.await;
        }
    }

    /// The client's recovery hub, when recovery is on.
    pub(crate) fn hub(&self) -> Option<&Rc<Hub>> {
        self.hub.as_ref()
    }

    /// The address it was dialled at (the new one after a failover).
    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Dials the same node and shard again (its own port: the shared one
    /// may reach another shard) and shakes hands, or, with `to` (a
    /// failover, the first connection only), another node's shard at
    /// `to`, which must have the same limits (`core::rounds`). Leaves the
    /// connection `Replaying`.
    pub(crate) async fn redial(
        self: &Rc<Self>,
        dialer: &Dialer,
        opts: &ClientOptions,
        to: Option<SocketAddr>,
    ) -> Result<()> {
        let was = self.node_info();
        let addr = redial_addr(to, &was, self.addr());
        let (r, w, Greeting { info, reader, .. }) = Self::dial(dialer, addr, opts, false).await?;
        check_redialled(addr, &info, &was, &self.info, to.is_some())?;
        if self.phase.get() != Phase::Down {
            return Err(ClientError::Closed("the connection was closed meanwhile".into()));
        }
        self.phase.set(Phase::Replaying);
        self.requests.borrow_mut().reopen();
        *self.outbox.borrow_mut() = Rc::default();
        self.addr.set(addr);
        *self.node.borrow_mut() = info;
        self.start(r, w, reader, self.gen.get());
        Ok(())
    }

    /// Subscribes every consumer recovery keeps again, under its id.
    pub(crate) async fn resubscribe(&self, hub: &Hub) -> Vec<(u32, Result<()>)> {
        let kept: Vec<_> = self.consumers.borrow().iter().map(|(id, c)| (*id, c.clone())).collect();
        let mut done = Vec::with_capacity(kept.len());
        for (id, c) in kept {
            let Some(rec) = hub.topology.borrow().consumer(id).cloned() else { continue };
            c.new_epoch();
            let r = self.simple(cmds::subscribe(id, &rec.queue, &rec.options)).await.map(|_| ());
            if let Err(e) = &r {
                self.consumers.borrow_mut().remove(&id);
                hub.topology.borrow_mut().consumer_removed(id);
                c.close(e.clone());
            }
            done.push((id, r));
        }
        done
    }

    /// Recovery is done: the application's traffic goes on.
    pub(crate) fn set_up(&self) {
        if self.phase.get() == Phase::Replaying {
            self.phase.set(Phase::Up);
            self.up.notify();
        }
    }
}
