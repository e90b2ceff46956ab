//! One tokio client connection to one shard: a writer task draining a
//! shared buffer (every request of a turn in one write), a reader task
//! classifying frames (`core::incoming`) and completing requests
//! (`core::requests`) or handing deliveries to consumers, and a beat task
//! when heartbeats are on (`tasks`). Every lock here is held for a few
//! field updates, never across an await or a waiter's call. With recovery
//! (`recovery`) the connection outlives its socket: a redial gives it a
//! new one and new tasks.

use super::consumer::ConsumerShared;
use super::io::{Dialer, Reader, Writer};
use super::recover::Hub;
use crate::client::core::handshake::Greeter;
use crate::client::core::incoming::{classify, Incoming, Response};
use crate::client::core::pull::PullTags;
use crate::client::core::requests::Requests;
use crate::client::core::routes::OwnedMap;
use crate::client::dial::io_error;
use crate::client::{ClientError, ClientOptions, Delivery, Result, ServerInfo};
use crate::protocol::{Cmd, Frame};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

mod recovery;
mod tasks;

pub(crate) type Waiter = Box<dyn FnOnce(Result<Response>) + Send>;

/// Bytes queued for the socket before senders wait for the writer.
const OUTBOX_HIGH_BYTES: usize = 4 << 20;

/// A poisoned lock (a panic while it was held) still holds consistent
/// data here: every critical section is a few assignments.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a connection is, with recovery on (without it: `Up`, then `Closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Up,
    /// The socket ended; recovery redials. Requests fail, publishers wait.
    Down,
    /// Redialled: the supervisor declares again, resubscribes and
    /// republishes before the application's traffic goes on.
    Replaying,
    /// For good.
    Closed,
}

struct State {
    phase: Phase,
    requests: Requests<Waiter>,
    consumers: HashMap<u32, Arc<ConsumerShared>>,
    /// Consumers with acks for the writer to send.
    ack_dirty: Vec<u32>,
    blocked: Option<String>,
    map_changed: bool,
    /// `get`'s tags across sockets: a stale one's ack is refused.
    pulls: PullTags,
}

/// What waits for the socket.
#[derive(Default)]
struct Out {
    buf: BytesMut,
    /// Pushes so far, and the pushes written (the writer's last take).
    pushes: u64,
    written: u64,
    closing: bool,
    finished: bool,
}

/// A connection: `Send + Sync`, shared by the client, its producers and
/// consumers.
pub struct Conn {
    /// The first handshake's answer: the limits (a failover takes only a
    /// node with the same ones) and the node and shard first reached.
    info: ServerInfo,
    /// Where it is dialled (and redialled): moves on a failover.
    addr: Mutex<SocketAddr>,
    /// The current socket's handshake: another node's after a failover.
    node: Mutex<ServerInfo>,
    /// With recovery on: the client's recovery hub.
    hub: Option<Arc<Hub>>,
    /// Counts the sockets this connection has had: a task of an earlier
    /// one stops at its next turn.
    gen: AtomicU64,
    /// Not `Up` (recovery under way): publishers wait, the linger task
    /// holds its batch.
    down: AtomicBool,
    /// The phase went back to `Up` (or `Closed`).
    up: Notify,
    state: Mutex<State>,
    out: Mutex<Out>,
    /// Wakes the writer (something to write, acks, closing).
    kick: Notify,
    /// The writer wrote (or finished): for those waiting on room or a flush.
    wrote: Notify,
    unblocked: Notify,
    /// Bytes waiting for the writer, as of the last push or write: read
    /// without the lock on every publish.
    queued: AtomicUsize,
    /// A request with no waiter failed: `take_error` has something.
    stray_error: AtomicBool,
}

impl Conn {
    /// A connection to `addr`, and the cluster map from its handshake
    /// when `want_map`. Spawns its tasks on the current tokio runtime.
    pub(crate) async fn open(
        dialer: &Dialer,
        addr: SocketAddr,
        opts: &ClientOptions,
        want_map: bool,
        hub: Option<Arc<Hub>>,
    ) -> Result<(Arc<Conn>, Option<OwnedMap>)> {
        let (info, map, r, w, buf) = Self::dial(dialer, addr, opts, want_map).await?;
        let conn = Arc::new(Conn {
            node: Mutex::new(info.clone()),
            info,
            addr: Mutex::new(addr),
            hub,
            gen: AtomicU64::new(0),
            down: AtomicBool::new(false),
            up: Notify::new(),
            state: Mutex::new(State {
                phase: Phase::Up,
                requests: Requests::default(),
                consumers: HashMap::new(),
                ack_dirty: Vec::new(),
                blocked: None,
                map_changed: false,
                pulls: PullTags::default(),
            }),
            out: Mutex::default(),
            kick: Notify::new(),
            wrote: Notify::new(),
            unblocked: Notify::new(),
            queued: AtomicUsize::new(0),
            stray_error: AtomicBool::new(false),
        });
        if let Some(hub) = &conn.hub {
            hub.add_conn(&conn);
        }
        conn.clone().start(r, w, buf, 0);
        Ok((conn, map))
    }

