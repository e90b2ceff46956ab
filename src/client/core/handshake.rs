//! The native handshake, client side, as bytes: [`Greeter::hello`]
//! writes `Hello` and, when the client wants the cluster map
//! (cluster-aware, on its first connection), `MapGet` in the same write:
//! the broker handles frames in order, so it answers `HelloOk` and then
//! `Map`, and the map comes with the handshake at no extra round trip
//! (`docs/protocol.md`, "The cluster map"). [`Greeter::feed`] reads the
//! answers out of whatever arrived. The shell moves the bytes, within its
//! connect timeout.

use super::routes::OwnedMap;
use crate::client::{ClientError, ClientOptions, Result, ServerInfo};
use crate::protocol::frame::{decode, Decoded};
use crate::protocol::{Cmd, Frame};
use bytes::BytesMut;
use std::net::SocketAddr;

/// The largest frame a client accepts from the broker during the
/// handshake (`HelloOk`, the map), before `HelloOk` says the broker's limit.
pub const HANDSHAKE_FRAME_MAX: usize = 1 << 20;

/// The request id of the `MapGet` sent with `Hello` (whose id is 0); a
/// connection numbers its own requests from the next one.
pub const MAP_REQUEST_ID: u64 = 1;

/// One connection's handshake in progress.
pub struct Greeter<'a> {
    opts: &'a ClientOptions,
    addr: SocketAddr,
    want_map: bool,
    info: Option<ServerInfo>,
    map: Option<OwnedMap>,
}

impl<'a> Greeter<'a> {
    /// A handshake with the broker at `addr` (its unspecified shard
    /// addresses become this one's IP); with `want_map`, the cluster map
    /// comes with it.
    pub fn new(opts: &'a ClientOptions, addr: SocketAddr, want_map: bool) -> Self {
        Self { opts, addr, want_map, info: None, map: None }
    }

    /// The first bytes to send.
    pub fn hello(&self, out: &mut BytesMut) {
        Frame { request_id: 0, cmd: self.opts.hello() }.encode(out);
        if self.want_map {
            Frame { request_id: MAP_REQUEST_ID, cmd: Cmd::MapGet }.encode(out);
        }
    }

    /// Whether every answer arrived.
    pub fn is_done(&self) -> bool {
        self.info.is_some() && (!self.want_map || self.map.is_some())
    }

    /// Reads the answers at the front of `buf`; returns the bytes used.
    /// Frames after the handshake's (a beat, `MapChanged`) are left for
    /// the connection's reader.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize> {
        let mut used = 0;
        while !self.is_done() {
            let (f, len) = match decode(&buf[used..], HANDSHAKE_FRAME_MAX) {
                Ok(Decoded::Frame(f, len)) => (f, len),
                Ok(Decoded::Incomplete) => break,
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            };
            used += len;
            match &self.info {
                None => self.info = Some(hello_ok(f, self.addr, self.opts)?),
                Some(i) => self.map = Some(map_reply(f, i)?),
            }
        }
        Ok(used)
    }

    /// What the broker said; an error until [`Greeter::is_done`].
    pub fn finish(self) -> Result<(ServerInfo, Option<OwnedMap>)> {
        if !self.is_done() {
            return Err(ClientError::Protocol("the handshake did not finish".into()));
        }
        let info = self.info.ok_or_else(|| ClientError::Protocol("no handshake reply".into()))?;
        Ok((info, self.map))
    }
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
