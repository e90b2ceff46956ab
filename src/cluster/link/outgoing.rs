//! The dialling side: openraft's `RaftNetworkFactory` and `RaftNetwork`.
//!
//! openraft asks for a client per replication stream and per election;
//! all of a target's clients share one `Peer`, so a member holds one
//! connection to each peer it sends to. A peer's connector task dials it,
//! runs the handshake, then reads replies and pings while idle; when the
//! link breaks it fails the RPCs waiting on it, waits (doubling from
//! `backoff_min` to `backoff_max`, with jitter) and dials again.
//!
//! An RPC has a deadline (openraft's soft TTL for it) and a place in a
//! bounded window: a full window, a backlog the peer does not read, a link
//! that is down or a frame over the limit is an error returned to
//! openraft at once, never a request dropped in silence.

use super::handshake::{self, Frames, PeerHello};
use super::{rpc, LinkConfig, LinkError};
use crate::cluster::{Apply, MetaRaft, NodeId};
use crate::protocol::link::{CloseCode, Frame, RpcKind, RPC_OVERHEAD_BYTES};
use crate::rt::reader::{Clock, ReadError, READ_BYTES};
use crate::rt::{Notify, Outbox, Transport};
use bytes::Bytes;
use futures_lite::io::{split, ReadHalf};
use glommio::net::TcpStream;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The member's outgoing links: give it to `Raft::new`. Its [`Links`]
/// (`links()`) also carry the member's own requests to its peers
/// (`cluster::service`): a forwarded change, a join, a status query.
pub struct Network<A> {
    links: Links,
    _apply: PhantomData<fn() -> A>,
}

impl<A> Network<A> {
    pub fn new(config: LinkConfig) -> Self {
        let links = Links(Rc::new(LinksInner { config: Rc::new(config), peers: RefCell::default() }));
        Self { links, _apply: PhantomData }
    }

    /// The links, shared with the member's own callers.
    pub fn links(&self) -> Links {
        self.links.clone()
    }
}

/// openraft drops the factory when the member shuts down: the links go
/// with it.
impl<A> Drop for Network<A> {
    fn drop(&mut self) {
        self.links.stop_all();
    }
}

impl<A: Apply> RaftNetworkFactory<MetaRaft<A>> for Network<A> {
    type Network = PeerClient<A>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient<A> {
        let peer = self.links.peer(target, &node.addr);
        PeerClient { peer, me: self.links.0.config.node_id, _apply: PhantomData }
    }
}

/// One connection per peer, shared by openraft's clients and the member's
/// own requests.
#[derive(Clone)]
pub struct Links(Rc<LinksInner>);

struct LinksInner {
    config: Rc<LinkConfig>,
    peers: RefCell<HashMap<NodeId, Rc<Peer>>>,
}

impl Links {
    pub fn config(&self) -> &LinkConfig {
        &self.0.config
    }

    /// The peer `target`, dialled at `addr` (from now on, if it moved).
    fn peer(&self, target: NodeId, addr: &str) -> Rc<Peer> {
        let mut peers = self.0.peers.borrow_mut();
        let peer = peers.entry(target).or_insert_with(|| {
            let peer = Rc::new(Peer::new(target, addr.to_string(), self.0.config.clone()));
            glommio::spawn_local(peer.clone().run()).detach();
            peer
        });
        // A member that moved: the next dial goes to its new address.
        if *peer.addr.borrow() != addr {
            *peer.addr.borrow_mut() = addr.to_string();
        }
        peer.clone()
    }

    /// Sends one request to `target` (at `addr`) and waits for its reply
    /// until `deadline`, over the same bounded link Raft's RPCs use.
    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        kind: RpcKind,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Bytes, LinkError> {
        self.peer(target, addr).call(kind, payload, deadline).await
    }

    /// Whether the link to `target` is up; `None` if this member never
    /// dialled it.
    pub fn is_up(&self, target: NodeId) -> Option<bool> {
        let peers = self.0.peers.borrow();
        let p = peers.get(&target)?;
        let up = matches!(&*p.state.borrow(), State::Up(o) if !o.is_closing());
        Some(up)
    }