    /// Spawns the tasks of socket number `gen`.
    fn start(self: Arc<Self>, r: Reader, w: Writer, buf: BytesMut, gen: u64) {
        tokio::spawn(self.clone().write_loop(w, gen));
        if self.info.heartbeat_ms > 0 {
            tokio::spawn(self.clone().beat_loop(gen));
        }
        tokio::spawn(self.read_loop(r, buf, gen));
    }

    /// Connects and shakes hands.
    async fn dial(
        dialer: &Dialer,
        addr: SocketAddr,
        opts: &ClientOptions,
        want_map: bool,
    ) -> Result<(ServerInfo, Option<OwnedMap>, Reader, Writer, BytesMut)> {
        let (mut r, mut w) = dialer.connect(addr, opts.connect_timeout).await?.split();
        let greet = async {
            let mut greeter = Greeter::new(opts, addr, want_map);
            let mut out = BytesMut::new();
            greeter.hello(&mut out);
            w.write_all(&out).await.map_err(io_error)?;
            let mut buf = BytesMut::new();
            loop {
                let used = greeter.feed(&buf)?;
                let _ = buf.split_to(used);
                if greeter.is_done() {
                    break;
                }
                // Bounded: the greeter refuses a frame over its limit once
                // its length is in; a read adds at most one buffer's worth.
                if r.read_into(&mut buf).await.map_err(io_error)? == 0 {
                    return Err(ClientError::Closed("the broker closed the connection".into()));
                }
            }
            let (info, map) = greeter.finish()?;
            Ok((info, map, buf))
        };
        let (info, map, buf) = match tokio::time::timeout(opts.connect_timeout, greet).await {
            Ok(r) => r?,
            Err(_) => return Err(ClientError::Io("no reply to the handshake within the connect timeout".into())),
        };
        Ok((info, map, r, w, buf))
    }

    /// What this connection's first handshake said (see [`Conn::node_info`]
    /// for the node it reaches now, after a failover).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// What the current socket's handshake said: the node and shard this
    /// connection reaches now (another node's after a failover).
    pub fn node_info(&self) -> ServerInfo {
        lock(&self.node).clone()
    }

    /// Whether the broker said the cluster map moved since the last call.
    pub fn take_map_changed(&self) -> bool {
        std::mem::take(&mut lock(&self.state).map_changed)
    }

    /// Whether the connection ended for good (or this client is closing
    /// it). One that recovery is bringing back is not closed.
    pub fn is_closed(&self) -> bool {
        let s = lock(&self.state);
        s.phase == Phase::Closed || (s.phase == Phase::Up && s.requests.closed().is_some()) || lock(&self.out).closing
    }

    /// The client's recovery hub, when recovery is on.
    pub(crate) fn hub(&self) -> Option<&Arc<Hub>> {
        self.hub.as_ref()
    }

    /// The address it was dialled at (the new one after a failover).
    pub fn addr(&self) -> SocketAddr {
        *lock(&self.addr)
    }

    fn check_open(&self) -> Result<()> {
        if let Some(e) = lock(&self.state).requests.closed().cloned() {
            return Err(e);
        }
        if lock(&self.out).closing {
            return Err(ClientError::Closed("connection closed by this client".into()));
        }
        Ok(())
    }

    /// Why the broker is not reading this connection right now (a memory
    /// or disk alarm): publishes wait in the socket until it reads again.
    pub fn blocked(&self) -> Option<String> {
        lock(&self.state).blocked.clone()
    }

    /// Waits until the broker reads this connection again (or it closed).
    pub async fn wait_unblocked(&self) {
        loop {
            let n = self.unblocked.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.blocked().is_none() || self.is_closed() {
                return;
            }
            n.await;
        }
    }

