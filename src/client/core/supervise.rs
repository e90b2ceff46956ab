//! The recovery supervisor's loop, written once for both async shells
//! (docs/client-recovery.md, "Recovery", "Failover"): rounds of redials
//! ([`super::rounds::Rounds`] decides each), the first connection failing
//! over to another node, a connection back replayed as soon as the first
//! one is up (declarations, consumers, unconfirmed batches), connections
//! to a dead node left down without holding up the rest, and giving up.
//! A shell implements [`Shell`]: its connections, producers, sockets,
//! tasks and timers. Nothing here runs I/O of its own: it awaits only
//! what the shell's methods return.

use super::recovery::{Event, Recovery, Unconfirmed};
use super::rounds::{redeclare, AfterRound, Rounds};
use super::topology::Record;
use crate::client::{ClientError, Result, ServerInfo};
use crate::protocol::Cmd;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What a shell lends the supervisor's loop.
pub trait Shell {
    /// A handle on one connection (`Rc<Conn>`, `Arc<Conn>`): it keeps its
    /// identity across redials.
    type Conn: Clone;

    /// The recovery options the client was built with.
    fn recovery(&self) -> &Recovery;
    /// The client is closing (or recovery gave up): nothing is redialled.
    fn closing(&self) -> bool;
    /// Recovery gave up: the client closes for good.
    fn set_closing(&self);
    /// The client's live connections, the first one first.
    fn conns(&self) -> Vec<Self::Conn>;
    /// Whether two handles are one connection.
    fn same(a: &Self::Conn, b: &Self::Conn) -> bool;
    /// Whether recovery is bringing it back.
    fn is_down(c: &Self::Conn) -> bool;
    /// Where it is dialled now.
    fn addr(c: &Self::Conn) -> SocketAddr;
    /// The current socket's handshake (the node and shard it reaches).
    fn node_info(c: &Self::Conn) -> ServerInfo;
    /// Each node's shards' addresses, from the last cluster map.
    fn nodes(&self) -> Vec<Vec<SocketAddr>>;
    /// The recorded declarations, in order.
    fn records(&self) -> Vec<Record>;
    /// Adds an event for the application; never waits.
    fn event(&self, e: Event);
    /// Redials each connection of `dials` at its target (`None`: its own
    /// shard), all at once: an address that does not answer costs
    /// `connect_timeout` once per round. The results in `dials`' order.
    fn redial_all(&self, dials: Vec<(Self::Conn, Option<SocketAddr>)>) -> impl Future<Output = Vec<Result<()>>>;
    /// Waits `wait`; `or_lost`: less, if a connection is lost meanwhile.
    fn sleep(&self, wait: Duration, or_lost: bool) -> impl Future<Output = ()>;
    /// A request answered with `Ok` over `c`.
    fn simple<'a>(c: &'a Self::Conn, cmd: Cmd<'a>) -> impl Future<Output = Result<u64>>;
    /// Subscribes `c`'s consumers again under their ids; each one's outcome.
    fn resubscribe<'a>(&'a self, c: &'a Self::Conn) -> impl Future<Output = Vec<(u32, Result<()>)>>;
    /// The unconfirmed batches of the producers on `on` (every producer:
    /// `None`) republished, or, with `fail`, resolved with that error;
    /// how many.
    fn unconfirmed(&self, on: Option<&[Self::Conn]>, fail: Option<&ClientError>) -> usize;
    /// Replayed: the application's traffic goes on.
    fn set_up(c: &Self::Conn);
    /// Ends a connection for good with `error`.
    fn fail(c: &Self::Conn, error: ClientError);
}

/// The supervisor: one task per client with recovery, until the client
/// closes or recovery gives up. `lost` returns a wait for the next lost
/// connection, armed when it returns: a connection lost between the look
/// at the connections and the wait still wakes it.
pub async fn run<S: Shell, L: Future<Output = ()>>(s: &S, lost: impl Fn() -> L) {
    loop {
        let lost = lost();
        if s.closing() {
            return;
        }
        let down: Vec<S::Conn> = s.conns().into_iter().filter(S::is_down).collect();
        if down.is_empty() {
            lost.await;
            continue;
        }
        // The rounds, the failover and the replay.
        if !recover(s, down).await {
            return;
        }
    }
}

