//! A node joining a cluster: it knows the secret and a member's address,
//! not the cluster's id. It dials with no cluster id (`NO_CLUSTER`),
//! proves the secret as any member does, learns the cluster id from the
//! member's `Hello`, and may then send one kind of request: `Join`.
//!
//! Two steps, because the member answers a join only once the new node
//! has caught up as a learner, and for that the new node must already
//! run its Raft member (with the cluster id this handshake taught it):
//! [`dial`] learns the id, the caller starts its member, [`Joining::ask`]
//! sends the request and waits.

use super::handshake::{Frames, NO_CLUSTER};
use super::outgoing::{connect, Writer};
use super::{LinkConfig, LinkError};
use crate::cluster::service::{JoinRequest, ServiceError};
use crate::protocol::link::{CloseCode, Frame, RpcKind};
use crate::rt::Transport;
use futures_lite::io::ReadHalf;
use futures_lite::AsyncWriteExt;
use std::time::{Duration, Instant};

/// An authenticated connection to a member of the cluster being joined.
pub struct Joining {
    r: ReadHalf<Transport>,
    w: Writer,
    frames: Frames,
    /// The cluster the member belongs to.
    pub cluster_id: [u8; 16],
    /// The member's name, for the log.
    pub member: String,
}

/// Dials a member at `addr` as a node with no cluster yet. `config`'s
/// cluster id must be `NO_CLUSTER`.
pub async fn dial(config: &LinkConfig, addr: &str) -> Result<Joining, LinkError> {
    debug_assert_eq!(config.cluster_id, NO_CLUSTER);
    let (r, frames, w, hello) = connect(config, addr, None).await?;
    Ok(Joining { r, w, frames, cluster_id: hello.cluster_id, member: hello.node_name })
}

impl Joining {
    /// Asks to join and waits for the answer (the member catches this
    /// node up first, which can take a while: `timeout`).
    pub async fn ask(mut self, req: &JoinRequest, timeout: Duration) -> Result<Result<(), ServiceError>, LinkError> {
        let payload = postcard::to_allocvec(req).map_err(LinkError::Encode)?;
        let mut b = bytes::BytesMut::new();
        Frame::Rpc { id: 1, kind: RpcKind::Join, payload: &payload }.encode(&mut b);
        self.w.write_all(&b).await?;
        self.w.flush().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let frame = self.frames.next(&mut self.r, |_| Some(deadline)).await;
            match frame {
                Ok(Frame::RpcReply { id: 1, payload }) => {
                    return match postcard::take_from_bytes(payload) {
                        Ok((answer, [])) => Ok(answer),
                        _ => Err(LinkError::refuse(CloseCode::BadFrame, "a join reply that does not decode")),
                    };
                }
                Ok(Frame::Ping) => {
                    let mut b = bytes::BytesMut::new();
                    Frame::Pong.encode(&mut b);
                    self.w.write_all(&b).await?;
                }
                Ok(Frame::Pong) => {}
                Ok(Frame::Close { code, reason }) => return Err(LinkError::Closed { code, reason: reason.into() }),
                Ok(other) => {
                    let why = format!("{} while waiting for the join reply", other.name());
                    return Err(LinkError::refuse(CloseCode::UnexpectedFrame, why));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
