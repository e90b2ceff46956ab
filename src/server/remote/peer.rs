//! The dialling side of a data link: one per (this shard, a shard of
//! another node), dialled when the first request for it is sent.
//!
//! - Requests are encoded into the link's outbox as they come (before the
//!   link is up, into a bounded queue), so a turn's requests share a write.
//! - Those that get exactly one answer are remembered until it arrives: if
//!   the link fails, each is answered `NodeUnavailable` (native 72, AMQP
//!   404 as RabbitMQ answers for a queue whose node is down), and each
//!   consumer subscribed over it hears `ConsumerGone`. A request is never
//!   left without its answer, and nothing waits on a dead node.
//! - After a failure the peer is down for a backoff (doubling from
//!   `backoff_min` to `backoff_max`): requests in that time are answered
//!   at once, then the next one dials again.
//! - Replies go to their connection through `Shard::route_reply`; a
//!   delivery's owner is rewritten to this node's slot for the shard that
//!   sent it, so the connection's credit and acks come back here.

use super::super::shard::Shard;
use super::super::types::{ConnRef, Reply, Request};
use super::wire::{self, DataMsg, EncodeError};
use super::{Dir, SlotKey};
use crate::cluster::link::{handshake::Frames, outgoing, LinkConfig, LinkError};
use crate::protocol::link::{CloseCode, Frame};
use crate::protocol::ErrorCode;
use crate::rt::{Outbox, Transport};
use bytes::BytesMut;
use futures_lite::io::ReadHalf;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Bytes waiting for a data link's socket past which the connections
/// feeding it stop reading (`Shard::wait_for_space`): small next to the
/// link's outbox bound, so a node that floods another cannot queue more
/// than a moment's work there, and the receiving side, which stops
/// reading while it is behind, catches up long before the link's send
/// timeout would take it for dead.
pub const BACKLOG_BYTES_MAX: usize = 8 << 20;

/// How long a bind's answer waits for this node to route by it.
const BIND_SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Whether `shard` routes by `binding` (or no longer, for an unbind).
fn settled(shard: &Shard, binding: &crate::routing::BindingDef, unbind: bool) -> bool {
    shard.routing_has(binding) != unbind
}

/// Requests awaiting their answer on one link, at most: past it a request
/// is refused (the remote node is not keeping up).
pub const PENDING_MAX: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Dialling,
    Up,
    Down,
}

/// (shard, connection, request id) on this node.
type Asked = (u16, u64, u64);

pub struct Peer {
    pub slot: u16,
    key: SlotKey,
    addr: String,
    state: Cell<State>,
    /// Frames encoded while the link is not up yet.
    queued: RefCell<BytesMut>,
    outbox: RefCell<Option<Rc<Outbox>>>,
    pending: RefCell<HashMap<Asked, u32>>,
    /// Binds asked of the queue's node: their answer waits until this
    /// node routes by the change (`settled`).
    binds: RefCell<HashMap<Asked, (crate::routing::BindingDef, bool)>>,
    consumers: RefCell<HashSet<(u16, u64, u32)>>,
    retry_at: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
}

/// Whether `req` gets exactly one answer (so a lost link must give it one).
fn answered(req: &Request) -> bool {
    match req {
        Request::Publish { confirm, .. } | Request::PublishMany { confirm, .. } => *confirm,
        Request::DirectReply { confirm, mandatory, .. } => *confirm || *mandatory,
        Request::Declare { .. }
        | Request::Delete { .. }
        | Request::Purge { .. }
        | Request::StoreOffset { .. }
        | Request::QueryOffset { .. }
        | Request::Subscribe { .. }
        | Request::Unsubscribe { .. }
        | Request::Get { .. }
        | Request::BindQueue { .. }
        | Request::TxPart { .. } => true,
        Request::Meta { .. }
        | Request::Cancel { .. }
        | Request::Ack { .. }
        | Request::Nack { .. }
        | Request::ConnClosed { .. }
        | Request::DeliveriesResume
        | Request::DeliveriesCredit { .. } => false,
    }
}

