//! One glommio client connection to one shard: a writer task draining an
//! outbox, a reader task matching replies to requests by request id
//! (`core::requests`) and handing deliveries to their consumers, as
//! `core::incoming::classify` reads each frame.

use super::consumer::ConsumerState;
use super::core::acks::AckBook;
pub use super::core::incoming::Response;
use super::core::incoming::{classify, Incoming};
use super::core::pull::PullTags;
use super::core::requests::Requests;
use super::dial::{io_error, Dialer};
use super::handshake::{greet, Greeting};
use super::{ClientError, ClientOptions, Delivery, Result, ServerInfo};
use crate::protocol::{encode_ack, Cmd, Frame};
use crate::rt::reader::{for_each_frame, Clock, FrameReader, ReadError};
use crate::rt::{Notify, Outbox, Slot, Transport};
use bytes::{Bytes, BytesMut};
use futures_lite::io::{split, ReadHalf, WriteHalf};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

mod recovery;

pub(crate) type Waiter = Box<dyn FnOnce(Result<Response>)>;

/// Where a connection is, with recovery on (without it: `Up`, then
/// `Closed`); as the tokio client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Up,
    /// The socket ended; recovery redials. Requests fail, publishers wait.
    Down,
    /// Redialled: the supervisor declares again, resubscribes and
    /// republishes before the application's traffic goes on.
    Replaying,
    Closed,
}

/// Bytes queued for the socket before senders wait for the writer.
const OUTBOX_HIGH_BYTES: usize = 4 << 20;

/// One connection to one shard (glommio): the socket's reader and writer
/// tasks, the requests waiting for their replies, the consumers it carries,
/// and, with recovery, what it needs to be redialled.
pub struct Conn {
    /// The first handshake's answer: the limits (a failover takes only a
    /// node with the same ones) and the node and shard first reached.
    info: ServerInfo,
    /// Where it is dialled (and redialled): moves on a failover.
    addr: Cell<SocketAddr>,
    /// The current socket's handshake: another node's after a failover.
    node: RefCell<ServerInfo>,
    /// With recovery on: the client's recovery hub.
    hub: Option<Rc<super::recover::Hub>>,
    /// The current socket's outbox: a redial brings a new one.
    outbox: RefCell<Rc<Outbox>>,
    /// Counts the sockets this connection has had: a task of an earlier
    /// one stops at its next turn.
    gen: Cell<u64>,
    phase: Cell<Phase>,
    /// The phase went back to `Up` (or `Closed`).
    up: Notify,
    /// Request ids, their waiters, the last stray error and why the
    /// connection closed.
    requests: RefCell<Requests<Waiter>>,
    consumers: RefCell<HashMap<u32, Rc<ConsumerState>>>,
    /// Consumers with acks waiting to be sent.
    ack_dirty: RefCell<Vec<u32>>,
    ack_kick: Notify,
    /// Why the broker stopped reading this connection (a resource alarm,
    /// `Blocked`), until it says `Unblocked`.
    blocked: RefCell<Option<String>>,
    unblocked: Notify,
    /// The broker said the cluster map moved (`MapChanged`).
    map_changed: Cell<bool>,
    /// `get`'s tags across sockets: a stale one's ack is refused.
    pulls: RefCell<PullTags>,
}

impl Conn {
    /// One connection to `addr`, plain or TLS as `opts` say (TLS verified
    /// against the host of `opts.url`).
    pub async fn connect(addr: SocketAddr, opts: &ClientOptions) -> Result<Rc<Conn>> {
        let (opts, url) = opts.resolved()?;
        let dialer = Dialer::new(&opts, &url)?;
        Self::open(&dialer, addr, &opts, None).await
    }

    pub(crate) async fn open(
        dialer: &Dialer,
        addr: SocketAddr,
        opts: &ClientOptions,
        hub: Option<Rc<super::recover::Hub>>,
    ) -> Result<Rc<Conn>> {
        Ok(Self::open_with(dialer, addr, opts, false, hub).await?.0)
    }

