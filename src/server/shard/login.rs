//! Logins, for every front end: the check against the shard's copy of the
//! users, and what a refusal leaves behind (a count for
//! `ringmq_auth_failures_total`, a log line with the peer's address under
//! the unauthenticated log budget).

use super::{bump, Shard};
use crate::auth::{LoginError, User};
use std::net::SocketAddr;

impl Shard {
    /// Checks a login on `protocol` (`native`, `amqp`, `http`) from `peer`.
    pub fn authenticate(
        &self,
        protocol: &'static str,
        user: &str,
        password: &[u8],
        peer: Option<SocketAddr>,
    ) -> Result<&User, LoginError> {
        let r = self.users.authenticate(user, password, peer.map(|p| p.ip()));
        if let Err(e) = r {
            bump(&self.counters.auth_failures, 1);
            if self.conns.may_log_unauthenticated() {
                let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
                // The user name as sent, clipped: it is the peer's text.
                let user: String = user.chars().take(64).collect();
                tracing::warn!(protocol, %peer, user, "login refused: {e}");
            }
        }
        r
    }
}