/// The request id a reply answers, for replies that end a request.
fn answer_of(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Ok { request_id, .. }
        | Reply::Error { request_id, .. }
        | Reply::Confirm { request_id, .. }
        | Reply::GetOk { request_id, .. }
        | Reply::GetEmpty { request_id }
        | Reply::TxCommitted { request_id, .. } => Some(*request_id),
        _ => None,
    }
}

impl Peer {
    pub fn new(slot: u16, key: SlotKey, addr: String) -> Self {
        Self {
            slot,
            key,
            addr,
            state: Cell::new(State::Idle),
            queued: RefCell::default(),
            outbox: RefCell::default(),
            pending: RefCell::default(),
            binds: RefCell::default(),
            consumers: RefCell::default(),
            retry_at: Cell::new(None),
            backoff: Cell::new(Duration::ZERO),
        }
    }

    fn unavailable(&self, why: &str) -> String {
        format!("node {} (shard {}) is unavailable: {why}", self.key.node, self.key.shard)
    }

    /// Sends `req` from connection `from`, or answers it at once when the
    /// link is down or full.
    pub fn send(self: &Rc<Self>, shard: &Rc<Shard>, from: ConnRef, request_id: u64, req: Request) {
        if self.state.get() == State::Down && self.retry_at.get().is_some_and(|t| Instant::now() < t) {
            return refuse(shard, from, request_id, &req, ErrorCode::NodeUnavailable, &self.unavailable("link down"));
        }
        if !shard.remote.shared.is_clustered() {
            return refuse(shard, from, request_id, &req, ErrorCode::ClusterUnavailable, "not in a cluster");
        }
        // The links' limits are the defaults on every node.
        let limits = crate::cluster::link::LinkLimits::default();
        let asks = answered(&req);
        if asks && self.pending.borrow().len() >= PENDING_MAX {
            let why = self.unavailable(&format!("{PENDING_MAX} requests in flight"));
            return refuse(shard, from, request_id, &req, ErrorCode::NodeUnavailable, &why);
        }
        let track = match &req {
            Request::Subscribe { consumer_id, .. } => Some((true, *consumer_id)),
            Request::Unsubscribe { consumer_id, .. } => Some((false, *consumer_id)),
            _ => None,
        };
        let bind = match &req {
            Request::BindQueue { binding, unbind } => Some((binding.clone(), *unbind)),
            _ => None,
        };
        let msg = DataMsg::Request { shard: from.shard, conn: from.conn_id, request_id, req };
        let up = self.outbox.borrow().clone().filter(|_| self.state.get() == State::Up);
        let mut encoded = Ok(());
        match &up {
            // Straight into the link's outbox: one copy of the payload.
            Some(o) => o.push(|b| encoded = wire::encode(&msg, b, limits.frame_bytes_max)),
            None => {
                let mut queued = self.queued.borrow_mut();
                let before = queued.len();
                encoded = wire::encode(&msg, &mut queued, limits.frame_bytes_max);
                if encoded.is_ok() && queued.len() > limits.outbox_bytes_max {
                    queued.truncate(before);
                    encoded = Err(EncodeError::TooLarge { len: 0 });
                }
            }
        }
        if let Err(e) = encoded {
            let DataMsg::Request { req, .. } = msg else { return };
            let (code, why) = match e {
                EncodeError::TooLarge { len: 0 } => {
                    (ErrorCode::NodeUnavailable, self.unavailable("its queue is full while it is dialled"))
                }
                EncodeError::TooLarge { len } => {
                    (ErrorCode::MessageTooLarge, format!("{len} bytes is past the link's frame limit"))
                }
                EncodeError::Serialize(e) => (ErrorCode::Internal, e),
            };
            return refuse(shard, from, request_id, &req, code, &why);
        }
        shard.remote.forwarded.set(shard.remote.forwarded.get() + 1);
        if asks {
            *self.pending.borrow_mut().entry((from.shard, from.conn_id, request_id)).or_default() += 1;
        }
        if let Some(b) = bind {
            self.binds.borrow_mut().insert((from.shard, from.conn_id, request_id), b);
        }
        match track {
            Some((true, c)) => {
                self.consumers.borrow_mut().insert((from.shard, from.conn_id, c));
            }
            Some((false, c)) => {
                self.consumers.borrow_mut().remove(&(from.shard, from.conn_id, c));
            }
            None => {}
        }
        if matches!(self.state.get(), State::Idle | State::Down) {
            let Some(config) = shard.remote.shared.link() else { return };
            self.state.set(State::Dialling);
            let (me, sh) = (self.clone(), Rc::downgrade(shard));
            glommio::spawn_local(async move { me.run(sh, config).await }).detach();
        }
    }

