//! Logins, for every front end: the check against the shard's copy of the
//! users, and what a refusal leaves behind: a count for
//! `ringmq_auth_failures_total`, and a log line with the peer's address,
//! at most one a second per peer address (`LoginLog`), so that a client
//! guessing passwords cannot flood the log, and one guesser does not hide
//! another.

use super::{bump, Shard};
use crate::auth::{Access, LoginError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Peers remembered at once; past it, entries older than the window are
/// dropped, and if all are recent the refusal goes unlogged (still
/// counted in the metric).
const PEERS_MAX: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// When each peer last had a refused login logged, and how many of its
/// refusals went unlogged since.
#[derive(Default)]
pub struct LoginLog {
    peers: RefCell<HashMap<Option<IpAddr>, (Instant, u64)>>,
}

impl LoginLog {
    /// Whether a refusal from `peer` may be logged now; if so, also how
    /// many of its refusals were skipped since its last line.
    fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Option<u64> {
        let mut peers = self.peers.borrow_mut();
        if let Some((at, skipped)) = peers.get_mut(&peer) {
            if now.duration_since(*at) < WINDOW {
                *skipped += 1;
                return None;
            }
            let n = std::mem::take(skipped);
            *at = now;
            return Some(n);
        }
        if peers.len() >= PEERS_MAX {
            peers.retain(|_, (at, _)| now.duration_since(*at) < WINDOW);
            if peers.len() >= PEERS_MAX {
                return None;
            }
        }
        peers.insert(peer, (now, 0));
        Some(0)
    }
}

/// What a login presents.
pub enum Credential<'a> {
    /// A password (native Hello, AMQP PLAIN, HTTP basic).
    Password(&'a [u8]),
    /// A client certificate the TLS handshake verified (AMQP EXTERNAL).
    Certificate,
}

impl Shard {
    /// Checks a login on `protocol` (`native`, `amqp`, `http`) from `peer`.
    pub fn authenticate(
        &self,
        protocol: &'static str,
        user: &str,
        password: &[u8],
        peer: Option<SocketAddr>,
    ) -> Result<Access, LoginError> {
        self.log_in(protocol, user, Credential::Password(password), peer)
    }

    /// [`Shard::authenticate`] with any credential: a refusal is counted,
    /// and logged (per peer, at most a line a second).
    pub fn log_in(
        &self,
        protocol: &'static str,
        user: &str,
        credential: Credential<'_>,
        peer: Option<SocketAddr>,
    ) -> Result<Access, LoginError> {
        let users = self.users.users.borrow();
        let ip = peer.map(|p| p.ip());
        let r = match credential {
            Credential::Password(p) => users.authenticate(user, p, ip),
            Credential::Certificate => users.authenticate_certificate(user, ip),
        };
        let r = r.map(|u| u.access());
        if r.is_ok() {
            bump(&self.counters.auth_successes, 1);
        }
        if let Err(e) = r {
            bump(&self.counters.auth_failures, 1);
            if let Some(skipped) = self.login_log.admit(ip, Instant::now()) {
                let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
                // The user name as sent, clipped: it is the peer's text.
                let user: String = user.chars().take(64).collect();
                tracing::warn!(protocol, %peer, user, skipped, "login refused: {e}");
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::*;

    #[test]
    fn one_line_a_second_per_peer_and_a_bounded_table() {
        let log = LoginLog::default();
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(log.admit(a, t0), Some(0));
        assert_eq!(log.admit(a, t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit(a, t0 + Duration::from_millis(20)), None);
        // Another peer is not hidden by the first.
        assert_eq!(log.admit(b, t0 + Duration::from_millis(30)), Some(0));
        // A second later the first peer's next line says what was skipped.
        assert_eq!(log.admit(a, t0 + Duration::from_millis(1010)), Some(2));
        // The table stays bounded: full of recent peers, a new one is not
        // remembered (nor logged); once they are old, it is.
        for i in 0..PEERS_MAX {
            log.admit(Some(IpAddr::from((i as u32 + 1_000).to_be_bytes())), t0 + Duration::from_millis(1500));
        }
        assert!(log.peers.borrow().len() <= PEERS_MAX);
        let c = Some(IpAddr::from([192, 0, 2, 1]));
        assert_eq!(log.admit(c, t0 + Duration::from_millis(1600)), None);
        assert_eq!(log.admit(c, t0 + Duration::from_millis(2600)), Some(0));
        assert!(log.peers.borrow().len() <= PEERS_MAX);
    }
}
