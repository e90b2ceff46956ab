//! The shard's connection table: every native and AMQP connection on the
//! shard, by id, and its accounting. Connections count as unauthenticated
//! (under `unauthenticated_connections_max`) until they log in, then under
//! `connections_per_shard_max` (docs/security.md). At the unauthenticated
//! cap a new connection evicts the oldest one that has not logged in, so a
//! flood of sockets that never log in cannot lock real clients out: each
//! one only holds its slot until newer ones push it out.

use super::ConnSink;
use crate::server::config::Config;
use crate::server::types::ConnRef;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// The connections a shard holds, so that replies and deliveries find
/// their socket, and the caps they count under. One part of `Shard`.
pub struct ConnTable {
    shard: u16,
    config: Arc<Config>,
    conns: RefCell<HashMap<u64, Rc<dyn ConnSink>>>,
    next_id: Cell<u64>,
    /// Client connections registered, ever (`connections_opened_total`).
    opened: Cell<u64>,
    /// Of `conns`, those that have logged in.
    logged_in: Cell<usize>,
    /// Of `conns`, those that have not logged in and were not evicted,
    /// oldest (lowest id) first: the one to evict when a new one arrives
    /// at `unauthenticated_connections_max`.
    unauthenticated: RefCell<BTreeSet<u64>>,
    /// HTTP connections (never in `conns`; all unauthenticated), by id
    /// (from the same counter, so ids order them with the others by age),
    /// shared with their `HttpSlot`s, which remove themselves.
    http: Rc<RefCell<BTreeMap<u64, Rc<Evict>>>>,
    /// Refusals and evictions at `unauthenticated_connections_max` not yet
    /// logged, and when the last log line went out: a flood gets one line
    /// a second.
    refused_unlogged: Cell<u64>,
    refused_logged_at: Cell<Option<Instant>>,
    /// Lines logged this second about connections that never logged in.
    unauth_log: LogBudget,
}

/// An HTTP connection's place under `unauthenticated_connections_max`,
/// given back when dropped.
pub struct HttpSlot {
    table: Rc<RefCell<BTreeMap<u64, Rc<Evict>>>>,
    id: u64,
    evict: Rc<Evict>,
}

impl HttpSlot {
    /// Returns when the shard evicted this connection for a newer one
    /// (never, otherwise): the connection's task races it and ends.
    pub async fn evicted(&self) {
        loop {
            let n = self.evict.notify.notified();
            if self.evict.done.get() {
                return;
            }
            n.await;
        }
    }
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.table.borrow_mut().remove(&self.id);
    }
}

/// The signal an evicted HTTP connection waits on.
#[derive(Default)]
pub struct Evict {
    done: Cell<bool>,
    notify: crate::rt::Notify,
}

/// The window of `ConnTable::may_log_unauthenticated`.
struct LogBudget {
    since: Cell<Instant>,
    lines: Cell<u32>,
    skipped: Cell<u64>,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self { since: Cell::new(Instant::now()), lines: Cell::new(0), skipped: Cell::new(0) }
    }
}

/// Why a connection that logged in cannot move to the logged-in cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteError {
    /// `connections_per_shard_max` connections are logged in.
    ConnectionLimit,
    /// It was evicted at `unauthenticated_connections_max` before its
    /// login finished; it is being closed.
    Evicted,
}

/// What the eviction tells the evicted connection (and the log).
pub const EVICTED: &str =
    "evicted: unauthenticated_connections_max reached and this was the oldest connection not logged in";

impl ConnTable {
    pub fn new(shard: u16, config: Arc<Config>) -> Self {
        Self {
            shard,
            config,
            conns: RefCell::default(),
            next_id: Cell::new(1),
            opened: Cell::new(0),
            logged_in: Cell::new(0),
            unauthenticated: RefCell::default(),
            http: Rc::default(),
            refused_unlogged: Cell::new(0),
            refused_logged_at: Cell::new(None),
            unauth_log: LogBudget::default(),
        }
    }