    /// A connection, and the cluster map from its handshake when
    /// `want_map` (`super::handshake`).
    pub(crate) async fn open_with(
        dialer: &Dialer,
        addr: SocketAddr,
        opts: &ClientOptions,
        want_map: bool,
        hub: Option<Rc<super::recover::Hub>>,
    ) -> Result<(Rc<Conn>, Option<super::cluster::OwnedMap>)> {
        let (r, w, Greeting { info, map, reader }) = Self::dial(dialer, addr, opts, want_map).await?;
        let conn = Rc::new(Conn {
            node: RefCell::new(info.clone()),
            info,
            addr: Cell::new(addr),
            hub,
            outbox: RefCell::default(),
            gen: Cell::new(0),
            phase: Cell::new(Phase::Up),
            up: Notify::default(),
            requests: RefCell::default(),
            consumers: RefCell::new(HashMap::new()),
            ack_dirty: RefCell::new(Vec::new()),
            ack_kick: Notify::default(),
            blocked: RefCell::new(None),
            unblocked: Notify::default(),
            map_changed: Cell::new(false),
            pulls: RefCell::default(),
        });
        if let Some(hub) = &conn.hub {
            hub.add_conn(&conn);
        }
        let c = conn.clone();
        glommio::spawn_local(async move { c.ack_loop().await }).detach();
        conn.start(r, w, reader, 0);
        Ok((conn, map))
    }

    /// Connects and shakes hands.
    async fn dial(
        dialer: &Dialer,
        addr: SocketAddr,
        opts: &ClientOptions,
        want_map: bool,
    ) -> Result<(ReadHalf<Transport>, WriteHalf<Transport>, Greeting)> {
        let stream = dialer.connect(addr, opts.connect_timeout).await?;
        // A plain socket is read straight into the reader's buffer (no
        // zeroing first); the read half keeps the fd open.
        let fd = (!stream.is_tls()).then(|| std::os::fd::AsRawFd::as_raw_fd(stream.tcp()));
        let (mut r, mut w) = split(stream);
        let mut greeting = greet(&mut r, &mut w, addr, opts, want_map).await?;
        if let Some(fd) = fd {
            greeting.reader.read_directly(fd);
        }
        Ok((r, w, greeting))
    }

    /// Spawns the tasks of socket number `gen`, writing through the
    /// current outbox.
    fn start(self: &Rc<Self>, r: ReadHalf<Transport>, w: WriteHalf<Transport>, reader: FrameReader, gen: u64) {
        let outbox = self.outbox();
        glommio::spawn_local(async move { outbox.write_loop(w).await }).detach();
        let c = self.clone();
        glommio::spawn_local(async move { c.read_loop(r, reader, gen).await }).detach();
        if self.info.heartbeat_ms > 0 {
            let c = self.clone();
            glommio::spawn_local(async move { c.beat_loop(gen).await }).detach();
        }
    }

    /// The current socket's outbox.
    fn outbox(&self) -> Rc<Outbox> {
        self.outbox.borrow().clone()
    }

    /// What this connection's first handshake said (shards, limits; see
    /// [`Conn::node_info`] for the node it reaches now, after a failover).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// What the current socket's handshake said: the node and shard this
    /// connection reaches now (another node's after a failover).
    pub fn node_info(&self) -> ServerInfo {
        self.node.borrow().clone()
    }

    /// Whether the broker said the cluster map moved since the last call.
    pub fn take_map_changed(&self) -> bool {
        self.map_changed.replace(false)
    }

    /// Whether the connection ended for good (or this client is closing
    /// it). One that recovery is bringing back is not closed.
    pub fn is_closed(&self) -> bool {
        match self.phase.get() {
            Phase::Closed => true,
            Phase::Up => self.requests.borrow().closed().is_some() || self.outbox.borrow().is_closing(),
            Phase::Down | Phase::Replaying => false,
        }
    }

    fn check_open(&self) -> Result<()> {
        if let Some(e) = self.requests.borrow().closed().cloned() {
            return Err(e);
        }
        if self.outbox.borrow().is_closing() {
            return Err(ClientError::Closed("connection closed by this client".into()));
        }
        Ok(())
    }

    /// Waits while the socket has more than `OUTBOX_HIGH_BYTES` queued.
    pub async fn wait_writable(&self) {
        if self.phase.get() != Phase::Up {
            self.wait_up().await;
        }
        if self.outbox.borrow().queued_bytes() > OUTBOX_HIGH_BYTES {
            self.outbox().wait_below(OUTBOX_HIGH_BYTES / 2).await;
        }
    }

    /// Why the broker is not reading this connection right now (a memory
    /// or disk alarm after it published): publishes wait in the socket
    /// until it is read again. `None` when it is read.
    pub fn blocked(&self) -> Option<String> {
        self.blocked.borrow().clone()
    }

    /// Waits until the broker reads this connection again (or it closed).
    pub async fn wait_unblocked(&self) {
        loop {
            let n = self.unblocked.notified();
            if self.blocked.borrow().is_none() || self.is_closed() {
                return;
            }
            n.await;
        }
    }

    /// Takes the error of a request that had no waiter, if any.
    pub fn take_error(&self) -> Option<ClientError> {
        self.requests.borrow_mut().take_error()
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.requests.borrow_mut().next_id()
    }

