//! Automatic recovery on glommio (docs/client.md, "Recovery"), as the
//! tokio client's (`client::tokio::recover`) on one thread: the client's
//! [`Hub`] and the supervisor task that redials with backoff (failing the
//! first connection over to another node of the cluster map when its own
//! stays down), declares again, resubscribes and republishes. What is
//! decided is `client::core`'s (`rounds`: where to, when to give up;
//! backoff, record, events); this is the I/O.

use super::conn::Conn;
use super::core::recovery::{Event, EventQueue, Recovery, Unconfirmed};
use super::core::rounds::{redeclare, AfterRound, Rounds};
use super::core::routes::OwnedMap;
use super::core::topology::Topology;
use super::dial::Dialer;
use super::producer::Inner as ProducerInner;
use super::{ClientError, ClientOptions};
use crate::rt::Notify;
use futures_lite::Stream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

/// What a client's connections, producers and consumers share for
/// recovery. Exists only when `ClientOptions::recovery` is set.
pub(crate) struct Hub {
    pub(crate) recovery: Recovery,
    pub(crate) topology: RefCell<Topology>,
    events: RefCell<EventQueue>,
    waker: RefCell<Option<Waker>>,
    /// The client's connections, the first one first.
    conns: RefCell<Vec<Weak<Conn>>>,
    producers: RefCell<Vec<Weak<ProducerInner>>>,
    lost: Notify,
    closing: Cell<bool>,
    /// Each node's shards' addresses, from the last cluster map the client
    /// had: where the first connection fails over to.
    nodes: RefCell<Vec<Vec<SocketAddr>>>,
}

impl Hub {
    pub(crate) fn new(recovery: Recovery) -> Rc<Hub> {
        Rc::new(Hub {
            topology: RefCell::new(Topology::new(recovery.records_max)),
            events: RefCell::new(EventQueue::new(recovery.events_max)),
            waker: RefCell::default(),
            recovery,
            conns: RefCell::default(),
            producers: RefCell::default(),
            lost: Notify::default(),
            closing: Cell::new(false),
            nodes: RefCell::default(),
        })
    }

    /// The client has a (new) cluster map.
    pub(crate) fn set_map(&self, map: &OwnedMap) {
        *self.nodes.borrow_mut() = map.nodes.clone();
    }

    /// Adds an event for the application; never waits.
    pub(crate) fn event(&self, e: Event) {
        tracing::info!(event = ?e, "client recovery");
        self.events.borrow_mut().push(e);
        self.wake();
    }

    fn wake(&self) {
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    pub(crate) fn add_conn(&self, c: &Rc<Conn>) {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Rc::downgrade(c));
    }

    pub(crate) fn add_producer(&self, p: &Rc<ProducerInner>) {
        let mut ps = self.producers.borrow_mut();
        ps.retain(|w| w.strong_count() > 0);
        ps.push(Rc::downgrade(p));
    }

    pub(crate) fn conn_lost(&self) {
        self.lost.notify();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// The client closes: the supervisor stops, the event stream ends.
    pub(crate) fn close(&self) {
        self.closing.set(true);
        self.lost.notify();
        self.wake();
    }

    fn live_conns(&self) -> Vec<Rc<Conn>> {
        self.conns.borrow().iter().filter_map(Weak::upgrade).collect()
    }

    fn live_producers(&self) -> Vec<Rc<ProducerInner>> {
        self.producers.borrow().iter().filter_map(Weak::upgrade).collect()
    }
}

/// The client's recovery events (`Client::events()`): a `Stream` that
/// ends when the client closes or recovery gives up. Bounded
/// (`Recovery::events_max`): unread, the oldest are dropped and counted.
pub struct Events {
    hub: Option<Rc<Hub>>,
}

impl Events {
    pub(crate) fn new(hub: Option<Rc<Hub>>) -> Self {
        Self { hub }
    }

