//! Automatic recovery on tokio (docs/client-recovery.md, "Recovery"): the client's
//! [`Hub`] (the recovery options, the topology record, the events, the
//! connections and producers to bring back) and the supervisor task. Its
//! loop (rounds of redials, failover, replay, giving up) is the core's
//! (`client::core::supervise`, shared with the glommio client); this is
//! the I/O it runs on (`Sup`: tokio sockets, tasks and timers).
//!
//! A connection keeps its identity across a redial: producers and
//! consumers hold the same `Arc<Conn>`, which goes `Down` (requests fail,
//! publishers wait), then `Replaying` (the supervisor's requests only)
//! and `Up` again.

use super::conn::{lock, Conn};
use super::io::Dialer;
use super::producer::Inner as ProducerInner;
use crate::client::core::recovery::{Event, EventQueue, Recovery};
use crate::client::core::routes::OwnedMap;
use crate::client::core::supervise::{run, shell_conn_methods, Shell};
use crate::client::core::topology::Record;
use crate::client::core::topology::Topology;
use crate::client::{ClientError, ClientOptions, Result, ServerInfo};
use crate::protocol::Cmd;
use futures_lite::Stream;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
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

/// The supervisor: one task per client with recovery, until it closes;
/// the core's loop (`core::supervise::run`).
pub(crate) async fn supervise(hub: Arc<Hub>, dialer: Arc<Dialer>, opts: ClientOptions) {
    // Armed before the loop looks at the connections (`enable`): a loss
    // notified in between is not missed.
    let lost = || {
        let mut n = Box::pin(hub.lost.notified());
        n.as_mut().enable();
        n
    };
    run(&Sup { hub: &hub, dialer: &dialer, opts: &opts }, lost).await;
}

/// What the shared supervisor loop (`core::supervise`) runs on: this
/// client's hub, dialer and options.
struct Sup<'a> {
    hub: &'a Hub,
    dialer: &'a Arc<Dialer>,
    opts: &'a ClientOptions,
}

impl Shell for Sup<'_> {
    type Conn = Arc<Conn>;

    shell_conn_methods!(Arc);

    fn recovery(&self) -> &Recovery {
        &self.hub.recovery
    }

    fn closing(&self) -> bool {
        self.hub.is_closing()
    }

    fn set_closing(&self) {
        self.hub.closing.store(true, Ordering::Release);
    }

    fn conns(&self) -> Vec<Arc<Conn>> {
        self.hub.live_conns()
    }

    fn nodes(&self) -> Vec<Vec<SocketAddr>> {
        lock(&self.hub.nodes).clone()
    }

    fn records(&self) -> Vec<Record> {
        lock(&self.hub.topology).records().to_vec()
    }

    fn event(&self, e: Event) {
        self.hub.event(e);
    }

    async fn redial_all(&self, dials: Vec<(Arc<Conn>, Option<SocketAddr>)>) -> Vec<Result<()>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, (conn, to)) in dials.into_iter().enumerate() {
            let (dialer, opts) = (self.dialer.clone(), self.opts.clone());
            set.spawn(async move { (i, conn.redial(&dialer, &opts, to).await) });
        }
        let mut results: Vec<_> = set.join_all().await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    async fn sleep(&self, wait: Duration, or_lost: bool) {
        if or_lost {
            futures_lite::future::or(tokio::time::sleep(wait), self.hub.lost.notified()).await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}
