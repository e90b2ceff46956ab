//! The listening side: accepts peers, runs the handshake under a deadline
//! and a small budget, then hands their RPCs to the local `Raft` and
//! writes the replies through the connection's outbox.
//!
//! Each RPC is answered in a task of its own (a snapshot chunk must not
//! hold up heartbeats), at most `rpcs_in_flight_max` at once per
//! connection: past that the connection is not read until one is
//! answered, so a peer's pipelining costs bounded memory. A request that
//! speaks for another member than the one authenticated, a payload that
//! does not decode, or any frame out of place closes the connection with
//! a log line.

use super::handshake::{self, Frames, PeerHello};
use super::rpc::Request;
use super::{LinkConfig, LinkError, Links};
use crate::cluster::{Apply, MetaRaft};
use crate::protocol::link::{CloseCode, Frame, RpcKind};
use crate::rt::reader::{Clock, ReadError, READ_BYTES};
use crate::rt::{Notify, Outbox, Transport};
use futures_lite::io::{split, ReadHalf};
use glommio::net::{TcpListener, TcpStream};
use openraft::Raft;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Accepts peers on `listener` and serves them, until the task is
/// dropped (with the member's executor).
pub async fn serve<A: Apply>(listener: TcpListener, raft: Raft<MetaRaft<A>>, links: Links) {
    let config = Rc::new(links.config().clone());
    let handshaking = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "cluster listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let addr = stream.peer_addr().ok();
        if handshaking.get() >= config.limits.handshakes_max {
            tracing::warn!(
                ?addr,
                max = config.limits.handshakes_max,
                "cluster listener: too many handshakes at once; closing"
            );
            drop(stream);
            continue;
        }
        let (raft, links, config, handshaking) = (raft.clone(), links.clone(), config.clone(), handshaking.clone());
        glommio::spawn_local(async move { connection(stream, addr, raft, links, config, handshaking).await }).detach();
    }
}

async fn connection<A: Apply>(
    stream: TcpStream,
    addr: Option<SocketAddr>,
    raft: Raft<MetaRaft<A>>,
    links: Links,
    config: Rc<LinkConfig>,
    handshaking: Rc<Cell<usize>>,
) {
    let limits = config.limits;
    let Some((mut r, mut frames, w, peer)) = accept_peer(stream, addr, &config, &handshaking).await else { return };
    tracing::info!(?addr, peer = peer.node_id, name = %peer.node_name, "cluster link: peer authenticated");
    let outbox = Rc::new(Outbox::default());
    outbox.set_send_timeout(limits.send_timeout);
    let o = outbox.clone();
    let writer = glommio::spawn_local(async move { o.write_loop(w).await });
    let served =
        Served { peer: &peer, raft: &raft, links: &links, config: &config, outbox: &outbox, in_flight: Rc::default() };
    let ended = async {
        outbox.wait_ended().await;
        if outbox.is_stalled() {
            LinkError::Backlog(outbox.pending_bytes())
        } else {
            LinkError::Lost
        }
    };
    let why = futures_lite::future::or(served.read(&mut r, &mut frames), ended).await;
    match &why {
        LinkError::Closed { .. } | LinkError::Read(ReadError::Eof) => {
            tracing::info!(?addr, peer = peer.node_id, reason = %why, "cluster link: peer left");
        }
        _ => tracing::warn!(?addr, peer = peer.node_id, error = %why, "cluster link: dropping the peer's connection"),
    }
    super::close_and_flush(&outbox, writer, &why).await;
}

/// An accepted connection's TLS (when the link has it) and handshake,
/// within `handshake_timeout` and counted in `handshaking` meanwhile:
/// the authenticated peer and its halves, or `None` (logged, and the
/// peer told why when it can be).
pub(crate) async fn accept_peer(
    stream: TcpStream,
    addr: Option<SocketAddr>,
    config: &LinkConfig,
    handshaking: &Cell<usize>,
) -> Option<(ReadHalf<Transport>, Frames, super::outgoing::Writer, PeerHello)> {
    let limits = config.limits;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(?addr, error = %e, "cluster link: set_nodelay");
    }
    handshaking.set(handshaking.get() + 1);
    let deadline = Instant::now() + limits.handshake_timeout;
    // TLS first, then the link's own handshake, both within one deadline.
    let stream = match &config.tls {
        None => Ok(Transport::Plain(stream)),
        Some(tls) => {
            let accepting = (tls.acceptor)().accept(stream);
            match glommio::timer::timeout(limits.handshake_timeout, async { Ok(accepting.await) }).await {
                Ok(Ok(s)) => Ok(Transport::ServerTls(Box::new(s))),
                Ok(Err(e)) => Err(LinkError::Tls(e.to_string())),
                Err(_) => Err(LinkError::HandshakeTimeout(limits.handshake_timeout)),
            }
        }
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            handshaking.set(handshaking.get() - 1);
            tracing::warn!(?addr, error = %e, "cluster link: TLS handshake refused");
            return None;
        }
    };
    let (mut r, mut w) = split(stream);
    let mut frames = Frames::handshake();
    let left = deadline.saturating_duration_since(Instant::now());
    let shake = handshake::accept(&mut r, &mut w, &mut frames, config, deadline);
    let res = match glommio::timer::timeout(left, async { Ok(shake.await) }).await {
        Ok(Err(LinkError::Read(ReadError::Timeout { .. }))) | Err(_) => {
            Err(LinkError::HandshakeTimeout(limits.handshake_timeout))
        }
        Ok(res) => res,
    };
    handshaking.set(handshaking.get() - 1);
    match res {
        Ok(peer) => {
            frames.authenticated(limits.frame_bytes_max, READ_BYTES);
            Some((r, frames, w, peer))
        }
        Err(e) => {
            tracing::warn!(?addr, error = %e, "cluster link: handshake refused");
            if let Some(code) = e.close_code() {
                handshake::send_close(&mut w, code, &e.to_string()).await;
            }
            None
        }
    }
}

