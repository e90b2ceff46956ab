//! A native connection's life around its requests: the handshake (login,
//! the move from the unauthenticated cap to `connections_per_shard_max`,
//! heartbeat negotiation), the read deadlines, and the heartbeat task.
//!
//! Deadlines are absolute, never per read, so trickling bytes cannot
//! extend them: the handshake must finish within `handshake_timeout_ms` of
//! accept, a started frame within `frame_timeout_ms` of its first byte,
//! and with heartbeats a peer silent for two intervals is dead.

use super::{clip, frame, refused, Fatal, NativeConn};
use crate::auth::permissions::Perm;
use crate::protocol::{self, Cmd, ErrorCode, HelloOk};
use crate::rt::reader::{Clock, ReadError};
use crate::server::grants::Kind;
use crate::server::shard::conns::EVICTED;
use crate::server::shard::PromoteError;
use std::time::{Duration, Instant};

/// The shortest heartbeat the broker agrees to: a client asking for less
/// gets this, so it cannot make the broker beat in a tight loop.
pub const HEARTBEAT_MIN_MS: u32 = 100;

/// The heartbeat both sides use: none when either side wants none,
/// otherwise the lower of the two wishes (not below the minimum).
pub fn negotiate_heartbeat(client_ms: u32, server_ms: u32) -> u32 {
    if client_ms == 0 || server_ms == 0 {
        0
    } else {
        client_ms.min(server_ms).max(HEARTBEAT_MIN_MS)
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl NativeConn {
    /// When the read now under way must have finished.
    pub(super) fn deadline(&self, clock: &Clock) -> Option<Instant> {
        let c = &self.shard.config;
        if !self.handshaken.get() {
            return Some(self.accepted_at + ms(c.handshake_timeout_ms));
        }
        let frame = clock.frame_started.map(|t| t + ms(c.frame_timeout_ms));
        let hb = self.heartbeat_ms.get();
        let silent = (hb > 0).then(|| clock.last_byte + ms(2 * u64::from(hb)));
        match (frame, silent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn read_failed(&self, e: ReadError, clock: &Clock) -> Result<(), Fatal> {
        match e {
            ReadError::Eof => Ok(()),
            ReadError::Io(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "read failed");
                Ok(())
            }
            ReadError::Truncated { buffered } => Err(Fatal::new(
                ErrorCode::TruncatedFrame,
                format!("peer closed with {buffered} bytes of an unfinished frame"),
            )),
            ReadError::Timeout { .. } => Err(self.timed_out(clock)),
            ReadError::Decode(protocol::DecodeError::TooLarge { len, max }) if !self.handshaken.get() => {
                Err(Fatal::new(
                    ErrorCode::FrameTooLarge,
                    format!("frame of {len} bytes before login exceeds handshake_bytes_max {max}"),
                ))
            }
            ReadError::Decode(e) => Err(Fatal::new(e.code(), e.to_string())),
        }
    }

    /// Which deadline passed.
    fn timed_out(&self, clock: &Clock) -> Fatal {
        let c = &self.shard.config;
        if !self.handshaken.get() {
            let t = c.handshake_timeout_ms;
            return Fatal::new(
                ErrorCode::HandshakeTimeout,
                format!("handshake not done within handshake_timeout_ms = {t}"),
            );
        }
        let frame_due = clock.frame_started.map(|t| t + ms(c.frame_timeout_ms));
        if frame_due.is_some_and(|d| Instant::now() >= d) {
            let t = c.frame_timeout_ms;
            return Fatal::new(
                ErrorCode::FrameTimeout,
                format!("a frame did not arrive whole within frame_timeout_ms = {t} of its first byte"),
            );
        }
        let hb = self.heartbeat_ms.get();
        Fatal::new(ErrorCode::HeartbeatTimeout, format!("nothing received for two heartbeat intervals ({hb} ms each)"))
    }

    pub(super) fn hello(
        &self,
        rid: u64,
        version: u16,
        (user, password): (&str, &str),
        heartbeat_ms: Option<u32>,
        vhost: Option<&str>,
    ) -> Result<(), Fatal> {
        if version != protocol::VERSION {
            return Err(Fatal::new(
                ErrorCode::VersionUnsupported,
                format!("protocol version {version} is not supported; this broker speaks {}", protocol::VERSION),
            ));
        }
        let c = &self.shard.config;
        let peer = self.peer.parse::<std::net::SocketAddr>().ok();
        match self.shard.authenticate("native", user, password.as_bytes(), peer) {
            Ok(access) => {
                self.access.set(access);
                let vhost = vhost.unwrap_or(crate::auth::vhosts::DEFAULT_VHOST);
                if !self.shard.has_vhost(vhost) {
                    return Err(Fatal::new(ErrorCode::VhostNotFound, format!("no vhost '{}'", clip(vhost))));
                }
                *self.grants.borrow_mut() = Some(crate::server::grants::Grants::new(&self.shard, user, vhost));
                if vhost != crate::auth::vhosts::DEFAULT_VHOST {
                    // Unset means `/`: the hot path then never qualifies.
                    let _ = self.vhost.set(vhost.to_string());
                }
            }
            Err(e) => {
                return Err(Fatal::new(ErrorCode::AuthFailed, format!("login refused for '{}': {e}", clip(user))))
            }
        }
        match self.shard.conns.promote(self.me()) {
            Ok(()) => {}
            Err(PromoteError::ConnectionLimit) => {
                let max = c.connections_per_shard_max;
                return Err(Fatal::new(
                    ErrorCode::ConnectionLimit,
                    format!("connections_per_shard_max = {max} reached"),
                ));
            }
            Err(PromoteError::Evicted) => return Err(Fatal::new(ErrorCode::UnauthenticatedLimit, EVICTED.to_string())),
        }
        self.logged_in.set(true);
        self.handshaken.set(true);
        // Clients that send no heartbeat field get none, and no field back.
        let hb = heartbeat_ms.map(|h| negotiate_heartbeat(h, c.heartbeat_ms));
        self.heartbeat_ms.set(hb.unwrap_or(0));
        let hello = HelloOk {
            version: protocol::VERSION,
            shard_id: self.shard.id,
            hash_id: protocol::HASH_ID,
            frame_bytes_max: c.frame_bytes_max,
            message_bytes_max: c.message_bytes_max,
            prefetch_max: c.prefetch_max,
            shard_addrs: self.shard_addrs().iter().map(String::as_str).collect(),
            heartbeat_ms: hb,
        };
        self.outbox.push(|b| frame(b, rid, Cmd::HelloOk(hello)));
        self.beat_kick.notify();
        tracing::debug!(peer = %self.peer, user, heartbeat_ms = hb.unwrap_or(0), "handshake done");
        Ok(())
    }

    /// Sends a beat (an unsolicited Pong, request id 0: it needs no answer)
    /// every half interval in which nothing else was sent, until the
    /// connection ends.
    pub async fn beat_loop(&self) {
        let mut seen = self.outbox.pushes();
        loop {
            let kick = self.beat_kick.notified();
            if self.outbox.is_closing() {
                return;
            }
            let hb = self.heartbeat_ms.get();
            if hb == 0 {
                kick.await;
                continue;
            }
            // The kick (the connection ended) cuts the wait short.
            futures_lite::future::or(glommio::timer::sleep(ms(u64::from(hb) / 2)), kick).await;
            if self.outbox.is_closing() {
                return;
            }
            if self.outbox.pushes() == seen {
                self.outbox.push(|b| frame(b, 0, Cmd::Pong));
            }
            seen = self.outbox.pushes();
        }
    }
}

/// Permission checks (`server/grants.rs`): refused requests get error 25,
/// and the connection stays open.
impl NativeConn {
    /// The user's permission for `p` on `kind` `name` (RabbitMQ's rules).
    pub(super) fn may(&self, rid: u64, p: Perm, kind: Kind, name: &str) -> Result<(), Fatal> {
        match self.grants.borrow().as_ref() {
            Some(g) => g.check(&self.shard, p, kind, name).map_err(|e| refused(rid, e)),
            None => Err(Fatal::new(ErrorCode::HandshakeRequired, "not logged in")),
        }
    }

    /// Write on the exchange a publish goes to, once per batch.
    #[inline]
    pub(super) fn may_publish(&self, rid: u64, exchange: &str) -> Result<(), Fatal> {
        match self.grants.borrow().as_ref() {
            Some(g) => g.check_publish(&self.shard, exchange).map_err(|e| refused(rid, e)),
            None => Err(Fatal::new(ErrorCode::HandshakeRequired, "not logged in")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_negotiation() {
        assert_eq!(negotiate_heartbeat(0, 60_000), 0);
        assert_eq!(negotiate_heartbeat(5_000, 0), 0);
        assert_eq!(negotiate_heartbeat(5_000, 60_000), 5_000);
        assert_eq!(negotiate_heartbeat(90_000, 60_000), 60_000);
        assert_eq!(negotiate_heartbeat(1, 60_000), HEARTBEAT_MIN_MS);
    }
}
