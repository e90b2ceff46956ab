//! The listening side of data links: each shard accepts its peers' links
//! on its own port and handles what arrives as requests from connections
//! on another shard (`ConnRef { shard: slot, conn_id }`, the slot naming
//! the dialling node's shard). Replies for those connections, from any
//! shard here, come to this shard (`Shard::route_reply`) and go back over
//! a link from that node.
//!
//! The peer must prove the cluster secret (the Raft link's handshake, TLS
//! first when the link has it), be a member (a node that is only joining
//! or that this node does not know is refused), and send only requests. A
//! routing change (`Meta`) is refused: each node proposes its own. When
//! the link ends, every connection it carried loses its consumers and
//! exclusive queues here, as a closed connection does.

use super::super::shard::Shard;
use super::super::types::{ConnRef, Reply, Request};
use super::wire::{self, DataMsg, EncodeError};
use super::{Dir, SlotKey};
use crate::cluster::link::{handshake::Frames, incoming, LinkConfig, LinkError};
use crate::cluster::NodeId;
use crate::protocol::link::CloseCode;
use crate::rt::{Outbox, Transport};
use futures_lite::io::ReadHalf;
use glommio::net::{TcpListener, TcpStream};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Connections one link may speak for: past it the link is dropped.
pub const CONNS_PER_LINK_MAX: usize = 1 << 16;
/// Queues one remote connection is remembered for (to release them when
/// the link ends): past it the link is dropped.
pub const QUEUES_PER_CONN_MAX: usize = 4096;

/// One accepted link.
pub struct Incoming {
    pub node: NodeId,
    /// The dialling shard, from its first request (every request on a
    /// link is from a connection on the shard that dialled it).
    dialler: Cell<Option<u16>>,
    /// A newer link from the same shard replaced it.
    superseded: Cell<bool>,
    outbox: Rc<Outbox>,
    frame_bytes_max: usize,
    /// Each remote connection's slot and the queues it subscribed to, got
    /// from, or declared exclusive over this link.
    conns: RefCell<HashMap<(u16, u64), Vec<String>>>,
}

impl Incoming {
    /// Sends a reply to connection (`shard`, `conn`) of the dialling node.
    /// A delivery too large for one frame goes as several.
    pub fn reply(&self, shard: u16, conn: u64, reply: Reply) {
        let msg = DataMsg::Reply { shard, conn, reply };
        let mut encoded = Ok(());
        self.outbox.push(|b| encoded = wire::encode(&msg, b, self.frame_bytes_max));
        match encoded {
            Ok(()) => {}
            Err(EncodeError::TooLarge { .. }) => {
                let DataMsg::Reply { reply, .. } = msg else { return };
                self.split(shard, conn, reply);
            }
            Err(EncodeError::Serialize(e)) => tracing::error!(error = %e, "cluster: a reply did not encode (bug)"),
        }
    }

    fn split(&self, shard: u16, conn: u64, reply: Reply) {
        match reply {
            Reply::Deliver { owner, consumer_id, first_tag, mut msgs } if msgs.len() > 1 => {
                let rest = msgs.split_off(msgs.len() / 2);
                let n = msgs.len() as u64;
                self.reply(shard, conn, Reply::Deliver { owner, consumer_id, first_tag, msgs });
                self.reply(shard, conn, Reply::Deliver { owner, consumer_id, first_tag: first_tag + n, msgs: rest });
            }
            // One message past the link's frame limit (64 MiB by default,
            // above any message a front end takes).
            other => tracing::error!(?other, "cluster: a reply is past the link's frame limit; dropped"),
        }
    }
}

/// Accepts data links on `listener` for the shard's life.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    let handshaking = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cluster data listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(config) = shard.remote.shared.link() else {
            tracing::debug!("cluster data listener: not in a cluster yet; closing");
            continue;
        };
        if handshaking.get() >= config.limits.handshakes_max {
            tracing::warn!(max = config.limits.handshakes_max, "cluster data listener: too many handshakes; closing");
            continue;
        }
        let (sh, hs) = (shard.clone(), handshaking.clone());
        glommio::spawn_local(async move { connection(sh, stream, config, hs).await }).detach();
    }
}

async fn connection(shard: Rc<Shard>, stream: TcpStream, config: LinkConfig, handshaking: Rc<Cell<usize>>) {
    let addr = stream.peer_addr().ok();
    let Some((mut r, mut frames, mut w, peer)) = incoming::accept_peer(stream, addr, &config, &handshaking).await
    else {
        return;
    };
    if peer.joining || !shard.remote.placement.borrow().has_node(peer.node_id) {
        let why = format!("node {} ({}) is not a member of this cluster", peer.node_id, peer.node_name);
        tracing::warn!(?addr, "cluster data link: {why}");
        crate::cluster::link::handshake::send_close(&mut w, CloseCode::NotMember, &why).await;
        return;
    }
    let outbox = Rc::new(Outbox::default());
    outbox.set_send_timeout(config.limits.send_timeout);
    let o = outbox.clone();
    let writer = glommio::spawn_local(async move { o.write_loop(w).await });
    let link = Rc::new(Incoming {
        node: peer.node_id,
        dialler: Cell::new(None),
        superseded: Cell::new(false),
        outbox: outbox.clone(),
        frame_bytes_max: config.limits.frame_bytes_max,
        conns: RefCell::default(),
    });
    tracing::debug!(?addr, node = peer.node_id, "cluster: data link accepted");
    let ended = async {
        outbox.wait_ended().await;
        LinkError::Lost
    };
    let why = futures_lite::future::or(read(&shard, &link, &mut r, &mut frames, &config), ended).await;
    tracing::info!(?addr, node = peer.node_id, reason = %why, "cluster: data link ended");
    if let Some(d) = link.dialler.get() {
        let mut incoming = shard.remote.incoming.borrow_mut();
        if let Some(links) = incoming.get_mut(&(peer.node_id, d)) {
            links.retain(|l| !Rc::ptr_eq(l, &link));
            if links.is_empty() {
                incoming.remove(&(peer.node_id, d));
            }
        }
    }
    release(&shard, &link);
    crate::cluster::link::close_and_flush(&outbox, writer, &why).await;
}

