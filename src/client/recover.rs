//! Automatic recovery on glommio (docs/client-recovery.md, "Recovery"), as the
//! tokio client's (`client::tokio::recover`) on one thread: the client's
//! [`Hub`] and the supervisor task that redials with backoff (failing the
//! first connection over to another node of the cluster map when its own
//! stays down), declares again, resubscribes and republishes. The loop is
//! the core's (`client::core::supervise`, shared with the tokio client);
//! this is the I/O it runs on (`Sup`: glommio sockets, tasks, timers).

use super::conn::Conn;
use super::core::recovery::{Event, EventQueue, Recovery};
use super::core::routes::OwnedMap;
use super::core::supervise::{run, shell_conn_methods, Shell};
use super::core::topology::Record;
use super::core::topology::Topology;
use super::dial::Dialer;
use super::producer::Inner as ProducerInner;
use super::{ClientError, ClientOptions, Result, ServerInfo};
use crate::protocol::Cmd;
use crate::rt::Notify;
use futures_lite::Stream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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

/// The supervisor: one task per client with recovery, until it closes;
/// the core's loop (`core::supervise::run`).
pub(crate) async fn supervise(hub: Rc<Hub>, dialer: Rc<Dialer>, opts: ClientOptions) {
    run(&Sup { hub: &hub, dialer: &dialer, opts: &opts }, || hub.lost.notified()).await;
}

/// What the shared supervisor loop (`core::supervise`) runs on: this
/// client's hub, dialer and options.
struct Sup<'a> {
    hub: &'a Hub,
    dialer: &'a Rc<Dialer>,
    opts: &'a ClientOptions,
}

impl Shell for Sup<'_> {
    type Conn = Rc<Conn>;

    shell_conn_methods!(Rc);

    fn recovery(&self) -> &Recovery {
        &self.hub.recovery
    }

    fn closing(&self) -> bool {
        self.hub.is_closing()
    }

    fn set_closing(&self) {
        self.hub.closing.set(true);
    }

    fn conns(&self) -> Vec<Rc<Conn>> {
        self.hub.live_conns()
    }

    fn nodes(&self) -> Vec<Vec<SocketAddr>> {
        self.hub.nodes.borrow().clone()
    }

    fn records(&self) -> Vec<Record> {
        self.hub.topology.borrow().records().to_vec()
    }

    fn event(&self, e: Event) {
        self.hub.event(e);
    }

    async fn redial_all(&self, dials: Vec<(Rc<Conn>, Option<SocketAddr>)>) -> Vec<Result<()>> {
        let tasks: Vec<_> = dials
            .into_iter()
            .map(|(conn, to)| {
                let (dialer, opts) = (self.dialer.clone(), self.opts.clone());
                glommio::spawn_local(async move { conn.redial(&dialer, &opts, to).await })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await);
        }
        results
    }

    async fn sleep(&self, wait: Duration, or_lost: bool) {
        if or_lost {
            futures_lite::future::or(glommio::timer::sleep(wait), self.hub.lost.notified()).await;
        } else {
            glommio::timer::sleep(wait).await;
        }
    }
}