/// Answers in flight on one connection, and the signal that one finished.
#[derive(Default)]
struct InFlight {
    count: Cell<usize>,
    done: Notify,
}

struct Served<'a, A: Apply> {
    peer: &'a PeerHello,
    raft: &'a Raft<MetaRaft<A>>,
    links: &'a Links,
    config: &'a LinkConfig,
    outbox: &'a Rc<Outbox>,
    in_flight: Rc<InFlight>,
}

impl<A: Apply> Served<'_, A> {
    async fn read(&self, r: &mut ReadHalf<Transport>, frames: &mut Frames) -> LinkError {
        let limits = self.config.limits;
        loop {
            // Back pressure: a full window, or replies the peer does not
            // read, stop this side reading; the time waited is not the
            // peer's idleness.
            while self.in_flight.count.get() >= limits.rpcs_in_flight_max {
                self.in_flight.done.notified().await;
            }
            self.outbox.wait_pending_below(limits.outbox_bytes_max).await;
            let resumed = Instant::now();
            let deadline = move |c: &Clock| {
                let idle = c.last_byte.max(resumed) + limits.idle_timeout;
                Some(c.frame_started.map_or(idle, |s| idle.min(s + limits.frame_timeout)))
            };
            match frames.next(r, deadline).await {
                Ok(Frame::Rpc { id, kind, payload }) => {
                    if self.peer.joining && kind != RpcKind::Join {
                        let why = format!("a {} request from a node that is only joining", kind.name());
                        return LinkError::refuse(CloseCode::UnexpectedFrame, why);
                    }
                    let req = match Request::<A>::decode(kind, payload) {
                        Ok(req) => req,
                        Err(e) => return e,
                    };
                    if kind == RpcKind::Vote && !self.may_vote() {
                        let why = format!("node {} is not a member of this cluster", self.peer.node_id);
                        return LinkError::refuse(CloseCode::NotMember, why);
                    }
                    if kind.is_raft() && req.sender() != Some(self.peer.node_id) {
                        let why = format!(
                            "a {} request for node {:?} from node {}",
                            kind.name(),
                            req.sender(),
                            self.peer.node_id
                        );
                        return LinkError::refuse(CloseCode::WrongNode, why);
                    }
                    self.spawn_answer(id, req);
                }
                Ok(Frame::Ping) => self.outbox.push(|b| Frame::Pong.encode(b)),
                Ok(Frame::Pong) => {}
                Ok(Frame::Close { code, reason }) => return LinkError::Closed { code, reason: reason.into() },
                Ok(other) => {
                    let why = format!("{} after the handshake", other.name());
                    return LinkError::refuse(CloseCode::UnexpectedFrame, why);
                }
                Err(e) => return e,
            }
        }
    }

    /// Whether the peer may ask for votes here: a member of the group as
    /// this member knows it. A forgotten node that still thinks itself a
    /// member must not disrupt elections (its vote requests carry ever
    /// higher terms). A member that knows no membership yet (it is
    /// joining) takes any.
    fn may_vote(&self) -> bool {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        membership.nodes().next().is_none() || membership.get_node(&self.peer.node_id).is_some()
    }

    fn spawn_answer(&self, id: u64, req: Request<A>) {
        let (raft, outbox, in_flight) = (self.raft.clone(), self.outbox.clone(), self.in_flight.clone());
        let links = self.links.clone();
        let peer = self.peer.node_id;
        in_flight.count.set(in_flight.count.get() + 1);
        glommio::spawn_local(async move {
            match req.answer(&raft, &links).await {
                // Pushed after the link closed, it goes nowhere: the
                // dialler has already failed the RPC.
                Ok(reply) => outbox.push(|b| Frame::RpcReply { id, payload: &reply }.encode(b)),
                Err(e) => {
                    tracing::error!(peer, id, error = %e, "cluster link: cannot encode a reply; closing");
                    outbox.abort();
                }
            }
            in_flight.count.set(in_flight.count.get() - 1);
            in_flight.done.notify();
        })
        .detach();
    }
}
