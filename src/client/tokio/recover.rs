//! Automatic recovery on tokio (docs/client.md, "Recovery"): the client's
//! [`Hub`] (the recovery options, the topology record, the events, the
//! connections and producers to bring back) and the supervisor task that
//! redials with backoff, declares again, resubscribes and republishes.
//! What is decided (backoff, record, events) is `client::core`'s; this is
//! the I/O.
//!
//! A connection keeps its identity across a redial: producers and
//! consumers hold the same `Arc<Conn>`, which goes `Down` (requests fail,
//! publishers wait), then `Replaying` (the supervisor's requests only)
//! and `Up` again.

use super::conn::{lock, Conn};
use super::io::Dialer;
use super::producer::Inner as ProducerInner;
use crate::client::core::recovery::{Event, EventQueue, Recovery, Unconfirmed};
use crate::client::core::rounds::{redeclare, AfterRound, Rounds};
use crate::client::core::routes::OwnedMap;
use crate::client::core::topology::Topology;
use crate::client::{ClientError, ClientOptions};
use futures_lite::Stream;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

struct EventsInner {
    queue: EventQueue,
    waker: Option<Waker>,
}

/// What a client's connections, producers and consumers share for
/// recovery. Exists only when `ClientOptions::recovery` is set.
pub(crate) struct Hub {
    pub(crate) recovery: Recovery,
    pub(crate) topology: Mutex<Topology>,
    events: Mutex<EventsInner>,
    /// The client's connections, the first one first.
    conns: Mutex<Vec<Weak<Conn>>>,
    producers: Mutex<Vec<Weak<ProducerInner>>>,
    /// A connection went down: the supervisor looks.
    lost: Notify,
    /// The client is closing (or recovery gave up): nothing is redialled.
    closing: AtomicBool,
    /// Each node's shards' addresses, from the last cluster map the client
    /// had: where the first connection fails over to.
    nodes: Mutex<Vec<Vec<SocketAddr>>>,
}

impl Hub {
    pub(crate) fn new(recovery: Recovery) -> Arc<Hub> {
        Arc::new(Hub {
            topology: Mutex::new(Topology::new(recovery.records_max)),
            events: Mutex::new(EventsInner { queue: EventQueue::new(recovery.events_max), waker: None }),
            recovery,
            conns: Mutex::default(),
            producers: Mutex::default(),
            lost: Notify::new(),
            closing: AtomicBool::new(false),
            nodes: Mutex::default(),
        })
    }

    /// The client has a (new) cluster map.
    pub(crate) fn set_map(&self, map: &OwnedMap) {
        *lock(&self.nodes) = map.nodes.clone();
    }

    /// Adds an event for the application; never waits.
    pub(crate) fn event(&self, e: Event) {
        tracing::info!(event = ?e, "client recovery");
        let w = {
            let mut ev = lock(&self.events);
            ev.queue.push(e);
            ev.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    pub(crate) fn add_conn(&self, c: &Arc<Conn>) {
        let mut conns = lock(&self.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(c));
    }

    pub(crate) fn add_producer(&self, p: &Arc<ProducerInner>) {
        let mut ps = lock(&self.producers);
        ps.retain(|w| w.strong_count() > 0);
        ps.push(Arc::downgrade(p));
    }

    /// A connection is down: wake the supervisor.
    pub(crate) fn conn_lost(&self) {
        self.lost.notify_one();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The client closes: the supervisor stops, the event stream ends.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.lost.notify_one();
        if let Some(w) = lock(&self.events).waker.take() {
            w.wake();
        }
    }

    fn live_conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).iter().filter_map(Weak::upgrade).collect()
    }

    fn live_producers(&self) -> Vec<Arc<ProducerInner>> {
        lock(&self.producers).iter().filter_map(Weak::upgrade).collect()
    }
}

/// The client's recovery events (`Client::events()`): a `Stream` that
/// ends when the client closes or recovery gives up. Events wait in a
/// bounded queue (`Recovery::events_max`): unread, the oldest are dropped
/// and counted ([`Events::dropped`]); the client never waits for them.
pub struct Events {
    hub: Option<Arc<Hub>>,
}

impl Events {
    pub(crate) fn new(hub: Option<Arc<Hub>>) -> Self {
        Self { hub }
    }

    /// Events dropped because they were not read in time.
    pub fn dropped(&self) -> u64 {
        self.hub.as_ref().map_or(0, |h| lock(&h.events).queue.dropped())
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let Some(hub) = &self.hub else { return Poll::Ready(None) };
        let mut ev = lock(&hub.events);
        if let Some(e) = ev.queue.pop() {
            return Poll::Ready(Some(e));
        }
        if hub.is_closing() {
            return Poll::Ready(None);
        }
        ev.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("dropped", &self.dropped()).finish()
    }
}

/// The supervisor: one task per client with recovery, until it closes.
pub(crate) async fn supervise(hub: Arc<Hub>, dialer: Arc<Dialer>, opts: ClientOptions) {
    loop {
        let lost = hub.lost.notified();
        tokio::pin!(lost);
        lost.as_mut().enable();
        if hub.is_closing() {
            return;
        }
        let down: Vec<Arc<Conn>> = hub.live_conns().into_iter().filter(|c| c.is_down()).collect();
        if down.is_empty() {
            lost.await;
            continue;
        }
        if !recover(&hub, &dialer, &opts, &down).await {
            return;
        }
    }
}