    /// Client connections registered since the shard started (HTTP ones
    /// are not: they take ids from the same sequence, but not this count).
    pub fn opened_total(&self) -> u64 {
        self.opened.get()
    }

    /// The connection `conn_id`, if it is still open.
    #[inline]
    pub fn get(&self, conn_id: u64) -> Option<Rc<dyn ConnSink>> {
        self.conns.borrow().get(&conn_id).cloned()
    }

    /// Asks connection `conn_id` something without taking a reference to
    /// it (the dispatch path): `f` must not call back into the table.
    #[inline]
    pub fn with<T>(&self, conn_id: u64, f: impl FnOnce(&dyn ConnSink) -> T) -> Option<T> {
        self.conns.borrow().get(&conn_id).map(|s| f(s.as_ref()))
    }

    /// Every connection, by id, for a snapshot: `f` must not call back
    /// into the table.
    pub fn for_each(&self, mut f: impl FnMut(u64, &dyn ConnSink)) {
        for (id, sink) in self.conns.borrow().iter() {
            f(*id, sink.as_ref());
        }
    }

    /// Bytes the connections hold in memory (`ConnSink::held_bytes`).
    pub fn held_bytes(&self) -> u64 {
        self.conns.borrow().values().map(|c| c.held_bytes() as u64).sum()
    }

    /// Ends every connection after flushing what is queued to it.
    pub fn shut_down_all(&self, why: &str) {
        self.shut_down_where(|_| true, why);
    }

    /// Ends the connections logged in as `user` (a deleted user); how many.
    pub fn shut_down_user(&self, user: &str, why: &str) -> usize {
        self.shut_down_where(|c| c.login_user().as_deref() == Some(user), why)
    }

    /// Ends the connections logged in to `vhost`.
    pub fn shut_down_vhost(&self, vhost: &str, why: &str) -> usize {
        self.shut_down_where(|c| c.login_vhost().as_deref() == Some(vhost), why)
    }

    fn shut_down_where(&self, pick: impl Fn(&dyn ConnSink) -> bool, why: &str) -> usize {
        let conns: Vec<Rc<dyn ConnSink>> = self.conns.borrow().values().filter(|c| pick(c.as_ref())).cloned().collect();
        for c in &conns {
            c.shut_down(why);
        }
        conns.len()
    }

    /// Connections that have not logged in: native and AMQP ones before
    /// their handshake (not counting evicted ones on their way out), and
    /// every HTTP connection.
    /// HTTP connections open on this shard.
    pub fn http_count(&self) -> usize {
        self.http.borrow().len()
    }

    pub fn unauthenticated_count(&self) -> usize {
        self.unauthenticated.borrow().len() + self.http.borrow().len()
    }

    /// Registers a new connection as unauthenticated, evicting the oldest
    /// unauthenticated connection (native, AMQP or HTTP) when the shard is
    /// at `unauthenticated_connections_max`; `None` only when there is
    /// none to evict.
    pub fn register(&self, sink: Rc<dyn ConnSink>) -> Option<ConnRef> {
        if !self.unauthenticated_room() && !self.evict_oldest_unauthenticated() {
            return None;
        }
        let me = ConnRef { shard: self.shard, conn_id: self.next_id.get() };
        self.next_id.set(me.conn_id + 1);
        self.opened.set(self.opened.get() + 1);
        self.conns.borrow_mut().insert(me.conn_id, sink);
        self.unauthenticated.borrow_mut().insert(me.conn_id);
        Some(me)
    }

    /// Ends the oldest connection that has not logged in; false when
    /// there is none.
    fn evict_oldest_unauthenticated(&self) -> bool {
        let oldest_conn = self.unauthenticated.borrow().first().copied();
        let oldest_http = self.http.borrow().first_key_value().map(|(id, _)| *id);
        match (oldest_conn, oldest_http) {
            (None, None) => return false,
            (Some(c), h) if h.is_none_or(|h| c < h) => {
                self.unauthenticated.borrow_mut().remove(&c);
                if let Some(sink) = self.get(c) {
                    sink.evict(EVICTED);
                }
            }
            (_, h) => {
                // The slot goes now; the connection's task sees the signal.
                let e = h.and_then(|h| self.http.borrow_mut().remove(&h));
                if let Some(e) = e {
                    e.done.set(true);
                    e.notify.notify();
                }
            }
        }
        self.log_unauthenticated_limit("evicting the oldest unauthenticated connection");
        true
    }

