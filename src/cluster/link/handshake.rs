//! Both sides of the link's handshake, and the reader both sides take
//! frames from.
//!
//! 1. The dialler sends its `Hello` (version, cluster id, node id, name, a
//!    fresh nonce).
//! 2. The listener checks the version, the cluster id and that the id is
//!    not its own, and answers its own `Hello`.
//! 3. The dialler checks the same, and that the listener is the member it
//!    dialled, then proves it knows the secret: `Auth`, the HMAC-SHA256 of
//!    the transcript (both ids and nonces, labelled "dialler").
//! 4. The listener checks that proof (in constant time) and only then
//!    proves itself back (labelled "listener"); the dialler checks it.
//!
//! Until step 4 a listener holds one [`HELLO_FRAME_BYTES_MAX`] frame and a
//! [`HANDSHAKE_READ_BYTES`] read buffer; a failed check is a `Close` with
//! its code and a log line. The dialler sends no RPC to a listener that
//! has not proved itself.

use super::{LinkConfig, LinkError};
use crate::protocol::link::{
    self, auth_transcript, CloseCode, Decoded, Frame, Hello, Role, HELLO_FRAME_BYTES_MAX, NONCE_BYTES, PROOF_BYTES,
    VERSION,
};
use crate::rt::reader::{Clock, FrameReader, Link, HANDSHAKE_READ_BYTES};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// The peer's `Hello`, owned (its name is at most 255 bytes).
#[derive(Debug, Clone)]
pub struct PeerHello {
    pub node_id: u64,
    /// The peer's cluster id: this member's own, or (`joining`) none yet,
    /// or (when this member is the one joining) the cluster it joins.
    pub cluster_id: [u8; 16],
    /// The peer has no cluster yet: it may only ask to join.
    pub joining: bool,
    pub node_name: String,
    nonce: [u8; NONCE_BYTES],
}

fn mac(secret: &[u8], role: Role, dialler: &Hello<'_>, listener: &Hello<'_>) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC keys any length"));
    m.update(&auth_transcript(role, dialler, listener));
    m
}

/// The proof `role` sends.
pub fn proof(secret: &[u8], role: Role, dialler: &Hello<'_>, listener: &Hello<'_>) -> [u8; PROOF_BYTES] {
    mac(secret, role, dialler, listener).finalize().into_bytes().into()
}

/// Whether `proof` is what `role` must send; compared in constant time.
pub fn verify(secret: &[u8], role: Role, dialler: &Hello<'_>, listener: &Hello<'_>, proof: &[u8]) -> bool {
    mac(secret, role, dialler, listener).verify_slice(proof).is_ok()
}

/// A link's frames one at a time, over the shared frame reader: the size
/// limit is checked from each header before its body is read, and the
/// buffer grows only with bytes that arrived.
pub struct Frames {
    reader: FrameReader<Link>,
    /// Whole frames read and not yet taken, from `used` on.
    chunk: Bytes,
    used: usize,
}

impl Frames {
    /// Before authentication: one `Hello` at most, small reads.
    pub fn handshake() -> Self {
        Self { reader: FrameReader::new(HELLO_FRAME_BYTES_MAX, HANDSHAKE_READ_BYTES), chunk: Bytes::new(), used: 0 }
    }

    /// Once the peer has proved itself.
    pub fn authenticated(&mut self, frame_bytes_max: usize, read_bytes: usize) {
        self.reader.set_limits(frame_bytes_max, read_bytes);
    }

    pub fn clock(&self) -> Clock {
        self.reader.clock()
    }