/// Brings `down` back, round after round of redials with backoff; a
/// connection back is replayed (declarations over the first connection,
/// then its consumers and producers) as soon as the first connection is
/// up, while others stay down (another node's shards, gone for good, do
/// not hold up the live ones). What each round decides is
/// `core::rounds::Rounds`'. False when recovery gave up (or the client
/// closed).
async fn recover(hub: &Hub, dialer: &Arc<Dialer>, opts: &ClientOptions, down: &[Arc<Conn>]) -> bool {
    let mut rounds = Rounds::new(&hub.recovery);
    let mut down = down.to_vec();
    // Redialled, waiting for the first connection to replay through.
    let mut back: Vec<Arc<Conn>> = Vec::new();
    loop {
        if hub.is_closing() {
            return false;
        }
        let conns = hub.live_conns();
        let Some(first) = conns.first().cloned() else { return false };
        // One closed meanwhile (the application's close) is not brought back.
        down.retain(|c| c.is_down());
        // Connections that went down meanwhile join this round (a broker's
        // sockets do not all end at once).
        for c in conns.into_iter().filter(|c| c.is_down()) {
            if !down.iter().chain(&back).any(|d| Arc::ptr_eq(d, &c)) {
                down.push(c);
            }
        }
        // The round's redials run together: an address that does not
        // answer costs `connect_timeout` once per round, not once per
        // connection to it, and does not hold up the others.
        let mut dials = tokio::task::JoinSet::new();
        for (i, conn) in down.iter().enumerate() {
            let to = rounds.target(Arc::ptr_eq(conn, &first), &lock(&hub.nodes), &conn.node_info());
            let (conn, dialer, opts) = (conn.clone(), dialer.clone(), opts.clone());
            dials.spawn(async move { (i, to, conn.redial(&dialer, &opts, to).await) });
        }
        let mut results: Vec<_> = dials.join_all().await;
        // In the order they went down (the first connection first).
        results.sort_by_key(|(i, ..)| *i);
        let mut last_error = None;
        let mut still = Vec::new();
        for ((_, to, r), conn) in results.into_iter().zip(down.drain(..)) {
            match r {
                Ok(()) => {
                    hub.event(rounds.reconnected(conn.addr()));
                    back.push(conn);
                }
                Err(e) => {
                    tracing::debug!(addr = %conn.addr(), ?to, error = %e, "redial failed");
                    last_error = Some(e);
                    still.push(conn);
                }
            }
        }
        down = still;
        let first_up = !first.is_down();
        if first_up && !back.is_empty() {
            replay(hub, &first, &back).await;
            back.clear();
        }
        match rounds.after(first_up, !down.is_empty() || !back.is_empty(), last_error) {
            AfterRound::Done => return true,
            AfterRound::Wait { wait, or_lost: true } => {
                futures_lite::future::or(tokio::time::sleep(wait), hub.lost.notified()).await;
            }
            AfterRound::Wait { wait, or_lost: false } => tokio::time::sleep(wait).await,
            AfterRound::EndStillDown(error) => {
                for c in &down {
                    c.fail(error.clone());
                }
                let batches: usize = hub
                    .live_producers()
                    .iter()
                    .filter(|p| down.iter().any(|c| Arc::ptr_eq(c, p.conn())))
                    .map(|p| p.fail_unconfirmed(&error))
                    .sum();
                if batches > 0 {
                    hub.event(Event::Failed { batches, error });
                }
                return true;
            }
            AfterRound::GiveUp(error) => {
                give_up(hub, error);
                return false;
            }
        }
    }
}

/// `back` (redialled, `Replaying`) goes up again: the recorded topology
/// declared again over `first` (up, or among `back`), consumers
/// resubscribed, unconfirmed batches republished or failed.
async fn replay(hub: &Hub, first: &Conn, back: &[Arc<Conn>]) {
    // Declarations first, over the first connection (the broker forwards
    // each to its owner and answers once it is made), so every queue is
    // there before a consumer or a republished batch needs it. One whose
    // owner is out of reach fails (`NodeUnavailable`), is counted in the
    // event, and stays recorded for the next recovery.
    let records = lock(&hub.topology).records().to_vec();
    redeclare(&records, |cmd| first.simple(cmd), |e| hub.event(e)).await;
    for conn in back {
        for (id, r) in conn.resubscribe(hub).await {
            match r {
                Ok(()) => hub.event(Event::Resubscribed { consumer_id: id }),
                Err(e) => tracing::warn!(consumer_id = id, error = %e, "recovery: subscribing again failed"),
            }
        }
    }
    let mut batches = 0;
    let lost = Unconfirmed::lost();
    for p in hub.live_producers().iter().filter(|p| back.iter().any(|c| Arc::ptr_eq(c, p.conn()))) {
        batches += match hub.recovery.unconfirmed {
            Unconfirmed::Republish => p.republish(),
            Unconfirmed::Fail => p.fail_unconfirmed(&lost),
        };
    }
    if let Some(e) = hub.recovery.unconfirmed.event(batches, lost) {
        hub.event(e);
    }
    for conn in back {
        conn.set_up();
    }
}

/// `attempts_max` redials failed: everything ends with `error`.
fn give_up(hub: &Hub, error: ClientError) {
    hub.closing.store(true, Ordering::Release);
    for c in hub.live_conns() {
        c.fail(error.clone());
    }
    let batches: usize = hub.live_producers().iter().map(|p| p.fail_unconfirmed(&error)).sum();
    if batches > 0 {
        hub.event(Event::Failed { batches, error: error.clone() });
    }
    hub.event(Event::GaveUp { error });
}
