//! ringmq: a thread-per-core message broker.
//!
//! The data path, module by module:
//!
//! | step | module |
//! |---|---|
//! | start shards, bind listeners, raise RLIMIT_MEMLOCK | [`server`], [`server::system`], [`server::config`] |
//! | wire the AMQP front end to the core (`Broker::start`; the core takes front ends as `server::FrontEnd`) | `src/broker.rs` |
//! | accept a connection on a shard (shared port or the shard's own), count it under the connection caps | [`server::listener`], [`server::shard::conns`] |
//! | read whole frames into a shared buffer | [`rt::reader`] |
//! | decode frames (sans-IO codec, shared with the client) | [`protocol`] ([`protocol::frame`], [`protocol::wire`]: the native protocol's) |
//! | AMQP 0-9-1 codec: field types, framing, methods, both sides' parsers (sans-IO, shared with the loadgen; always compiled) | [`protocol::amqp`] |
//! | field tables (AMQP and native arguments, headers): the one depth-limited walker, and owned `Table`/`Value`/`TableBuilder` | [`protocol::field_table`] |
//! | check limits, route each request to the shard that owns its queue | [`server::connection`] |
//! | forward to another shard in batches over the channel mesh | [`server::mesh`] |
//! | append to the queue, dispatch to consumers under credit | [`server::shard`], [`server::queue`] |
//! | deliver (encoded straight from the unacked store), ack, redeliver | [`server::queue`], [`server::connection`] |
//! | queue policies: TTL, length limits, dead-lettering, priorities (`docs/policies.md`) | [`server::policy`], [`server::queue`], [`server::deadletter`], `server::shard::timers`, `server::shard::dead_letters` |
//! | log persistent messages and acks, group commit, recovery, reclaim | [`storage`], [`server::shard`] |
//! | past the memory budget: entries on disk only, 16 bytes a message in a queue's cold part, read back ahead of consumers | [`server::queue`] (a queue's side: `queue::spill`), `server::shard::spill` (the budget and the fetch task) |
//! | write replies, one syscall per turn | [`rt::outbox`] |
//! | resource alarms: accounted memory and free disk against their limits, publishers blocked | [`server::alarm`], `server::shard::alarm` |
//! | the client side: shard-aware producer and consumer | [`client`], [`client::blocking`] |
//! | AMQP 0-9-1 front end: handshake, channels, same queues, over [`protocol::amqp`] | [`amqp`] (`docs/amqp.md`) |
//! | exchanges and bindings: which queues a message goes to (pure data, [`routing::RoutingTable`]) | [`routing`] (`docs/routing.md`) |
//! | each shard's replica of the routing table, publishes through exchanges, changes sent to shard 0 | `server::shard::routing_replica`, `server::shard::meta` |
//! | operators: per-shard snapshots gathered over the mesh (`AdminReq`), Prometheus text | `server::shard::admin`, [`server::stats`] |
//! | `/metrics` and the HTTP management API (hyper on glommio, shard 0) | [`server::http`] |
//! | `ringmq ctl`'s `Admin` frames | [`server::admin`], `src/cli/ctl.rs` |
//!
//! Everything a queue does happens on its owning shard, one thread, no locks.
//! The `ringmq` binary (`src/main.rs`, `src/cli/`) wraps this as `serve`,
//! `pub`, `sub` and `ctl`.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub mod rt;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "server")]
pub mod amqp;

#[cfg(feature = "server")]
mod broker;

#[cfg(feature = "server")]
pub mod auth;

#[cfg(feature = "server")]
pub mod routing;

#[cfg(feature = "server")]
pub mod storage;