    /// Takes the error of a request that had no waiter, if any.
    pub fn take_error(&self) -> Option<ClientError> {
        if !self.stray_error.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.state).requests.take_error()
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        lock(&self.state).requests.next_id()
    }

    /// Waits while the socket has more than `OUTBOX_HIGH_BYTES` queued.
    pub async fn wait_writable(&self) {
        if self.queued.load(Ordering::Relaxed) <= OUTBOX_HIGH_BYTES {
            return;
        }
        loop {
            let n = self.wrote.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            {
                let o = lock(&self.out);
                if o.closing || (o.buf.len() <= OUTBOX_HIGH_BYTES && !self.down.load(Ordering::Acquire)) {
                    return;
                }
            }
            if self.down.load(Ordering::Acquire) {
                self.wait_up().await;
            } else {
                n.await;
            }
        }
    }

    /// Queues bytes for the writer; `waiter`, when given, receives the
    /// reply to `request_id`. Returns the push's number (for `flushed`).
    pub(crate) fn send_raw(
        &self,
        request_id: u64,
        waiter: Option<Waiter>,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<u64> {
        let refused = {
            let mut s = lock(&self.state);
            match s.requests.closed() {
                Some(e) => Some(e.clone()),
                None => {
                    if let Some(w) = waiter {
                        s.requests.wait_for(request_id, w);
                    }
                    None
                }
            }
        };
        if let Some(e) = refused {
            // `waiter` was moved only when the connection was open.
            return Err(e);
        }
        let n = {
            let mut o = lock(&self.out);
            if o.closing {
                None
            } else {
                encode(&mut o.buf);
                o.pushes += 1;
                self.queued.store(o.buf.len(), Ordering::Relaxed);
                Some(o.pushes)
            }
        };
        match n {
            Some(n) => {
                self.kick.notify_one();
                Ok(n)
            }
            None => {
                let e = ClientError::Closed("connection closed by this client".into());
                let w = lock(&self.state).requests.settle(request_id, Err(e.clone()));
                if let Some((w, r)) = w {
                    w(r);
                }
                Err(e)
            }
        }
    }

    /// Sends one request and waits for its reply. While recovery redials,
    /// waits for the connection to be back first.
    pub async fn request(&self, cmd: Cmd<'_>) -> Result<Response> {
        self.request_then(cmd, |r| r).await
    }

    /// `request`, the reply passed through `then` by the socket's reader
    /// as it arrives (before that socket can have ended).
    async fn request_then(
        &self,
        cmd: Cmd<'_>,
        then: impl FnOnce(Result<Response>) -> Result<Response> + Send + 'static,
    ) -> Result<Response> {
        if self.hub.is_some() && lock(&self.state).phase == Phase::Down {
            self.wait_up().await;
        }
        let rid = self.next_request_id();
        let (tx, rx) = oneshot::channel();
        let waiter: Waiter = Box::new(move |r| {
            let _ = tx.send(then(r));
        });
        match self.send_raw(rid, Some(waiter), |b| Frame { request_id: rid, cmd }.encode(b)) {
            Ok(_) => rx.await.unwrap_or_else(|_| Err(ClientError::Closed("the connection ended".into()))),
            Err(e) => Err(e),
        }
    }

    /// A request answered with `Ok`: its value.
    pub async fn simple(&self, cmd: Cmd<'_>) -> Result<u64> {
        match self.request(cmd).await? {
            Response::Ok(v) => Ok(v),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Pulls one message of `queue` for pull consumer `consumer_id`. Its
    /// tag goes on counting across the sockets this connection has had
    /// (`core::pull`).
    pub async fn get(self: &Arc<Self>, queue: &str, consumer_id: u32, no_ack: bool) -> Result<Option<Delivery>> {
        let me = Arc::downgrade(self);
        let then = move |r| match me.upgrade() {
            Some(c) => lock(&c.state).pulls.reply(consumer_id, r),
            None => r,
        };
        match self.request_then(Cmd::Get { no_ack, consumer_id, queue }, then).await? {
            Response::Get(d) => Ok(d),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Acks (or nacks) one tag of a `get` right away and waits until it
    /// is written. A tag from a socket that has since ended is refused
    /// ([`ClientError::StaleDelivery`]) and nothing is sent.
    pub async fn ack_now(&self, consumer_id: u32, tag: u64, nack: Option<bool>) -> Result<()> {
        let tag = lock(&self.state).pulls.for_ack(consumer_id, tag)?;
        let rid = self.next_request_id();
        let n = self.send_raw(rid, None, |b| crate::protocol::encode_ack(b, rid, nack, consumer_id, &[(tag, tag)]))?;
        self.flushed(n).await;
        self.check_open()
    }

    /// Waits until push `n` is written (or the connection closed).
    async fn flushed(&self, n: u64) {
        loop {
            let w = self.wrote.notified();
            tokio::pin!(w);
            w.as_mut().enable();
            {
                let o = lock(&self.out);
                if o.written >= n || o.finished {
                    return;
                }
            }
            w.await;
        }
    }

    pub(crate) fn add_consumer(&self, id: u32, c: Arc<ConsumerShared>) {
        lock(&self.state).consumers.insert(id, c);
    }

    pub(crate) fn remove_consumer(&self, id: u32) {
        lock(&self.state).consumers.remove(&id);
    }

    /// A consumer has acks: the writer sends them on its next turn, with
    /// whatever else was acked meanwhile.
    pub(crate) fn acks_pending(&self, id: u32) {
        lock(&self.state).ack_dirty.push(id);
        self.kick.notify_one();
    }

    /// Queues every dirty consumer's acks.
    fn queue_acks(&self) {
        let dirty: Vec<Arc<ConsumerShared>> = {
            let mut s = lock(&self.state);
            if s.ack_dirty.is_empty() {
                return;
            }
            let ids = std::mem::take(&mut s.ack_dirty);
            ids.iter().filter_map(|id| s.consumers.get(id).cloned()).collect()
        };
        for c in dirty {
            self.send_acks(&c);
        }
    }

    /// Queues one consumer's collected acks and nacks now.
    pub(crate) fn send_acks(&self, c: &ConsumerShared) -> Option<u64> {
        let book = c.take_acks()?;
        let rid = self.next_request_id();
        self.send_raw(rid, None, |b| book.encode(b, rid, c.id())).ok()
    }

    /// Closes without waiting: what is queued is written, then the socket
    /// shuts (the writer does both).
    pub fn shut(&self) {
        lock(&self.out).closing = true;
        self.kick.notify_one();
    }

    /// Flushes what is queued (acks first), then closes the socket.
    pub async fn close(&self) {
        // Down (recovery redialling, or waiting for a dead node): no socket,
        // no writer to flush through; it ends here.
        if self.is_down() {
            self.fail(ClientError::Closed("connection closed by this client".into()));
            lock(&self.out).finished = true;
            self.wrote.notify_waiters();
            return;
        }
        self.queue_acks();
        self.shut();
        loop {
            let w = self.wrote.notified();
            tokio::pin!(w);
            w.as_mut().enable();
            if lock(&self.out).finished {
                return;
            }
            w.await;
        }
    }

    fn on_frame(&self, chunk: &Bytes, f: Frame<'_>) -> Result<()> {
        match classify(chunk, f, &self.info)? {
            Incoming::Deliver { consumer_id, first_tag, origin, entries } => {
                let c = lock(&self.state).consumers.get(&consumer_id).cloned();
                match c {
                    Some(c) => c.push_frame(chunk, first_tag, origin, entries),
                    None => tracing::debug!(consumer_id, "delivery for a consumer this client dropped"),
                }
            }
            Incoming::Reply(rid, r) => {
                let failed = r.is_err();
                let settled = lock(&self.state).requests.settle(rid, r);
                match settled {
                    Some((w, r)) => w(r),
                    // `settle` kept the error for `take_error`.
                    None if failed => self.stray_error.store(true, Ordering::Release),
                    None => {}
                }
            }
            Incoming::Cancelled { consumer_id, error } => {
                if let Some(hub) = &self.hub {
                    lock(&hub.topology).consumer_removed(consumer_id);
                }
                let c = lock(&self.state).consumers.remove(&consumer_id);
                if let Some(c) = c {
                    c.close(error);
                }
            }
            Incoming::Ping(rid) => {
                let _ = self.send_raw(rid, None, |b| Frame { request_id: rid, cmd: Cmd::Pong }.encode(b));
            }
            Incoming::Nothing => {}
            Incoming::Blocked(reason) => lock(&self.state).blocked = Some(reason),
            Incoming::Unblocked => {
                lock(&self.state).blocked = None;
                self.unblocked.notify_waiters();
            }
            Incoming::MapChanged(_) => lock(&self.state).map_changed = true,
        }
        Ok(())
    }

    /// Ends the connection: every waiter and consumer hears why.
    pub(crate) fn fail(&self, err: ClientError) {
        let (waiters, consumers) = {
            let mut s = lock(&self.state);
            s.phase = Phase::Closed;
            let w = s.requests.fail(&err);
            let c: Vec<Arc<ConsumerShared>> = s.consumers.values().cloned().collect();
            (w, c)
        };
        for w in waiters {
            w(Err(err.clone()));
        }
        for c in consumers {
            c.close(err.clone());
        }
        self.shut();
        self.down.store(false, Ordering::Release);
        self.wrote.notify_waiters();
        self.unblocked.notify_waiters();
        self.up.notify_waiters();
    }
}
