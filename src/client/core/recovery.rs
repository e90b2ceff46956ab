//! Automatic recovery, the parts without I/O: the options, the redial
//! [`Backoff`], the [`Event`]s an application reads and the bounded
//! [`EventQueue`] they wait in. The record of what to declare again is
//! [`super::topology`]. A shell (tokio, glommio) redials, replays and
//! resubscribes; what it decides is decided here.

use crate::client::ClientError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// What happens to batches published and not confirmed when a connection
/// ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unconfirmed {
    /// Sent again on the new connection (at-least-once: a consumer may see
    /// a message twice, the second time not flagged `redelivered`).
    #[default]
    Republish,
    /// Each such `Confirmation` resolves with `ClientError::Closed`; the
    /// application decides.
    Fail,
}

impl Unconfirmed {
    /// What a batch that was sent but not confirmed resolves with under
    /// `Fail` (and what `Event::Failed` carries).
    pub fn lost() -> ClientError {
        ClientError::Closed("the connection ended before the broker confirmed".into())
    }

    /// The event for `batches` unconfirmed batches handled by this policy
    /// after a redial; none when there were none.
    pub fn event(self, batches: usize, lost: ClientError) -> Option<Event> {
        if batches == 0 {
            return None;
        }
        Some(match self {
            Unconfirmed::Republish => Event::Republished { batches },
            Unconfirmed::Fail => Event::Failed { batches, error: lost },
        })
    }
}

/// Automatic recovery (`ClientOptions::recovery`; docs/client-recovery.md,
/// "Recovery"). Off (`None`) by default.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The first wait before a redial; each failed attempt doubles it, up
    /// to `backoff_max`, with up to a quarter of it added at random.
    pub backoff_min: Duration,
    /// The longest wait between redials.
    pub backoff_max: Duration,
    /// Failed rounds of redials (each round tries every connection that
    /// is down once) before giving up; 0: forever. When they run out with
    /// the first connection up (failed over), only
    /// the connections still down end (docs/client-recovery.md, "Failover").
    pub attempts_max: u32,
    /// What becomes of batches sent but not confirmed when a connection ended.
    pub unconfirmed: Unconfirmed,
    /// Queues, exchanges, bindings and consumers recorded for replay, each
    /// at most this many: one more is refused
    /// (`ClientError::RecoveryLimit`) before it is sent.
    pub records_max: usize,
    /// Events held for `Client::events()`; past it the oldest is dropped
    /// (and counted): the client never waits for its reader.
    pub events_max: usize,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            attempts_max: 0,
            unconfirmed: Unconfirmed::Republish,
            records_max: 10_000,
            events_max: 1024,
        }
    }
}

impl Recovery {
    /// Refuses options that cannot work (`Client::connect` checks them).
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return Err(ClientError::Invalid(format!(
                "recovery: backoff_min must be above 0 and at most backoff_max, got {:?} and {:?}",
                self.backoff_min, self.backoff_max
            )));
        }
        if self.records_max == 0 || self.events_max == 0 {
            return Err(ClientError::Invalid("recovery: records_max and events_max must be at least 1".into()));
        }
        Ok(())
    }
}

/// Waits between redials: `backoff_min`, doubling to `backoff_max`, each
/// with up to a quarter more at random, so clients of one broker do not
/// all redial in the same millisecond.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    attempts: u32,
    attempts_max: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff for `r`; `seed` drives the jitter (any value; 0 is made 1).
    pub fn new(r: &Recovery, seed: u64) -> Self {
        Self { next: r.backoff_min, max: r.backoff_max, attempts: 0, attempts_max: r.attempts_max, rng: seed.max(1) }
    }

    /// Attempts counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counts an attempt that failed; the wait before the next one, or
    /// `None` when `attempts_max` attempts have failed.
    pub fn failed(&mut self) -> Option<Duration> {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts_max != 0 && self.attempts >= self.attempts_max {
            return None;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: jitter needs no more than this.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let quarter = u64::try_from(base.as_nanos() / 4).unwrap_or(u64::MAX);
        let extra = if quarter == 0 { 0 } else { self.rng % quarter };
        Some(base + Duration::from_nanos(extra))
    }
}