    /// Stops dialling `target` (it left the cluster).
    pub fn forget(&self, target: NodeId) {
        if let Some(p) = self.0.peers.borrow_mut().remove(&target) {
            p.stop();
        }
    }

    fn stop_all(&self) {
        for p in self.0.peers.borrow().values() {
            p.stop();
        }
    }
}

enum State {
    /// Dialling or in the handshake: an RPC waits for it (within its
    /// deadline).
    Connecting,
    Up(Rc<Outbox>),
    /// Waiting to redial; RPCs fail at once with why.
    Down(String),
}

/// One peer's link, shared by every client openraft holds for it.
struct Peer {
    id: NodeId,
    addr: RefCell<String>,
    config: Rc<LinkConfig>,
    state: RefCell<State>,
    changed: Notify,
    /// RPCs sent and not answered, by id: where each reply goes.
    pending: RefCell<HashMap<u64, oneshot::Sender<Bytes>>>,
    next_id: Cell<u64>,
    stopped: Cell<bool>,
}

impl Peer {
    fn new(id: NodeId, addr: String, config: Rc<LinkConfig>) -> Self {
        Self {
            id,
            addr: RefCell::new(addr),
            config,
            state: RefCell::new(State::Connecting),
            changed: Notify::default(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            stopped: Cell::new(false),
        }
    }

    fn set(&self, s: State) {
        *self.state.borrow_mut() = s;
        self.changed.notify();
    }

    fn stop(&self) {
        self.stopped.set(true);
        if let State::Up(o) = &*self.state.borrow() {
            o.abort();
        }
        self.changed.notify();
    }

    /// The connector: dial, serve the link until it breaks, back off,
    /// dial again, until the member stops.
    async fn run(self: Rc<Self>) {
        let limits = self.config.limits;
        let mut delay = limits.backoff_min;
        let mut failures = 0u32;
        while !self.stopped.get() {
            self.set(State::Connecting);
            let addr = self.addr.borrow().clone();
            let why = match connect(&self.config, &addr, Some(self.id)).await {
                // Stopped while dialling: nobody will use the link.
                Ok(_) if self.stopped.get() => LinkError::Shutdown,
                Ok((r, frames, w, hello)) => {
                    tracing::info!(peer = self.id, name = %hello.node_name, %addr, "cluster link up");
                    (delay, failures) = (limits.backoff_min, 0);
                    let why = self.serve(r, frames, w).await;
                    if self.stopped.get() {
                        tracing::info!(peer = self.id, %addr, "cluster link closed: this member is stopping");
                    } else if matches!(why, LinkError::Closed { code, .. } if code == CloseCode::NotMember.as_u16()) {
                        tracing::error!(
                            peer = self.id,
                            %addr,
                            "this node is not a member of the cluster (it was forgotten): it takes no part; \
                             restart it with --cluster-reset to discard its cluster data and join again"
                        );
                    } else {
                        tracing::warn!(peer = self.id, %addr, error = %why, "cluster link lost; redialling");
                    }
                    why
                }
                Err(e) => {
                    // The first failure in a row is worth a warning; the
                    // redials after it are not (a peer that is down).
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(peer = self.id, %addr, error = %e, "cannot reach cluster peer; retrying with backoff");
                    } else {
                        tracing::debug!(peer = self.id, %addr, error = %e, failures, "cannot reach cluster peer");
                    }
                    e
                }
            };
            self.set(State::Down(why.to_string()));
            // Dropping the senders fails every RPC still waiting.
            self.pending.borrow_mut().clear();
            if self.stopped.get() {
                break;
            }
            glommio::timer::sleep(jitter(delay)).await;
            delay = (delay * 2).min(limits.backoff_max);
        }
        self.set(State::Down("the member stopped".into()));
    }

