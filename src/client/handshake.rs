//! The native handshake, client side. A client sends `Hello` and, when it
//! wants the cluster map (cluster-aware, on its first connection), `MapGet`
//! in the same write: the broker handles frames in order, so it answers
//! `HelloOk` and then `Map`, and the map comes with the handshake at no
//! extra round trip (`docs/protocol.md`, "The cluster map").

use super::cluster::OwnedMap;
use super::conn::read_error;
use super::dial::io_error;
use super::{ClientError, ClientOptions, Result, ServerInfo};
use crate::protocol::frame::{decode, Decoded};
use crate::protocol::{Cmd, Frame};
use crate::rt::reader::{FrameReader, Native, READ_BYTES};
use crate::rt::Transport;
use bytes::BytesMut;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use std::net::SocketAddr;
use std::time::Instant;

/// The largest frame a client accepts from the broker during the
/// handshake (`HelloOk`, the map), before `HelloOk` says the broker's limit.
const HANDSHAKE_FRAME_MAX: usize = 1 << 20;

/// The request id of the `MapGet` sent with `Hello` (whose id is 0); a
/// connection numbers its own requests from the next one.
pub const MAP_REQUEST_ID: u64 = 1;

/// What the handshake gave: who answered, the map if asked for, and the
/// reader holding whatever arrived after them.
pub struct Greeting {
    pub info: ServerInfo,
    pub map: Option<OwnedMap>,
    pub reader: FrameReader<Native>,
}

/// Sends `Hello` (and `MapGet` with `want_map`) and reads the answers,
/// within `opts.connect_timeout` from now.
pub async fn greet(
    r: &mut ReadHalf<Transport>,
    w: &mut WriteHalf<Transport>,
    addr: SocketAddr,
    opts: &ClientOptions,
    want_map: bool,
) -> Result<Greeting> {
    let until = Instant::now() + opts.connect_timeout;
    let mut out = BytesMut::new();
    Frame { request_id: 0, cmd: opts.hello() }.encode(&mut out);
    if want_map {
        Frame { request_id: MAP_REQUEST_ID, cmd: Cmd::MapGet }.encode(&mut out);
    }
    w.write_all(&out).await.map_err(io_error)?;
    // Over TLS the record may wait in the session until flushed.
    w.flush().await.map_err(io_error)?;
    let mut reader = FrameReader::<Native>::new(HANDSHAKE_FRAME_MAX, READ_BYTES);
    let mut info: Option<ServerInfo> = None;
    let mut map = None;
    while info.is_none() || (want_map && map.is_none()) {
        let chunk = reader.fill(r, |_| Some(until)).await.map_err(read_error)?;
        let mut used = 0;
        while info.is_none() || (want_map && map.is_none()) {
            let (f, len) = match decode(&chunk[used..], HANDSHAKE_FRAME_MAX) {
                Ok(Decoded::Frame(f, len)) => (f, len),
                Ok(Decoded::Incomplete) => break,
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            };
            used += len;
            match &info {
                None => info = Some(hello_ok(f, addr, opts)?),
                Some(i) => map = Some(map_reply(f, i)?),
            }
        }
        // Frames after the handshake's (a beat, `MapChanged`) stay for
        // the connection's reader.
        reader.keep(&chunk, used);
    }
    let info = info.ok_or_else(|| ClientError::Protocol("no handshake reply".into()))?;
    reader.set_limits(info.frame_bytes_max as usize, READ_BYTES);
    Ok(Greeting { info, map, reader })
}

fn hello_ok(f: Frame<'_>, addr: SocketAddr, opts: &ClientOptions) -> Result<ServerInfo> {
    match f.cmd {
        Cmd::HelloOk(h) => Ok(ServerInfo { vhost: opts.vhost.clone(), ..ServerInfo::from_hello(&h, addr)? }),
        Cmd::Error { code, message, .. } => Err(ClientError::Server { code, message: message.into() }),
        other => Err(ClientError::Protocol(format!("expected HelloOk, got {}", other.name()))),
    }
}

fn map_reply(f: Frame<'_>, info: &ServerInfo) -> Result<OwnedMap> {
    match f.cmd {
        Cmd::Map(m) if f.request_id == MAP_REQUEST_ID => OwnedMap::from_wire(&m, info),
        Cmd::Error { code, message, .. } => Err(ClientError::Server { code, message: message.into() }),
        other => Err(ClientError::Protocol(format!("expected the cluster map, got {}", other.name()))),
    }
}