    pub fn is_up(&self) -> bool {
        self.state.get() == State::Up
    }

    /// Bytes waiting for the socket of a link that is up: the connections
    /// feeding it wait while this is past the link's outbox bound. (While
    /// it is dialled its queue is bounded by refusing past the same bound.)
    pub fn backlog(&self) -> usize {
        let o = self.outbox.borrow();
        o.as_ref().filter(|o| !o.is_broken() && !o.is_closing()).map_or(0, |o| o.pending_bytes())
    }

    /// Waits until the backlog is below `max`, or the link is gone.
    pub async fn wait_below(&self, max: usize) {
        let o = self.outbox.borrow().clone();
        if let Some(o) = o {
            futures_lite::future::or(o.wait_pending_below(max), o.wait_ended()).await;
        }
    }

    async fn run(self: Rc<Self>, shard: Weak<Shard>, config: LinkConfig) {
        let limits = config.limits;
        let why = match outgoing::connect(&config, &self.addr, Some(self.key.node)).await {
            Err(e) => e,
            Ok((mut r, mut frames, w, _hello)) => {
                self.backoff.set(Duration::ZERO);
                let outbox = Rc::new(Outbox::default());
                outbox.set_send_timeout(limits.send_timeout);
                outbox.push(|b| b.extend_from_slice(&std::mem::take(&mut *self.queued.borrow_mut())));
                *self.outbox.borrow_mut() = Some(outbox.clone());
                self.state.set(State::Up);
                tracing::debug!(node = self.key.node, shard = self.key.shard, addr = %self.addr, "cluster: data link up");
                let o = outbox.clone();
                let writer = glommio::spawn_local(async move { o.write_loop(w).await });
                let pings = glommio::spawn_local(ping(outbox.clone(), limits.ping_interval));
                let ended = async {
                    outbox.wait_ended().await;
                    LinkError::Lost
                };
                let why = futures_lite::future::or(self.read(&shard, &mut r, &mut frames, &config), ended).await;
                drop(pings);
                *self.outbox.borrow_mut() = None;
                crate::cluster::link::close_and_flush(&outbox, writer, &why).await;
                why
            }
        };
        if let Some(s) = shard.upgrade() {
            self.lost(&s, &why, &config);
        }
    }

    async fn read(
        &self,
        shard: &Weak<Shard>,
        r: &mut ReadHalf<Transport>,
        frames: &mut Frames,
        config: &LinkConfig,
    ) -> LinkError {
        let idle = config.limits.idle_timeout;
        let outbox = self.outbox.borrow().clone();
        loop {
            // Replies that always arrive never make this task wait: give
            // the shard's other tasks their turn (see `serve::read`).
            glommio::yield_if_needed().await;
            let payload = match super::next_message(r, frames, idle, outbox.as_deref()).await {
                Ok(p) => p,
                Err(e) => return e,
            };
            let Some(s) = shard.upgrade() else { return LinkError::Lost };
            match payload {
                Ok(DataMsg::Reply { shard: to, conn, reply }) if to < s.count => self.on_reply(&s, to, conn, reply),
                Ok(other) => {
                    let why = format!("a data message this side does not take: {other:?}");
                    return LinkError::refuse(CloseCode::UnexpectedFrame, why.chars().take(200).collect::<String>());
                }
                Err(e) => return LinkError::refuse(CloseCode::UnexpectedFrame, format!("undecodable data: {e}")),
            }
        }
    }