/// Failed rounds of redials of the first connection to its own node
/// before it tries the other nodes of the cluster map (docs/client-recovery.md,
/// "Failover"): two, so a restart or a short outage of its node does not
/// move it, and a node gone for good costs about `3 * backoff_min` before
/// it moves.
pub const FAILOVER_AFTER: u32 = 2;

/// Where the first connection, down, tries next once [`FAILOVER_AFTER`]
/// rounds failed: the node after `cursor` in `nodes` (the last cluster
/// map's, each node's shards' addresses), round-robin, its own node
/// (the one listing an address of `at_shards`) included, so one that
/// comes back is found, at the shard numbered `shard_id` there (modulo
/// that node's shards). `None` without a map (a single node), or when the
/// turn is its own node's: then it redials its own shard.
pub fn failover_target(
    nodes: &[Vec<SocketAddr>],
    at_shards: &[SocketAddr],
    shard_id: u16,
    cursor: &mut Option<usize>,
) -> Option<SocketAddr> {
    if nodes.is_empty() {
        return None;
    }
    let own = nodes.iter().position(|n| n.iter().any(|a| at_shards.contains(a)));
    let next = cursor.or(own).map_or(0, |c| (c + 1) % nodes.len());
    *cursor = Some(next);
    if Some(next) == own {
        return None;
    }
    let n = &nodes[next];
    n.get(usize::from(shard_id) % n.len().max(1)).copied()
}

/// What recovery did, for `Client::events()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection ended; recovery starts.
    Disconnected {
        /// The shard address it was connected to.
        addr: SocketAddr,
        /// Why it ended.
        error: ClientError,
    },
    /// A connection is back, in round `attempt` of redials (1: the first
    /// worked), at `addr`: its own shard's address, or, when the first
    /// connection failed over (either async client), another node's shard.
    Reconnected {
        /// Where it connected.
        addr: SocketAddr,
        /// The round of redials that worked (1: the first).
        attempt: u32,
    },
    /// The recorded queues, exchanges and bindings were declared again;
    /// `failed` of them were refused (each logged).
    TopologyRecovered {
        /// Declarations replayed.
        records: usize,
        /// Of which refused.
        failed: usize,
    },
    /// A recorded declaration (`what`: `queue NAME`, `exchange NAME` or
    /// `binding ...`) was refused when declared again, with `error` (on a
    /// cluster, a queue whose node is down: `NodeUnavailable`). It stays
    /// recorded: the next recovery declares it again. Comes before its
    /// round's `TopologyRecovered`.
    RedeclareFailed {
        /// The declaration: `queue NAME`, `exchange NAME` or `binding ...`.
        what: String,
        /// The broker's refusal.
        error: ClientError,
    },
    /// A consumer subscribed again under its id: its stream goes on.
    Resubscribed {
        /// The consumer, under the id it had.
        consumer_id: u32,
    },
    /// Unconfirmed batches sent again (`Unconfirmed::Republish`).
    Republished {
        /// Batches sent again.
        batches: usize,
    },
    /// Unconfirmed batches whose confirmations resolved with `error`
    /// (`Unconfirmed::Fail`, or recovery gave up).
    Failed {
        /// Batches whose confirmations failed.
        batches: usize,
        /// What their confirmations resolved with.
        error: ClientError,
    },
    /// `attempts_max` redials failed: the client is closed for good.
    GaveUp {
        /// The last redial's error.
        error: ClientError,
    },
}

/// Events waiting for the application: at most `max`; a new one past it
/// drops the oldest, counted in [`EventQueue::dropped`].
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<Event>,
    max: usize,
    dropped: u64,
}