    /// Runs an authenticated link: a writer task drains the outbox, this
    /// task reads replies. Returns why it ended.
    async fn serve(&self, mut r: ReadHalf<Transport>, mut frames: Frames, w: Writer) -> LinkError {
        let outbox = Rc::new(Outbox::default());
        outbox.set_send_timeout(self.config.limits.send_timeout);
        let o = outbox.clone();
        let writer = glommio::spawn_local(async move { o.write_loop(w).await });
        self.set(State::Up(outbox.clone()));
        let ended = async {
            outbox.wait_ended().await;
            if self.stopped.get() {
                LinkError::Shutdown
            } else if outbox.is_stalled() {
                LinkError::Backlog(outbox.pending_bytes())
            } else {
                LinkError::Lost
            }
        };
        let why = futures_lite::future::or(self.read(&mut r, &mut frames, &outbox), ended).await;
        super::close_and_flush(&outbox, writer, &why).await;
        why
    }

    async fn read(&self, r: &mut ReadHalf<Transport>, frames: &mut Frames, outbox: &Outbox) -> LinkError {
        let limits = self.config.limits;
        let mut pinged = Instant::now();
        loop {
            let last_ping = pinged;
            let deadline = move |c: &Clock| {
                let ping = c.last_byte.max(last_ping) + limits.ping_interval;
                let frame = c.frame_started.map(|s| s + limits.frame_timeout);
                Some([ping, c.last_byte + limits.idle_timeout].into_iter().chain(frame).min().unwrap_or(ping))
            };
            let res = frames.next(r, deadline).await;
            match res {
                Ok(Frame::RpcReply { id, payload }) => {
                    if let Err(e) = self.deliver(id, payload) {
                        return e;
                    }
                }
                Ok(Frame::Pong) => {}
                Ok(Frame::Ping) => outbox.push(|b| Frame::Pong.encode(b)),
                Ok(Frame::Close { code, reason }) => return LinkError::Closed { code, reason: reason.into() },
                Ok(other) => {
                    let why = format!("{} from the listener after the handshake", other.name());
                    return LinkError::refuse(crate::protocol::link::CloseCode::UnexpectedFrame, why);
                }
                Err(LinkError::Read(ReadError::Timeout { buffered })) => {
                    let (c, now) = (frames.clock(), Instant::now());
                    let frame_late = c.frame_started.is_some_and(|s| now >= s + limits.frame_timeout);
                    if now >= c.last_byte + limits.idle_timeout || frame_late {
                        return LinkError::Read(ReadError::Timeout { buffered });
                    }
                    outbox.push(|b| Frame::Ping.encode(b));
                    pinged = now;
                }
                Err(e) => return e,
            }
        }
    }

    /// Hands a reply to the RPC waiting for it. One that nobody waits for
    /// any more (it timed out) is dropped; one for an id never sent breaks
    /// the link.
    fn deliver(&self, id: u64, payload: &[u8]) -> Result<(), LinkError> {
        match self.pending.borrow_mut().remove(&id) {
            // The caller may have just given up: nothing to do.
            Some(tx) => drop(tx.send(Bytes::copy_from_slice(payload))),
            None if id >= self.next_id.get() => {
                let why = format!("a reply to RPC {id}, which was never sent");
                return Err(LinkError::refuse(crate::protocol::link::CloseCode::UnexpectedFrame, why));
            }
            None => tracing::debug!(peer = self.id, id, "a reply after its RPC's deadline"),
        }
        Ok(())
    }