    fn on_reply(&self, shard: &Shard, to: u16, conn: u64, mut reply: Reply) {
        if let Some(id) = answer_of(&reply) {
            let bind = self.binds.borrow_mut().remove(&(to, conn, id));
            if let (Some((binding, unbind)), Reply::Ok { .. }) = (bind, &reply) {
                return self.after_routed(shard, to, conn, (binding, unbind), reply);
            }
            let mut pending = self.pending.borrow_mut();
            if let Some(n) = pending.get_mut(&(to, conn, id)) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&(to, conn, id));
                }
            }
        }
        match &mut reply {
            Reply::ConsumerGone { consumer_id } | Reply::ConsumerTimeout { consumer_id, .. } => {
                self.consumers.borrow_mut().remove(&(to, conn, *consumer_id));
            }
            Reply::Deliver { owner, .. } => {
                // Credit and acks from that connection come back through
                // its own shard's link to the same remote shard.
                let key = SlotKey { node: self.key.node, shard: *owner, home: to, dir: Dir::Out };
                match shard.remote.shared.slot(key) {
                    Some(slot) => *owner = slot,
                    None => return tracing::error!("cluster: no slot left for a delivery's owner; dropped"),
                }
            }
            _ => {}
        }
        shard.route_reply(ConnRef { shard: to, conn_id: conn }, reply);
    }

    /// A bind the queue's node took: the group committed it, but this
    /// node may not have applied it yet, and the client's next publish is
    /// routed here. Its answer waits until this shard routes by it (at
    /// most `BIND_SETTLE_WAIT`).
    fn after_routed(&self, shard: &Shard, to: u16, conn: u64, bind: (crate::routing::BindingDef, bool), reply: Reply) {
        let (binding, unbind) = bind;
        if settled(shard, &binding, unbind) {
            return shard.route_reply(ConnRef { shard: to, conn_id: conn }, reply);
        }
        let Some(me) = shard.remote.me.borrow().upgrade() else { return };
        glommio::spawn_local(async move {
            let deadline = Instant::now() + BIND_SETTLE_WAIT;
            while !settled(&me, &binding, unbind) && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            me.route_reply(ConnRef { shard: to, conn_id: conn }, reply);
        })
        .detach();
    }

    /// The link failed (or never came up): every request still waiting is
    /// answered, every consumer over it is told it is gone, and the peer
    /// is down for a backoff.
    fn lost(&self, shard: &Shard, why: &LinkError, config: &LinkConfig) {
        let limits = config.limits;
        let backoff = (self.backoff.get() * 2).clamp(limits.backoff_min, limits.backoff_max);
        self.backoff.set(backoff);
        self.retry_at.set(Some(Instant::now() + backoff));
        self.state.set(State::Down);
        self.queued.borrow_mut().clear();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        self.binds.borrow_mut().clear();
        let consumers = std::mem::take(&mut *self.consumers.borrow_mut());
        tracing::warn!(
            node = self.key.node,
            shard = self.key.shard,
            addr = %self.addr,
            error = %why,
            requests = pending.len(),
            consumers = consumers.len(),
            "cluster: data link lost"
        );
        let text = self.unavailable(&why.to_string());
        for ((s, conn, id), n) in pending {
            for _ in 0..n {
                shard.route_reply(
                    ConnRef { shard: s, conn_id: conn },
                    Reply::error(id, ErrorCode::NodeUnavailable, &text),
                );
            }
        }
        for (s, conn, consumer_id) in consumers {
            shard.route_reply(ConnRef { shard: s, conn_id: conn }, Reply::ConsumerGone { consumer_id });
        }
    }
}

/// Answers a request that cannot go out: an error when it is one that is
/// answered; otherwise (an ack, a publish without confirms) it is dropped,
/// as it would be on the link that failed, with a log line.
pub fn refuse(shard: &Shard, from: ConnRef, request_id: u64, req: &Request, code: ErrorCode, why: &str) {
    if answered(req) {
        shard.route_reply(from, Reply::error(request_id, code, why));
    } else {
        tracing::debug!(?code, why, "cluster: a request without an answer was dropped");
    }
}

/// The dialler pings every interval, whatever it sends: the listener
/// answers each, so this side always hears something within its idle
/// timeout (a link that only carries publishes without confirms would
/// otherwise read nothing, and be dropped as dead).
async fn ping(outbox: Rc<Outbox>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        outbox.push(|b| Frame::Ping.encode(b));
    }
}
