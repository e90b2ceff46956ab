//! The shard's connection accounting: connections count as unauthenticated
//! (under `unauthenticated_connections_max`) until they log in, then under
//! `connections_per_shard_max` (docs/security.md).

use super::{ConnSink, Shard};
use crate::server::types::ConnRef;
use std::rc::Rc;

/// An HTTP connection's place under `unauthenticated_connections_max`,
/// given back when dropped.
pub struct HttpSlot(Rc<Shard>);

impl Drop for HttpSlot {
    fn drop(&mut self) {
        let c = &self.0.http_conns;
        c.set(c.get().saturating_sub(1));
    }
}

impl Shard {
    /// Connections that have not logged in: native and AMQP ones before
    /// their handshake, and every HTTP connection.
    pub fn unauthenticated_count(&self) -> usize {
        self.conns.borrow().len().saturating_sub(self.logged_in.get()) + self.http_conns.get()
    }

    /// Registers a new connection as unauthenticated; `None` when the
    /// shard already holds `unauthenticated_connections_max` of them.
    pub fn register(&self, sink: Rc<dyn ConnSink>) -> Option<ConnRef> {
        if !self.unauthenticated_room() {
            return None;
        }
        let me = ConnRef { shard: self.id, conn_id: self.next_conn_id.get() };
        self.next_conn_id.set(me.conn_id + 1);
        self.conns.borrow_mut().insert(me.conn_id, sink);
        Some(me)
    }

    /// Logs a connection refused at `unauthenticated_connections_max`,
    /// at most once a second with the count since the last line.
    pub fn log_unauthenticated_refusal(&self, listener: &str) {
        let n = self.refused_unlogged.get() + 1;
        let now = std::time::Instant::now();
        if self.refused_logged_at.get().is_some_and(|t| now.duration_since(t).as_secs() < 1) {
            self.refused_unlogged.set(n);
            return;
        }
        self.refused_unlogged.set(0);
        self.refused_logged_at.set(Some(now));
        let max = self.config.unauthenticated_connections_max;
        tracing::warn!(
            shard = self.id,
            listener,
            refused = n,
            "refusing connections: unauthenticated_connections_max = {max} reached"
        );
    }

    fn unauthenticated_room(&self) -> bool {
        self.unauthenticated_count() < self.config.unauthenticated_connections_max as usize
    }

    /// Moves a connection that logged in from the unauthenticated cap to
    /// `connections_per_shard_max`; false (it stays unauthenticated) when
    /// that is full.
    pub fn promote(&self) -> bool {
        if self.logged_in.get() >= self.config.connections_per_shard_max as usize {
            return false;
        }
        self.logged_in.set(self.logged_in.get() + 1);
        true
    }

    /// `logged_in`: whether `promote` succeeded for it.
    pub fn unregister(&self, me: ConnRef, logged_in: bool) {
        if self.conns.borrow_mut().remove(&me.conn_id).is_some() && logged_in {
            self.logged_in.set(self.logged_in.get().saturating_sub(1));
        }
    }

    /// An HTTP connection: counted as unauthenticated for its whole life
    /// (its requests authenticate one by one). `None` when at the cap.
    pub fn http_open(self: &Rc<Self>) -> Option<HttpSlot> {
        if !self.unauthenticated_room() {
            return None;
        }
        self.http_conns.set(self.http_conns.get() + 1);
        Some(HttpSlot(self.clone()))
    }
}