    /// Events dropped because they were not read in time.
    pub fn dropped(&self) -> u64 {
        self.hub.as_ref().map_or(0, |h| h.events.borrow().dropped())
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let Some(hub) = &self.hub else { return Poll::Ready(None) };
        if let Some(e) = hub.events.borrow_mut().pop() {
            return Poll::Ready(Some(e));
        }
        if hub.is_closing() {
            return Poll::Ready(None);
        }
        *hub.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("dropped", &self.dropped()).finish()
    }
}

/// The supervisor: one task per client with recovery, until it closes.
pub(crate) async fn supervise(hub: Rc<Hub>, dialer: Rc<Dialer>, opts: ClientOptions) {
    loop {
        let lost = hub.lost.notified();
        if hub.is_closing() {
            return;
        }
        let down: Vec<Rc<Conn>> = hub.live_conns().into_iter().filter(|c| c.is_down()).collect();
        if down.is_empty() {
            lost.await;
            continue;
        }
        if !recover(&hub, &dialer, &opts, down).await {
            return;
        }
    }
}

/// Brings `down` back, round after round of redials with backoff, as the
/// tokio client does (`core::rounds::Rounds` decides each round): the
/// first connection fails over to another node of the cluster map when
/// its own stays down; a connection back is replayed as soon as the first
/// one is up, while others (a dead node's shards) stay down without
/// holding up the live ones. False when recovery gave up (or the client
/// closed).
async fn recover(hub: &Hub, dialer: &Rc<Dialer>, opts: &ClientOptions, mut down: Vec<Rc<Conn>>) -> bool {
    let mut rounds = Rounds::new(&hub.recovery);
    // Redialled, waiting for the first connection to replay through.
    let mut back: Vec<Rc<Conn>> = Vec::new();
    loop {
        if hub.is_closing() {
            return false;
        }
        let conns = hub.live_conns();
        let Some(first) = conns.first().cloned() else { return false };
        // One closed meanwhile (the application's close) is not brought
        // back; one that went down meanwhile joins this round.
        down.retain(|c| c.is_down());
        for c in conns.into_iter().filter(|c| c.is_down()) {
            if !down.iter().chain(&back).any(|d| Rc::ptr_eq(d, &c)) {
                down.push(c);
            }
        }
        // The round's redials run together: an address that does not
        // answer costs `connect_timeout` once per round.
        let dials: Vec<_> = down
            .iter()
            .map(|conn| {
                let to = rounds.target(Rc::ptr_eq(conn, &first), &hub.nodes.borrow(), &conn.node_info());
                let (conn, dialer, opts) = (conn.clone(), dialer.clone(), opts.clone());
                glommio::spawn_local(async move { (to, conn.redial(&dialer, &opts, to).await) })
            })
            .collect();
        let mut last_error = None;
        let mut still = Vec::new();
        // In the order they went down (the first connection first).
        for (dial, conn) in dials.into_iter().zip(std::mem::take(&mut down)) {
            match dial.await {
                (_, Ok(())) => {
                    hub.event(rounds.reconnected(conn.addr()));
                    back.push(conn);
                }
                (to, Err(e)) => {
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
                futures_lite::future::or(glommio::timer::sleep(wait), hub.lost.notified()).await;
            }
            AfterRound::Wait { wait, or_lost: false } => glommio::timer::sleep(wait).await,
            AfterRound::EndStillDown(error) => {
                for c in &down {
                    c.fail(error.clone());
                }
                let batches = fail_unconfirmed(hub, &error, |p| down.iter().any(|c| Rc::ptr_eq(c, p.conn())));
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
/// declared again over `first`, consumers resubscribed, unconfirmed
/// batches republished or failed.
async fn replay(hub: &Hub, first: &Conn, back: &[Rc<Conn>]) {
    // Declarations first, over the first connection (the broker forwards
    // each to its owner and answers once it is made).
    let records = hub.topology.borrow().records().to_vec();
    redeclare(&records, |cmd| first.simple(cmd), |e| hub.event(e)).await;
    for conn in back {
        for (id, r) in conn.resubscribe(hub).await {
            match r {
                Ok(()) => hub.event(Event::Resubscribed { consumer_id: id }),
                Err(e) => tracing::warn!(consumer_id = id, error = %e, "recovery: subscribing again failed"),
            }
        }
    }
    let lost = Unconfirmed::lost();
    let mut batches = 0;
    for p in hub.live_producers().iter().filter(|p| back.iter().any(|c| Rc::ptr_eq(c, p.conn()))) {
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

/// Fails the unconfirmed batches of the producers `which` picks; how many.
fn fail_unconfirmed(hub: &Hub, error: &ClientError, which: impl Fn(&ProducerInner) -> bool) -> usize {
    hub.live_producers().iter().filter(|p| which(p)).map(|p| p.fail_unconfirmed(error)).sum()
}

/// `attempts_max` rounds failed with the first connection down:
/// everything ends with `error`.
fn give_up(hub: &Hub, error: ClientError) {
    hub.closing.set(true);
    for c in hub.live_conns() {
        c.fail(error.clone());
    }
    let batches = fail_unconfirmed(hub, &error, |_| true);
    if batches > 0 {
        hub.event(Event::Failed { batches, error: error.clone() });
    }
    hub.event(Event::GaveUp { error });
}