/// Brings `down` back, round after round of redials with backoff. False
/// when recovery gave up (or the client closed).
pub async fn recover<S: Shell>(s: &S, mut down: Vec<S::Conn>) -> bool {
    let mut rounds = Rounds::new(s.recovery());
    // Redialled, waiting for the first connection to replay through.
    let mut back: Vec<S::Conn> = Vec::new();
    loop {
        if s.closing() {
            return false;
        }
        let conns = s.conns();
        let Some(first) = conns.first().cloned() else { return false };
        // One closed meanwhile (the application's close) is not brought
        // back; one that went down meanwhile joins this round (a broker's
        // sockets do not all end at once).
        down.retain(S::is_down);
        for c in conns.into_iter().filter(S::is_down) {
            if !down.iter().chain(&back).any(|d| S::same(d, &c)) {
                down.push(c);
            }
        }
        let nodes = s.nodes();
        let dials: Vec<_> =
            down.iter().map(|c| (c.clone(), rounds.target(S::same(c, &first), &nodes, &S::node_info(c)))).collect();
        let targets: Vec<_> = dials.iter().map(|(_, to)| *to).collect();
        let results = s.redial_all(dials).await;
        let mut last_error = None;
        let mut still = Vec::new();
        // In the order they went down (the first connection first).
        for ((r, to), conn) in results.into_iter().zip(targets).zip(std::mem::take(&mut down)) {
            match r {
                Ok(()) => {
                    s.event(rounds.reconnected(S::addr(&conn)));
                    back.push(conn);
                }
                Err(e) => {
                    tracing::debug!(addr = %S::addr(&conn), ?to, error = %e, "redial failed");
                    last_error = Some(e);
                    still.push(conn);
                }
            }
        }
        down = still;
        let first_up = !S::is_down(&first);
        if first_up && !back.is_empty() {
            replay(s, &first, &back).await;
            back.clear();
        }
        match rounds.after(first_up, !down.is_empty() || !back.is_empty(), last_error) {
            AfterRound::Done => return true,
            AfterRound::Wait { wait, or_lost } => s.sleep(wait, or_lost).await,
            // The first connection is up: only the connections to shards
            // that never came back end (their consumers and producers
            // hear why); the client goes on.
            AfterRound::EndStillDown(error) => {
                for c in &down {
                    S::fail(c, error.clone());
                }
                let batches = s.unconfirmed(Some(down.as_slice()), Some(&error));
                if batches > 0 {
                    s.event(Event::Failed { batches, error });
                }
                return true;
            }
            AfterRound::GiveUp(error) => {
                give_up(s, error);
                return false;
            }
        }
    }
}

/// `back` (redialled, replaying) goes up again: the recorded topology
/// declared again over `first` (the broker forwards each declaration to
/// its owner and answers once it is made, so every queue is there before
/// a consumer or a republished batch needs it), consumers resubscribed,
/// unconfirmed batches republished or failed.
async fn replay<S: Shell>(s: &S, first: &S::Conn, back: &[S::Conn]) {
    let records = s.records();
    redeclare(&records, |cmd| S::simple(first, cmd), |e| s.event(e)).await;
    for conn in back {
        for (id, r) in s.resubscribe(conn).await {
            match r {
                Ok(()) => s.event(Event::Resubscribed { consumer_id: id }),
                Err(e) => tracing::warn!(consumer_id = id, error = %e, "recovery: subscribing again failed"),
            }
        }
    }
    let policy = s.recovery().unconfirmed;
    let lost = Unconfirmed::lost();
    let fail = (policy == Unconfirmed::Fail).then_some(&lost);
    let batches = s.unconfirmed(Some(back), fail);
    if let Some(e) = policy.event(batches, lost.clone()) {
        s.event(e);
    }
    for conn in back {
        S::set_up(conn);
    }
}

/// `attempts_max` rounds failed with the first connection down:
/// everything ends with `error`.
fn give_up<S: Shell>(s: &S, error: ClientError) {
    s.set_closing();
    for c in s.conns() {
        S::fail(&c, error.clone());
    }
    let batches = s.unconfirmed(None, Some(&error));
    if batches > 0 {
        s.event(Event::Failed { batches, error: error.clone() });
    }
    s.event(Event::GaveUp { error });
}

/// The [`Shell`] methods that are the same in both shells but for the
/// pointer (`Rc` on glommio, `Arc` on tokio): each connection's and
/// producer's own methods, which the shells name alike. Used inside an
/// `impl Shell` whose `Self` has a `hub` field.
#[cfg(any(feature = "glommio", feature = "tokio"))]
macro_rules! shell_conn_methods {
    ($ptr:ident) => {
        fn same(a: &$ptr<Conn>, b: &$ptr<Conn>) -> bool {
            $ptr::ptr_eq(a, b)
        }

        fn is_down(c: &$ptr<Conn>) -> bool {
            c.is_down()
        }

        fn addr(c: &$ptr<Conn>) -> SocketAddr {
            c.addr()
        }

        fn node_info(c: &$ptr<Conn>) -> ServerInfo {
            c.node_info()
        }

        async fn simple<'a>(c: &'a $ptr<Conn>, cmd: Cmd<'a>) -> Result<u64> {
            c.simple(cmd).await
        }

        async fn resubscribe<'a>(&'a self, c: &'a $ptr<Conn>) -> Vec<(u32, Result<()>)> {
            c.resubscribe(self.hub).await
        }

        fn unconfirmed(&self, on: Option<&[$ptr<Conn>]>, fail: Option<&ClientError>) -> usize {
            let ps = self.hub.live_producers();
            let mine = |p: &&$ptr<ProducerInner>| on.is_none_or(|cs| cs.iter().any(|c| $ptr::ptr_eq(c, p.conn())));
            ps.iter()
                .filter(mine)
                .map(|p| match fail {
                    Some(e) => p.fail_unconfirmed(e),
                    None => p.republish(),
                })
                .sum()
        }

        fn set_up(c: &$ptr<Conn>) {
            c.set_up();
        }

        fn fail(c: &$ptr<Conn>, error: ClientError) {
            c.fail(error);
        }
    };
}
#[cfg(any(feature = "glommio", feature = "tokio"))]
pub(crate) use shell_conn_methods;