    /// The link once it is up, waiting while it is being dialled.
    async fn wait_up(&self, deadline: Instant) -> Result<Rc<Outbox>, LinkError> {
        loop {
            let changed = self.changed.notified();
            if self.stopped.get() {
                return Err(LinkError::Shutdown);
            }
            match &*self.state.borrow() {
                State::Up(o) if !o.is_closing() => return Ok(o.clone()),
                State::Up(_) => return Err(LinkError::Lost),
                State::Down(why) => return Err(LinkError::NotConnected(why.clone())),
                State::Connecting => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if glommio::timer::timeout(left, async {
                changed.await;
                Ok(())
            })
            .await
            .is_err()
            {
                return Err(LinkError::NotConnected("still dialling at the RPC's deadline".into()));
            }
        }
    }

    /// Sends one RPC and waits for its reply until `deadline`.
    async fn call(&self, kind: RpcKind, payload: &[u8], deadline: Instant) -> Result<Bytes, LinkError> {
        let limits = self.config.limits;
        let len = RPC_OVERHEAD_BYTES + payload.len();
        if len > limits.frame_bytes_max {
            return Err(LinkError::TooLarge { len, max: limits.frame_bytes_max });
        }
        let outbox = self.wait_up(deadline).await?;
        let in_flight = self.pending.borrow().len();
        if in_flight >= limits.rpcs_in_flight_max {
            return Err(LinkError::WindowFull(in_flight));
        }
        if outbox.pending_bytes() > limits.outbox_bytes_max {
            return Err(LinkError::Backlog(outbox.pending_bytes()));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        // However this call ends (a reply, its deadline, openraft dropping
        // it), its place in the window is given back.
        let _forget = Forget { peer: self, id };
        outbox.push(|b| Frame::Rpc { id, kind, payload }.encode(b));
        let left = deadline.saturating_duration_since(Instant::now());
        match glommio::timer::timeout(left, async { Ok(rx.await) }).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(LinkError::Lost),
            Err(_) => Err(LinkError::Timeout(left)),
        }
    }

    /// A reply that does not decode: the peer is broken or hostile, so
    /// the link is dropped (and redialled).
    fn bad_reply(&self, e: &LinkError) {
        tracing::warn!(peer = self.id, error = %e, "cluster peer sent a reply that does not decode; dropping the link");
        if let State::Up(o) = &*self.state.borrow() {
            o.abort();
        }
    }
}

pub(crate) type Writer = futures_lite::io::WriteHalf<Transport>;

/// Dials `addr` and runs the handshake within `handshake_timeout`,
/// against member `target` (any member: `None`).
pub(crate) async fn connect(
    config: &LinkConfig,
    addr: &str,
    target: Option<NodeId>,
) -> Result<(ReadHalf<Transport>, Frames, Writer, PeerHello), LinkError> {
    let limits = config.limits;
    let sock = resolve(addr).await?;
    let stream = TcpStream::connect_timeout(sock, limits.connect_timeout).await.map_err(std::io::Error::from)?;
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let stream = match &config.tls {
        None => Transport::Plain(stream),
        Some(tls) => tls_connect(tls, addr, stream, limits.handshake_timeout).await?,
    };
    let (mut r, mut w) = split(stream);
    let mut frames = Frames::handshake();
    let deadline = Instant::now() + limits.handshake_timeout;
    let shake = handshake::dial(&mut r, &mut w, &mut frames, config, target, deadline);
    let res = match glommio::timer::timeout(limits.handshake_timeout, async { Ok(shake.await) }).await {
        Ok(res) => res,
        Err(_) => Err(LinkError::HandshakeTimeout(limits.handshake_timeout)),
    };
    match res {
        Ok(hello) => {
            frames.authenticated(limits.frame_bytes_max, READ_BYTES);
            Ok((r, frames, w, hello))
        }
        Err(e) => {
            if let Some(code) = e.close_code() {
                handshake::send_close(&mut w, code, &e.to_string()).await;
            }
            Err(e)
        }
    }
}

struct Forget<'a> {
    peer: &'a Peer,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.peer.pending.borrow_mut().remove(&self.id);
    }
}

/// The TLS handshake as the dialler: the listener's certificate must be
/// signed by the cluster's CA and name the host in `addr`.
async fn tls_connect(
    tls: &super::LinkTls,
    addr: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Transport, LinkError> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| LinkError::Tls(format!("{host:?} is no server name: {e}")))?;
    let config = (tls.connector)().map_err(LinkError::Tls)?;
    let connecting = futures_rustls::TlsConnector::from(config).connect(name, tcp);
    match glommio::timer::timeout(timeout, async { Ok(connecting.await) }).await {
        Ok(Ok(s)) => Ok(Transport::ClientTls(Box::new(s))),
        Ok(Err(e)) => Err(LinkError::Tls(format!("handshake with {addr}: {e}"))),
        Err(_) => Err(LinkError::HandshakeTimeout(timeout)),
    }
}