    /// The next frame, reading as needed; `deadline` as for
    /// [`FrameReader::fill`]. After an error (a timeout) it may be called
    /// again: nothing read is lost.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        deadline: impl Fn(&Clock) -> Option<Instant>,
    ) -> Result<Frame<'_>, LinkError> {
        let max = self.reader.frame_bytes_max();
        loop {
            if let Some(n) =
                link::peek_len(&self.chunk[self.used..], max).map_err(crate::rt::reader::ReadError::Decode)?
            {
                if self.chunk.len() - self.used >= n {
                    break;
                }
            }
            if !self.chunk.is_empty() {
                self.reader.keep(&self.chunk, self.used);
                (self.chunk, self.used) = (Bytes::new(), 0);
            }
            self.chunk = self.reader.fill(r, &deadline).await?;
        }
        let Self { chunk, used, .. } = self;
        let rest = &chunk[*used..];
        match link::decode(rest, max).map_err(crate::rt::reader::ReadError::Decode)? {
            Decoded::Frame(f, n) => {
                *used += n;
                Ok(f)
            }
            // `peek_len` said the whole frame is there.
            Decoded::Incomplete => {
                Err(LinkError::Read(crate::rt::reader::ReadError::Truncated { buffered: rest.len() }))
            }
        }
    }
}

/// Writes one frame at once (before a connection has its outbox).
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame<'_>) -> Result<(), LinkError> {
    let mut b = BytesMut::with_capacity(f.encoded_len());
    f.encode(&mut b);
    w.write_all(&b).await?;
    w.flush().await?;
    Ok(())
}

/// Best effort: tells the peer why the link ends (within a second: a
/// peer that does not read is not waited for).
pub async fn send_close<W: AsyncWrite + Unpin>(w: &mut W, code: CloseCode, reason: &str) {
    let close = Frame::Close { code: code.as_u16(), reason };
    let sent = glommio::timer::timeout(Duration::from_secs(1), async { Ok(send(w, &close).await) }).await;
    if let Ok(Err(e)) = sent {
        tracing::debug!(error = %e, "could not send Close");
    }
}

fn fresh_nonce() -> [u8; NONCE_BYTES] {
    use rand::RngCore;
    let mut n = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn own_hello<'a>(config: &'a LinkConfig, nonce: [u8; NONCE_BYTES]) -> Hello<'a> {
    Hello {
        version: VERSION,
        cluster_id: config.cluster_id,
        node_id: config.node_id,
        node_name: config.node_name(),
        nonce,
    }
}

/// The checks both sides make of the other's `Hello`.
fn check_hello(config: &LinkConfig, frame: Frame<'_>) -> Result<PeerHello, LinkError> {
    let h = match frame {
        Frame::Hello(h) => h,
        Frame::Close { code, reason } => return Err(LinkError::Closed { code, reason: reason.into() }),
        other => return Err(LinkError::refuse(CloseCode::UnexpectedFrame, format!("{} before Hello", other.name()))),
    };
    if h.version != VERSION {
        let why = format!("link version {} (this node speaks {VERSION})", h.version);
        return Err(LinkError::refuse(CloseCode::VersionUnsupported, why));
    }
    // A node with no cluster yet (all zeros) may talk to any cluster, to
    // ask to join it; its proof still needs the secret.
    let joining = h.cluster_id == NO_CLUSTER;
    let mine_unset = config.cluster_id == NO_CLUSTER;
    if h.cluster_id != config.cluster_id && !joining && !mine_unset {
        return Err(LinkError::refuse(CloseCode::WrongCluster, format!("node {} is in another cluster", h.node_name)));
    }
    if joining && mine_unset {
        return Err(LinkError::refuse(CloseCode::WrongCluster, "neither side is in a cluster"));
    }
    if h.node_id == config.node_id {
        return Err(LinkError::refuse(CloseCode::WrongNode, format!("the peer claims this node's id {}", h.node_id)));
    }
    let (node_id, cluster_id, node_name, nonce) = (h.node_id, h.cluster_id, h.node_name.into(), h.nonce);
    Ok(PeerHello { node_id, cluster_id, joining, node_name, nonce })
}

/// The peer's `Hello` as the transcript reads it (its version and
/// cluster id were checked equal to this side's).
fn peer_view(p: &PeerHello) -> Hello<'_> {
    Hello { version: VERSION, cluster_id: p.cluster_id, node_id: p.node_id, node_name: &p.node_name, nonce: p.nonce }
}

