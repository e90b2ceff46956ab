//! One recovery's rounds of redials, as both async shells (glommio,
//! tokio) run them (docs/client-recovery.md, "Recovery", "Failover"): where each
//! connection that is down is dialled, whether a redialled socket may
//! stand in for the one lost, what becomes of a round that left some
//! connections down, and the declarations made again. The shells dial,
//! sleep and spawn; what they decide is decided here, once.

use super::recovery::{failover_target, Backoff, Event, Recovery, FAILOVER_AFTER};
use super::topology::Record;
use crate::client::{ClientError, Result, ServerInfo};
use crate::protocol::Cmd;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What a shell does once a round of redials is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRound {
    /// Every connection is back: recovery is over.
    Done,
    /// Another round after `wait`. `or_lost`: the first connection is up,
    /// so only other nodes' shards are left, and a connection lost
    /// meanwhile may cut the wait short (it need not wait for them).
    Wait {
        /// How long to wait before the next round.
        wait: Duration,
        /// A connection lost meanwhile may end the wait early.
        or_lost: bool,
    },
    /// `attempts_max` rounds failed with the first connection up: the
    /// connections still down end with this error (their consumers and
    /// producers hear it); the client goes on.
    EndStillDown(ClientError),
    /// `attempts_max` rounds failed with the first connection down: the
    /// whole client ends with this error (`Event::GaveUp`).
    GiveUp(ClientError),
}

/// The rounds of one recovery: the backoff between them and, for the
/// first connection, where it fails over to.
#[derive(Debug)]
pub struct Rounds {
    backoff: Backoff,
    /// The node of the cluster map the first connection tried last.
    cursor: Option<usize>,
}

impl Rounds {
    /// Rounds under `r`, the jitter seeded from the clock.
    pub fn new(r: &Recovery) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        Self { backoff: Backoff::new(r, seed), cursor: None }
    }

    /// Where a connection down is dialled this round: `None`, its own
    /// shard; for the `first` connection, once [`FAILOVER_AFTER`] rounds
    /// failed, the next node of `nodes` (the last cluster map's, each
    /// node's shards' addresses) in turn, at the shard numbered as the one
    /// it reaches now (`at`, the current socket's handshake).
    pub fn target(&mut self, first: bool, nodes: &[Vec<SocketAddr>], at: &ServerInfo) -> Option<SocketAddr> {
        if !first || self.backoff.attempts() < FAILOVER_AFTER {
            return None;
        }
        failover_target(nodes, &at.shard_addrs, at.shard_id, &mut self.cursor)
    }

    /// The event for a connection back at `addr` in this round.
    pub fn reconnected(&self, addr: SocketAddr) -> Event {
        Event::Reconnected { addr, attempt: self.backoff.attempts() + 1 }
    }

    /// The round is over: `first_up`, whether the first connection is up
    /// (or back); `left`, whether any connection is still down or waits
    /// for the first one to replay through; `last_error`, the last
    /// redial's failure.
    pub fn after(&mut self, first_up: bool, left: bool, last_error: Option<ClientError>) -> AfterRound {
        if !left {
            return AfterRound::Done;
        }
        let error = last_error.unwrap_or_else(|| ClientError::Closed("the connection ended".into()));
        match self.backoff.failed() {
            Some(wait) => AfterRound::Wait { wait, or_lost: first_up },
            None if first_up => {
                AfterRound::EndStillDown(ClientError::Closed(format!("recovery gave up on this connection: {error}")))
            }
            None => AfterRound::GiveUp(ClientError::Closed(format!("recovery gave up: {error}"))),
        }
    }
}

/// The address a connection down is redialled at: `to` (a failover), or
/// its shard's own address on the node it reached last (the shared port
/// may reach another shard), or, with no such address, `addr`.
pub fn redial_addr(to: Option<SocketAddr>, was: &ServerInfo, addr: SocketAddr) -> SocketAddr {
    to.unwrap_or_else(|| was.shard_addrs.get(usize::from(was.shard_id)).copied().unwrap_or(addr))
}

/// Whether the handshake `info` of a socket redialled at `addr` may stand
/// in for the one lost: its own shard again (same shard id and count as
/// `was`) unless it `failed_over`, and in any case the limits of `first`,
/// the connection's first handshake (its reader decodes with them, and
/// producers checked their batches against them).
pub fn check_redialled(
    addr: SocketAddr,
    info: &ServerInfo,
    was: &ServerInfo,
    first: &ServerInfo,
    failed_over: bool,
) -> Result<()> {
    if !failed_over && (info.shard_id != was.shard_id || info.shard_addrs.len() != was.shard_addrs.len()) {
        return Err(ClientError::Protocol(format!(
            "{addr} answered as shard {} of {}, was shard {} of {}",
            info.shard_id,
            info.shard_addrs.len(),
            was.shard_id,
            was.shard_addrs.len()
        )));
    }
    let limits = |i: &ServerInfo| (i.frame_bytes_max, i.message_bytes_max, i.prefetch_max, i.heartbeat_ms);
    if limits(info) != limits(first) {
        return Err(ClientError::Protocol(format!("{addr} has other limits than the node this client first reached")));
    }
    Ok(())
}

/// Declares `records` again in order, each with `send` (a request over
/// the first connection, answered once the broker made it), and reports
/// through `event`: each refusal (`RedeclareFailed`; it stays recorded for
/// the next recovery), then `TopologyRecovered`. Runs no I/O of its own:
/// it awaits only what `send` returns.
pub async fn redeclare<'a, F, Fut>(records: &'a [Record], mut send: F, mut event: impl FnMut(Event))
where
    F: FnMut(Cmd<'a>) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut failed = 0;
    for r in records {
        if let Err(error) = send(r.cmd()).await {
            tracing::warn!(record = ?r, %error, "recovery: declaring again failed");
            event(Event::RedeclareFailed { what: r.describe(), error });
            failed += 1;
        }
    }
    event(Event::TopologyRecovered { records: records.len(), failed });
}

#[cfg(test)]
#[path = "rounds_tests.rs"]
mod tests;
