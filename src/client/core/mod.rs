//! The client's runtime-free core: everything the async shells (glommio,
//! tokio) and the blocking client share but sockets and timers.
//!
//! - [`handshake::Greeter`]: `Hello` (and the cluster map) out, `HelloOk`
//!   in, as bytes; the shell moves them.
//! - [`incoming::classify`]: what a frame from the broker means to a
//!   connection (a reply to a request, deliveries, a beat, an alarm, a
//!   fatal error).
//! - [`requests::Requests`]: request ids and their waiters; an error with
//!   no waiter kept for the next call.
//! - [`acks::AckBook`]: a consumer's acks and nacks as ascending ranges.
//! - [`batch`]: a producer's open batch and its `Publish` frame; `kept`:
//!   its batches kept for republishing after a reconnect.
//! - [`routes`]: the cluster map and where each queue lives.
//! - [`cmds`]: the requests behind the client's admin calls; `methods`:
//!   the async clients' admin, producer and subscribe calls, written once.
//! - [`recovery`] and [`topology`]: automatic recovery's options, backoff,
//!   events and the record of what to declare again; [`rounds`]: one
//!   recovery's rounds of redials (where to, failover, when to give up)
//!   and the declarations made again.
//! - [`supervise`]: the supervisor's loop over those decisions, generic
//!   over the shell's connections and I/O ([`supervise::Shell`]).
//! - [`pull`]: a connection's `get` tags across recovery (a stale tag's
//!   ack refused).
//!
//! A shell keeps these in whatever cell its runtime wants (`RefCell` on
//! glommio's single thread, a `Mutex` on tokio's pool) and calls into
//! them; none of them does I/O, and only `rounds::redeclare` and
//! `supervise::recover` wait, on futures the shell hands them.

pub mod acks;
pub mod batch;
pub mod cmds;
pub mod delivery;
pub mod handshake;
pub mod incoming;
#[cfg(any(feature = "glommio", feature = "tokio"))]
pub(crate) mod kept;
pub(crate) mod methods;
pub mod pull;
pub mod recovery;
pub mod requests;
pub mod rounds;
pub mod routes;
pub mod supervise;
pub mod topology;
