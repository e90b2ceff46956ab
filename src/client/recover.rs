//! Automatic recovery on glommio (docs/client.md, "Recovery"), as the
//! tokio client's (`client::tokio::recover`) on one thread: the client's
//! [`Hub`] and the supervisor task that redials with backoff, declares
//! again, resubscribes and republishes. What is decided is
//! `client::core`'s (backoff, record, events); this is the I/O.

use super::conn::Conn;
use super::core::recovery::{Backoff, Event, EventQueue, Recovery, Unconfirmed};
use super::core::topology::Topology;
use super::dial::Dialer;
use super::producer::Inner as ProducerInner;
use super::{ClientError, ClientOptions};
use crate::rt::Notify;
use futures_lite::Stream;
use std::cell::{Cell, RefCell};
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
        })
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

/// Brings `down` back; false when recovery gave up (or the client closed).
async fn recover(hub: &Hub, dialer: &Dialer, opts: &ClientOptions, mut down: Vec<Rc<Conn>>) -> bool {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    let mut backoff = Backoff::new(&hub.recovery, seed);
    let mut next = 0;
    while next < down.len() {
        let conn = down[next].clone();
        next += 1;
        loop {
            if hub.is_closing() {
                return false;
            }
            match conn.redial(dialer, opts).await {
                Ok(()) => {
                    hub.event(Event::Reconnected { addr: conn.addr(), attempt: backoff.attempts() + 1 });
                    break;
                }
                Err(e) => match backoff.failed() {
                    Some(wait) => {
                        tracing::debug!(addr = %conn.addr(), error = %e, ?wait, "redial failed");
                        glommio::timer::sleep(wait).await;
                    }
                    None => {
                        give_up(hub, e);
                        return false;
                    }
                },
            }
        }
        // Connections that went down meanwhile join this round.
        if next == down.len() {
            for c in hub.live_conns() {
                if c.is_down() && !down.iter().any(|d| Rc::ptr_eq(d, &c)) {
                    down.push(c);
                }
            }
        }
    }
    // Declarations first, over the first connection (the broker forwards
    // each to its owner and answers once it is made).
    let Some(first) = hub.live_conns().into_iter().next() else { return false };
    let records = hub.topology.borrow().records().to_vec();
    let mut failed = 0;
    for r in &records {
        if let Err(e) = first.simple(r.cmd()).await {
            tracing::warn!(record = ?r, error = %e, "recovery: declaring again failed");
            hub.event(Event::RedeclareFailed { what: r.describe(), error: e });
            failed += 1;
        }
    }
    hub.event(Event::TopologyRecovered { records: records.len(), failed });
    for conn in &down {
        for (id, r) in conn.resubscribe(hub).await {
            match r {
                Ok(()) => hub.event(Event::Resubscribed { consumer_id: id }),
                Err(e) => tracing::warn!(consumer_id = id, error = %e, "recovery: subscribing again failed"),
            }
        }
    }
    let mut batches = 0;
    let lost = Unconfirmed::lost();
    for p in hub.live_producers().iter().filter(|p| down.iter().any(|c| Rc::ptr_eq(c, p.conn()))) {
        batches += match hub.recovery.unconfirmed {
            Unconfirmed::Republish => p.republish(),
            Unconfirmed::Fail => p.fail_unconfirmed(&lost),
        };
    }
    if let Some(e) = hub.recovery.unconfirmed.event(batches, lost) {
        hub.event(e);
    }
    for conn in &down {
        conn.set_up();
    }
    true
}

/// `attempts_max` redials failed: everything ends with `error`.
fn give_up(hub: &Hub, error: ClientError) {
    let error = ClientError::Closed(format!("recovery gave up: {error}"));
    hub.closing.set(true);
    for c in hub.live_conns() {
        c.fail(error.clone());
    }
    let batches: usize = hub.live_producers().iter().map(|p| p.fail_unconfirmed(&error)).sum();
    if batches > 0 {
        hub.event(Event::Failed { batches, error: error.clone() });
    }
    hub.event(Event::GaveUp { error });
}
