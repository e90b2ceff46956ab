//! ringmq: a thread-per-core message broker.
//!
//! The data path, module by module:
//!
//! | step | module |
//! |---|---|
//! | accept a connection on the shard's own listener | [`server::listener`] |
//! | decode frames (sans-IO codec, shared with the client) | [`protocol`] |
//! | route each request to the shard that owns its queue | [`server::connection`], [`server::mesh`] |
//! | append to the queue, dispatch to consumers under credit | [`server::shard`], [`server::queue`] |
//! | deliver, ack, redeliver, reclaim | [`server::queue`] |
//! | the client side: shard-aware producer and consumer | [`client`] |
//!
//! Everything a queue does happens on its owning shard, one thread, no locks.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub mod rt;

#[cfg(feature = "server")]
pub mod server;