impl EventQueue {
    /// A queue of at most `max` events (at least 1).
    pub fn new(max: usize) -> Self {
        Self { events: VecDeque::new(), max: max.max(1), dropped: 0 }
    }

    /// Adds an event, dropping the oldest when full.
    pub fn push(&mut self, e: Event) {
        if self.events.len() >= self.max {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    /// The oldest event not read yet.
    pub fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Events dropped unread so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_batches_are_reported_by_policy_and_only_when_there_were_some() {
        assert!(Unconfirmed::Republish.event(0, Unconfirmed::lost()).is_none());
        assert!(matches!(
            Unconfirmed::Republish.event(3, Unconfirmed::lost()),
            Some(Event::Republished { batches: 3 })
        ));
        let failed = Unconfirmed::Fail.event(2, Unconfirmed::lost());
        assert!(matches!(failed, Some(Event::Failed { batches: 2, error: ClientError::Closed(_) })), "{failed:?}");
    }

    fn rec(min_ms: u64, max_ms: u64, attempts_max: u32) -> Recovery {
        Recovery {
            backoff_min: Duration::from_millis(min_ms),
            backoff_max: Duration::from_millis(max_ms),
            attempts_max,
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_to_the_max_with_bounded_jitter() {
        let mut b = Backoff::new(&rec(100, 1000, 0), 7);
        let bases = [100, 200, 400, 800, 1000, 1000, 1000];
        for base in bases {
            let d = b.failed().expect("forever");
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{d:?} for base {base:?}");
        }
        assert_eq!(b.attempts(), 7);
    }

    #[test]
    fn backoff_gives_up_after_attempts_max() {
        let mut b = Backoff::new(&rec(1, 2, 3), 0);
        assert!(b.failed().is_some());
        assert!(b.failed().is_some());
        assert_eq!(b.failed(), None);
        assert_eq!(b.failed(), None);
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let waits = |seed| {
            let mut b = Backoff::new(&rec(1000, 1000, 0), seed);
            (0..8).map(|_| b.failed()).collect::<Vec<_>>()
        };
        assert_ne!(waits(1), waits(2));
    }

    #[test]
    fn validate_refuses_nonsense() {
        assert!(rec(0, 10, 0).validate().is_err());
        assert!(rec(10, 5, 0).validate().is_err());
        assert!(Recovery { records_max: 0, ..Default::default() }.validate().is_err());
        assert!(Recovery::default().validate().is_ok());
    }

    #[test]
    fn failover_goes_round_robin_through_the_map_its_own_node_included() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let nodes = vec![vec![a(11), a(12)], vec![a(21), a(22)], vec![a(31)]];
        let mut cursor = None;
        // On node 1, shard 1: node 2's shard 1, node 3's only shard, then
        // its own (None: redial its own shard), and round again.
        let on_n1 = [a(11), a(12)];
        let turns: Vec<_> = (0..5).map(|_| failover_target(&nodes, &on_n1, 1, &mut cursor)).collect();
        assert_eq!(turns, [Some(a(22)), Some(a(31)), None, Some(a(22)), Some(a(31))]);
        // A single node: no map, never anywhere else.
        assert_eq!(failover_target(&[], &on_n1, 0, &mut None), None);
        // Its node not in the map (a map from before it joined): from the first.
        let mut cursor = None;
        assert_eq!(failover_target(&nodes, &[a(99)], 0, &mut cursor), Some(a(11)));
        assert_eq!(failover_target(&nodes, &[a(99)], 0, &mut cursor), Some(a(21)));
    }

    #[test]
    fn event_queue_drops_the_oldest_and_counts() {
        let mut q = EventQueue::new(2);
        for id in 1..=5 {
            q.push(Event::Resubscribed { consumer_id: id });
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.pop(), Some(Event::Resubscribed { consumer_id: 4 }));
        assert_eq!(q.pop(), Some(Event::Resubscribed { consumer_id: 5 }));
        assert_eq!(q.pop(), None);
    }
}