async fn read(
    shard: &Shard,
    link: &Rc<Incoming>,
    r: &mut ReadHalf<Transport>,
    frames: &mut Frames,
    config: &LinkConfig,
) -> LinkError {
    let limits = config.limits;
    loop {
        // Back pressure: replies the dialler does not read stop this side
        // reading its requests.
        link.outbox.wait_pending_below(limits.outbox_bytes_max).await;
        shard.wait_for_space().await;
        // A link that always has bytes never makes this task wait: without
        // a turn for the shard's other tasks, a flood from another node
        // kept the queue's consumers, this link's writer (the owner's
        // PublishPaused to the flooding node) and the Raft links from
        // running for seconds, and the peers took this node for dead.
        glommio::yield_if_needed().await;
        let msg = match super::next_message(r, frames, limits.idle_timeout, Some(&link.outbox)).await {
            Ok(m) => m,
            Err(e) => return e,
        };
        match msg {
            Ok(DataMsg::Request { shard: from_shard, conn, request_id, req }) => {
                if let Err(why) = on_request(shard, link, (from_shard, conn), request_id, req) {
                    return LinkError::refuse(CloseCode::UnexpectedFrame, why);
                }
            }
            Ok(DataMsg::Reply { .. }) => {
                return LinkError::refuse(CloseCode::UnexpectedFrame, "a reply from the dialling side")
            }
            Err(e) => return LinkError::refuse(CloseCode::UnexpectedFrame, format!("undecodable data: {e}")),
        }
    }
}

/// One request from connection `(shard, conn)` of the dialling node,
/// handled here as one from another shard. `Err`: the link breaks.
fn on_request(
    shard: &Shard,
    link: &Rc<Incoming>,
    (s, conn): (u16, u64),
    request_id: u64,
    req: Request,
) -> Result<(), String> {
    match link.dialler.get() {
        _ if super::is_remote(s) => return Err(format!("a connection on shard {s}")),
        Some(d) if d != s => return Err(format!("a connection on shard {s} over shard {d}'s link")),
        Some(_) if link.superseded.get() => return Err("a request on a link its dialler replaced".into()),
        Some(_) => {}
        None => {
            link.dialler.set(Some(s));
            // The dialler opens a new link only once it gave the old one
            // up (its consumers were told they are gone): the old link's
            // connections are released now, before this link's requests,
            // so that the old link's end, whenever it is noticed here,
            // does not take the connections' new consumers with it.
            let stale: Vec<Rc<Incoming>> = {
                let mut incoming = shard.remote.incoming.borrow_mut();
                let links = incoming.entry((link.node, s)).or_default();
                let stale = std::mem::take(links);
                links.push(link.clone());
                stale
            };
            for old in stale {
                old.superseded.set(true);
                release(shard, &old);
            }
        }
    }
    let key = SlotKey { node: link.node, shard: s, home: shard.id, dir: Dir::In };
    let slot = shard.remote.shared.slot(key).ok_or("no slot left for the peer's connections")?;
    let from = ConnRef { shard: slot, conn_id: conn };
    let req = match req {
        Request::Meta { .. } => return Err("a routing change over a data link".into()),
        // The connection whose consumers the acks name (the request
        // itself may come from a fan-in on the same shard), seen from here.
        Request::TxPart { conn: c, publishes, acks } if c.shard == s => {
            Request::TxPart { conn: ConnRef { shard: slot, conn_id: c.conn_id }, publishes, acks }
        }
        Request::TxPart { .. } => return Err("a transaction part for another connection".into()),
        req => req,
    };
    remember(link, (s, conn), &req)?;
    shard.remote.served.set(shard.remote.served.get() + 1);
    shard.handle(from, request_id, req);
    Ok(())
}

/// Notes the queues a remote connection holds something on (consumers,
/// unacked gets, an exclusive queue), to release them if the link ends.
fn remember(link: &Incoming, c: (u16, u64), req: &Request) -> Result<(), String> {
    let queue = match req {
        Request::Subscribe { queue, .. } | Request::Get { queue, .. } => queue,
        Request::Declare { queue, exclusive: true, .. } => queue,
        Request::ConnClosed { .. } => {
            link.conns.borrow_mut().remove(&c);
            return Ok(());
        }
        _ => return Ok(()),
    };
    let mut conns = link.conns.borrow_mut();
    if !conns.contains_key(&c) && conns.len() >= CONNS_PER_LINK_MAX {
        return Err(format!("more than {CONNS_PER_LINK_MAX} connections over one link"));
    }
    let qs = conns.entry(c).or_default();
    if !qs.contains(queue) {
        if qs.len() >= QUEUES_PER_CONN_MAX {
            return Err(format!("a connection holding more than {QUEUES_PER_CONN_MAX} queues"));
        }
        qs.push(queue.clone());
    }
    Ok(())
}

/// The link ended: each connection it carried is closed here.
fn release(shard: &Shard, link: &Incoming) {
    let conns = std::mem::take(&mut *link.conns.borrow_mut());
    for ((s, conn), queues) in conns {
        let key = SlotKey { node: link.node, shard: s, home: shard.id, dir: Dir::In };
        let Some(slot) = shard.remote.shared.slot(key) else { continue };
        shard.handle(ConnRef { shard: slot, conn_id: conn }, 0, Request::ConnClosed { queues });
    }
}