    /// Queues bytes for the writer. `waiter`, when given, receives the
    /// reply to `request_id`.
    pub(crate) fn send_raw(
        &self,
        request_id: u64,
        waiter: Option<Waiter>,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<()> {
        if let Err(e) = self.check_open() {
            if let Some(w) = waiter {
                w(Err(e.clone()));
            }
            return Err(e);
        }
        if let Some(w) = waiter {
            self.requests.borrow_mut().wait_for(request_id, w);
        }
        self.outbox.borrow().push(encode);
        Ok(())
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&self, cmd: Cmd<'_>) -> Result<Response> {
        self.request_then(cmd, |r| r).await
    }

    /// `request`, the reply passed through `then` by the socket's reader
    /// as it arrives (before that socket can have ended).
    async fn request_then(
        &self,
        cmd: Cmd<'_>,
        then: impl FnOnce(Result<Response>) -> Result<Response> + 'static,
    ) -> Result<Response> {
        if self.phase.get() == Phase::Down {
            self.wait_up().await;
        }
        let rid = self.next_request_id();
        let slot = Slot::new();
        let s = slot.clone();
        self.send_raw(rid, Some(Box::new(move |r| s.set(then(r)))), |b| Frame { request_id: rid, cmd }.encode(b))?;
        slot.wait().await
    }

    /// A request answered with `Ok`: its value.
    pub async fn simple(&self, cmd: Cmd<'_>) -> Result<u64> {
        match self.request(cmd).await? {
            Response::Ok(v) => Ok(v),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// `args`: a raw AMQP field table of queue arguments (empty: none).
    pub async fn declare(&self, queue: &str, flags: u8, args: &[u8]) -> Result<u64> {
        self.simple(Cmd::Declare { flags, queue, args }).await
    }

    /// Pulls one message of `queue` for pull consumer `consumer_id`. Its
    /// tag goes on counting across the sockets this connection has had
    /// (`core::pull`).
    pub async fn get(self: &Rc<Self>, queue: &str, consumer_id: u32, no_ack: bool) -> Result<Option<Delivery>> {
        let me = Rc::downgrade(self);
        let then = move |r| match me.upgrade() {
            Some(c) => c.pulls.borrow_mut().reply(consumer_id, r),
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
        let tag = self.pulls.borrow().for_ack(consumer_id, tag)?;
        let rid = self.next_request_id();
        self.send_raw(rid, None, |b| encode_ack(b, rid, nack, consumer_id, &[(tag, tag)]))?;
        self.outbox().wait_below(0).await;
        self.check_open()
    }

    pub(crate) fn add_consumer(&self, id: u32, state: Rc<ConsumerState>) {
        self.consumers.borrow_mut().insert(id, state);
    }

    pub(crate) fn remove_consumer(&self, id: u32) {
        self.consumers.borrow_mut().remove(&id);
    }

    /// Marks a consumer as having acks to send; they go out together once
    /// the current task yields.
    pub(crate) fn acks_pending(&self, id: u32) {
        let mut d = self.ack_dirty.borrow_mut();
        if !d.contains(&id) {
            d.push(id);
        }
        self.ack_kick.notify();
    }

    async fn ack_loop(&self) {
        loop {
            let n = self.ack_kick.notified();
            let dirty = std::mem::take(&mut *self.ack_dirty.borrow_mut());
            if dirty.is_empty() {
                if self.is_closed() {
                    return;
                }
                n.await;
                continue;
            }
            for id in dirty {
                let state = self.consumers.borrow().get(&id).cloned();
                if let Some(s) = state {
                    self.send_acks(id, &s);
                }
            }
        }
    }

    /// Queues a consumer's collected acks and nacks for the writer now.
    pub(crate) fn send_acks(&self, id: u32, state: &ConsumerState) {
        let book: AckBook = state.take_acks();
        if book.is_empty() {
            return;
        }
        let rid = self.next_request_id();
        let _ = self.send_raw(rid, None, |b| book.encode(b, rid, id));
    }

    /// Sends the acks collected so far and waits until they are written.
    pub(crate) async fn close_acks_first(&self) {
        self.ack_kick.notify();
        glommio::yield_if_needed().await;
        glommio::executor().yield_now().await;
        self.outbox().wait_below(0).await;
    }

    /// Closes without waiting: what is queued is written, then the socket
    /// shuts (the writer does both).
    pub fn shut(&self) {
        self.outbox.borrow().close();
    }

    /// Flushes what is queued, then closes the socket.
    pub async fn close(&self) {
        // Down (recovery redialling, or waiting for a dead node): no socket
        // to flush through; it ends here, and recovery leaves it.
        if self.is_down() {
            self.fail(ClientError::Closed("connection closed by this client".into()));
            return;
        }
        self.close_acks_first().await;
        let outbox = self.outbox();
        outbox.close();
        outbox.wait_finished().await;
    }

    /// Beats (an unsolicited Pong, request id 0) every half interval in
    /// which nothing else was sent, until the connection closes.
    async fn beat_loop(&self, gen: u64) {
        let half = Duration::from_millis(u64::from(self.info.heartbeat_ms) / 2);
        let outbox = self.outbox();
        let mut seen = outbox.pushes();
        let current = || self.gen.get() == gen && !self.is_closed();
        while current() {
            glommio::timer::sleep(half).await;
            if outbox.pushes() == seen && current() {
                outbox.push(|b| Frame { request_id: 0, cmd: Cmd::Pong }.encode(b));
            }
            seen = outbox.pushes();
        }
    }

    async fn read_loop(&self, mut r: ReadHalf<Transport>, mut reader: FrameReader, gen: u64) {
        let hb = u64::from(self.info.heartbeat_ms);
        // With heartbeats, a broker silent for two intervals is gone.
        let deadline = |c: &Clock| (hb > 0).then(|| c.last_byte + Duration::from_millis(2 * hb));
        let err = loop {
            let chunk = match reader.fill(&mut r, deadline).await {
                Ok(c) => c,
                Err(ReadError::Timeout { .. }) => {
                    break ClientError::Closed(format!("nothing from the broker for two heartbeat intervals ({hb} ms)"))
                }
                Err(e) => break read_error(e),
            };
            // A later socket replaced this one.
            if self.gen.get() != gen {
                return;
            }
            match for_each_frame(&chunk, reader.frame_bytes_max(), |f| self.on_frame(&chunk, f)) {
                Ok(used) => reader.keep(&chunk, used),
                Err(Ok(e)) => break e,
                Err(Err(d)) => break ClientError::Protocol(d.to_string()),
            }
        };
        self.on_error(gen, err);
    }

    /// Ends the connection: every waiter and consumer hears why.
    pub(crate) fn fail(&self, err: ClientError) {
        self.phase.set(Phase::Closed);
        let waiters = self.requests.borrow_mut().fail(&err);
        for w in waiters {
            w(Err(err.clone()));
        }
        let consumers: Vec<Rc<ConsumerState>> = self.consumers.borrow().values().cloned().collect();
        for c in consumers {
            c.close(err.clone());
        }
        self.outbox.borrow().close();
        self.ack_kick.notify();
        self.unblocked.notify();
        self.up.notify();
    }

    fn complete(&self, request_id: u64, r: Result<Response>) {
        let settled = self.requests.borrow_mut().settle(request_id, r);
        if let Some((w, r)) = settled {
            w(r);
        }
    }

    fn on_frame(&self, chunk: &Bytes, f: Frame<'_>) -> Result<()> {
        match classify(chunk, f, &self.info)? {
            Incoming::Deliver { consumer_id, first_tag, origin, entries } => {
                let state = self.consumers.borrow().get(&consumer_id).cloned();
                let Some(state) = state else {
                    tracing::debug!(consumer_id, "delivery for a consumer this client dropped");
                    return Ok(());
                };
                state.push_frame(chunk, consumer_id, first_tag, origin, entries);
            }
            Incoming::Reply(rid, r) => self.complete(rid, r),
            Incoming::Cancelled { consumer_id, error } => {
                if let Some(hub) = &self.hub {
                    hub.topology.borrow_mut().consumer_removed(consumer_id);
                }
                let state = self.consumers.borrow_mut().remove(&consumer_id);
                if let Some(state) = state {
                    state.close(error);
                }
            }
            Incoming::Ping(rid) => {
                let _ = self.send_raw(rid, None, |b| Frame { request_id: rid, cmd: Cmd::Pong }.encode(b));
            }
            Incoming::Nothing => {}
            Incoming::Blocked(reason) => *self.blocked.borrow_mut() = Some(reason),
            Incoming::Unblocked => {
                self.blocked.borrow_mut().take();
                self.unblocked.notify();
            }
            Incoming::MapChanged(_) => self.map_changed.set(true),
        }
        Ok(())
    }
}

pub(super) fn read_error(e: ReadError) -> ClientError {
    match e {
        ReadError::Eof => ClientError::Closed("the broker closed the connection".into()),
        ReadError::Truncated { buffered } => {
            ClientError::Closed(format!("the broker closed inside a frame ({buffered} bytes)"))
        }
        ReadError::Timeout { .. } => ClientError::Io("no reply within the connect timeout".into()),
        ReadError::Decode(d) => ClientError::Protocol(d.to_string()),
        ReadError::Io(e) => io_error(e),
    }
}