/// `delay` give or take a quarter, so members that lost a peer together
/// do not redial it in step.
fn jitter(delay: Duration) -> Duration {
    use rand::Rng;
    let quarter = delay / 4;
    delay - quarter + rand::thread_rng().gen_range(Duration::ZERO..=quarter * 2)
}

/// An `ip:port` at once; a host name on the blocking pool (the resolver
/// blocks).
async fn resolve(addr: &str) -> Result<SocketAddr, LinkError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    let host = addr.to_string();
    let found = glommio::executor()
        .spawn_blocking(move || std::net::ToSocketAddrs::to_socket_addrs(&host).map(|mut it| it.next()))
        .await;
    let bad = |why: String| LinkError::Address { addr: addr.into(), why };
    found.map_err(|e| bad(e.to_string()))?.ok_or_else(|| bad("resolves to nothing".into()))
}

/// One member's RPCs to one peer, as openraft holds them.
pub struct PeerClient<A> {
    peer: Rc<Peer>,
    me: NodeId,
    _apply: PhantomData<fn() -> A>,
}

impl<A: Apply> PeerClient<A> {
    /// Encodes, sends, waits and decodes one RPC; `too_large` says how
    /// openraft should split a request over the frame limit.
    async fn rpc<Req, Resp, E>(
        &self,
        kind: RpcKind,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
        too_large: impl FnOnce(usize) -> Option<PayloadTooLarge>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.peer.id;
        let unreachable = |e: &LinkError| RPCError::Unreachable(Unreachable::new(e));
        let payload = rpc::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.soft_ttl();
        let reply = match self.peer.call(kind, &payload, Instant::now() + ttl).await {
            Ok(r) => r,
            Err(LinkError::Timeout(_)) => {
                return Err(RPCError::Timeout(Timeout { action, id: self.me, target, timeout: ttl }));
            }
            Err(e @ LinkError::TooLarge { max, .. }) => {
                return Err(too_large(max).map_or_else(|| unreachable(&e), RPCError::PayloadTooLarge));
            }
            Err(e) => return Err(unreachable(&e)),
        };
        match rpc::decode::<Result<Resp, E>>(kind.name(), &reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
            Err(e) => {
                self.peer.bad_reply(&e);
                Err(unreachable(&e))
            }
        }
    }
}

impl<A: Apply> RaftNetwork<MetaRaft<A>> for PeerClient<A> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetaRaft<A>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // Over the limit: openraft resends half the entries (one entry
        // that alone is too large is reported unreachable by openraft).
        let half = u64::try_from(rpc.entries.len() / 2).unwrap_or(1).max(1);
        let hint = move |_| Some(PayloadTooLarge::new_entries_hint(half));
        self.rpc(RpcKind::Append, RPCTypes::AppendEntries, &rpc, &option, hint).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetaRaft<A>>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        // A chunk is openraft's `snapshot_max_chunk_size` (3 MiB by
        // default), far below the frame limit; openraft 0.9 keeps its
        // bytes hint to itself, so one over the limit is unreachable.
        self.rpc(RpcKind::Snapshot, RPCTypes::InstallSnapshot, &rpc, &option, |_| None).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(RpcKind::Vote, RPCTypes::Vote, &rpc, &option, |_| None).await
    }

    /// After `Unreachable`, openraft waits this before retrying: doubling
    /// from `backoff_min` to `backoff_max`, as the dialler does.
    fn backoff(&self) -> Backoff {
        let l = self.peer.config.limits;
        Backoff::new(std::iter::successors(Some(l.backoff_min), move |d| Some((*d * 2).min(l.backoff_max))))
    }
}

#[cfg(test)]
#[path = "outgoing_tests.rs"]
mod tests;