    /// Logs a connection refused at `unauthenticated_connections_max`.
    pub fn log_unauthenticated_refusal(&self, listener: &str) {
        self.log_unauthenticated_limit(&format!("refusing a {listener} connection"));
    }

    /// Logs `what` happened at `unauthenticated_connections_max`, at most
    /// once a second with the count since the last line.
    fn log_unauthenticated_limit(&self, what: &str) {
        let n = self.refused_unlogged.get() + 1;
        let now = Instant::now();
        if self.refused_logged_at.get().is_some_and(|t| now.duration_since(t).as_secs() < 1) {
            self.refused_unlogged.set(n);
            return;
        }
        self.refused_unlogged.set(0);
        self.refused_logged_at.set(Some(now));
        let max = self.config.unauthenticated_connections_max;
        tracing::warn!(
            shard = self.shard,
            count = n,
            "unauthenticated_connections_max = {max} reached: {what} (count: this and the ones not logged since the last line)"
        );
    }

    /// Whether a log line about a connection that never logged in may go
    /// out now: at most `unauthenticated_log_lines_per_s` a second; the
    /// rest are counted, and the count logged when the next second starts.
    pub fn may_log_unauthenticated(&self) -> bool {
        let b = &self.unauth_log;
        let now = Instant::now();
        if now.duration_since(b.since.get()).as_secs() >= 1 {
            let skipped = b.skipped.replace(0);
            if skipped > 0 {
                tracing::warn!(
                    shard = self.shard,
                    skipped,
                    "log lines about connections that never logged in were skipped (unauthenticated_log_lines_per_s = {})",
                    self.config.unauthenticated_log_lines_per_s
                );
            }
            b.since.set(now);
            b.lines.set(0);
        }
        if b.lines.get() < self.config.unauthenticated_log_lines_per_s {
            b.lines.set(b.lines.get() + 1);
            return true;
        }
        b.skipped.set(b.skipped.get() + 1);
        false
    }

    fn unauthenticated_room(&self) -> bool {
        self.unauthenticated_count() < self.config.unauthenticated_connections_max as usize
    }

    /// Moves a connection that logged in from the unauthenticated cap to
    /// `connections_per_shard_max`. On an error it stays where it was.
    pub fn promote(&self, me: ConnRef) -> Result<(), PromoteError> {
        if !self.unauthenticated.borrow().contains(&me.conn_id) {
            return Err(PromoteError::Evicted);
        }
        if self.logged_in.get() >= self.config.connections_per_shard_max as usize {
            return Err(PromoteError::ConnectionLimit);
        }
        self.unauthenticated.borrow_mut().remove(&me.conn_id);
        self.logged_in.set(self.logged_in.get() + 1);
        Ok(())
    }

    /// `logged_in`: whether `promote` succeeded for it.
    pub fn unregister(&self, me: ConnRef, logged_in: bool) {
        self.unauthenticated.borrow_mut().remove(&me.conn_id);
        if self.conns.borrow_mut().remove(&me.conn_id).is_some() && logged_in {
            self.logged_in.set(self.logged_in.get().saturating_sub(1));
        }
    }

    /// An HTTP connection: counted as unauthenticated for its whole life
    /// (its requests authenticate one by one), and evicted like the others
    /// when it is the oldest at the cap. `None` when nothing can be evicted.
    pub fn http_open(&self) -> Option<HttpSlot> {
        if !self.unauthenticated_room() && !self.evict_oldest_unauthenticated() {
            return None;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let evict = Rc::new(Evict::default());
        self.http.borrow_mut().insert(id, evict.clone());
        Some(HttpSlot { table: self.http.clone(), id, evict })
    }
}