async fn expect_auth<R: AsyncRead + Unpin>(
    r: &mut R,
    frames: &mut Frames,
    deadline: Instant,
) -> Result<[u8; PROOF_BYTES], LinkError> {
    match frames.next(r, |_| Some(deadline)).await? {
        Frame::Auth { proof } => Ok(proof),
        Frame::Close { code, reason } => Err(LinkError::Closed { code, reason: reason.into() }),
        other => Err(LinkError::refuse(CloseCode::UnexpectedFrame, format!("{} before Auth", other.name()))),
    }
}

/// The cluster id of a node that has joined none yet.
pub const NO_CLUSTER: [u8; 16] = [0; 16];

/// The dialler's side, against the member `target` is meant to be (any
/// member, for a node that is joining: `None`).
pub async fn dial<R, W>(
    r: &mut R,
    w: &mut W,
    frames: &mut Frames,
    config: &LinkConfig,
    target: Option<u64>,
    deadline: Instant,
) -> Result<PeerHello, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mine = own_hello(config, fresh_nonce());
    send(w, &Frame::Hello(mine.clone())).await?;
    let frame = frames.next(r, |_| Some(deadline)).await?;
    let peer = check_hello(config, frame)?;
    if let Some(target) = target.filter(|t| *t != peer.node_id) {
        let why = format!("dialled node {target}, reached node {} ({})", peer.node_id, peer.node_name);
        return Err(LinkError::refuse(CloseCode::WrongNode, why));
    }
    let theirs = peer_view(&peer);
    let proof = proof(config.secret(), Role::Dialler, &mine, &theirs);
    send(w, &Frame::Auth { proof }).await?;
    let back = expect_auth(r, frames, deadline).await?;
    if !verify(config.secret(), Role::Listener, &mine, &theirs, &back) {
        let why = format!("node {} ({}) does not know the cluster secret", peer.node_id, peer.node_name);
        return Err(LinkError::refuse(CloseCode::AuthFailed, why));
    }
    Ok(peer)
}

/// The listener's side.
pub async fn accept<R, W>(
    r: &mut R,
    w: &mut W,
    frames: &mut Frames,
    config: &LinkConfig,
    deadline: Instant,
) -> Result<PeerHello, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let frame = frames.next(r, |_| Some(deadline)).await?;
    let peer = check_hello(config, frame)?;
    let mine = own_hello(config, fresh_nonce());
    send(w, &Frame::Hello(mine.clone())).await?;
    let theirs = peer_view(&peer);
    let claimed = expect_auth(r, frames, deadline).await?;
    if !verify(config.secret(), Role::Dialler, &theirs, &mine, &claimed) {
        let why = format!("node {} ({}) does not know the cluster secret", peer.node_id, peer.node_name);
        return Err(LinkError::refuse(CloseCode::AuthFailed, why));
    }
    let proof = proof(config.secret(), Role::Listener, &theirs, &mine);
    send(w, &Frame::Auth { proof }).await?;
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: u64, nonce: u8) -> Hello<'static> {
        Hello { version: VERSION, cluster_id: [1; 16], node_id: id, node_name: "n", nonce: [nonce; NONCE_BYTES] }
    }

    #[test]
    fn a_proof_checks_only_with_the_same_secret_role_and_transcript() {
        let (d, l) = (hello(1, 1), hello(2, 2));
        let secret = b"0123456789abcdef";
        let p = proof(secret, Role::Dialler, &d, &l);
        assert!(verify(secret, Role::Dialler, &d, &l, &p));
        assert!(!verify(b"0123456789abcdeX", Role::Dialler, &d, &l, &p), "another secret");
        assert!(!verify(secret, Role::Listener, &d, &l, &p), "reflected as the listener's");
        assert!(!verify(secret, Role::Dialler, &d, &hello(2, 3), &p), "another connection's nonce");
        assert!(!verify(secret, Role::Dialler, &d, &l, &p[..31]), "a short proof");
    }
}
