//! ringmq: a thread-per-core message broker.
//!
//! The layers, each importing only the ones above it in this table
//! (`docs/architecture.md`, "Layers"):
//!
//! | layer | modules |
//! |---|---|
//! | codecs (sans-IO, shared with the client and the loadgen) | [`protocol`], [`protocol::amqp`], [`protocol::link`]; beside them the socket plumbing [`rt`] |
//! | model | [`routing`], [`storage`], [`server::queue`], [`auth`], [`cluster`] (metadata consensus and its Raft link: may use `storage`, `protocol` and `rt`, never a front end); the value types the queue and the core share: [`server::types`], [`server::policy`], [`server::deadletter`] |
//! | broker core: shards, mesh, the operations a client can ask for | [`server`] ([`server::shard`], [`server::mesh`], [`server::ops`], [`server::admin`], ...) |
//! | front ends | [`native`], [`amqp`], [`http`] |
//! | binaries | `src/broker.rs` (wires the front ends to the core), `src/cli/`, `src/main.rs`, `loadgen/` |
//!
//! The client library ([`client`]) stands on the codecs alone: its
//! runtime-free core ([`client::core`]: handshake, requests, frame
//! dispatch, acks, batches, cluster routes, recovery's backoff, events,
//! topology record, rounds of redials and the supervisor's loop, `get`
//! tags across reconnects) under three shells, the
//! blocking client on std sockets (feature `client`), the glommio client
//! on [`rt`] (feature `glommio`) and the tokio client ([`client::tokio`],
//! feature `tokio`).
//!
//! The data path, module by module:
//!
//! | step | module |
//! |---|---|
//! | start shards, bind listeners, raise RLIMIT_MEMLOCK | [`server`], [`server::system`], [`server::config`] |
//! | wire the front ends to the core (`Broker::start`; the core takes them as `server::FrontEnds`) | `src/broker.rs` |
//! | accept a connection on a shard (shared port or the shard's own), count it under the connection caps | [`native::accept`], [`amqp`], [`server::listener`], [`server::shard::conns`] |
//! | read whole frames into a shared buffer | [`rt::reader`] |
//! | decode frames (sans-IO codec, shared with the client) | [`protocol`] ([`protocol::frame`], [`protocol::wire`]: the native protocol's) |
//! | AMQP 0-9-1 codec: field types, framing, methods, both sides' parsers (sans-IO, shared with the loadgen; always compiled) | [`protocol::amqp`] |
//! | field tables (AMQP and native arguments, headers): the one depth-limited walker, and owned `Table`/`Value`/`TableBuilder` | [`protocol::field_table`] |
//! | check limits, ask the core | [`native`], [`amqp`] |
//! | the core API: each request to the shard that owns its queue, publish here or there | [`server::ops`], [`server::shard`] |
//! | forward to another shard in batches over the channel mesh | [`server::mesh`] |
//! | append to the queue, dispatch to consumers under credit | [`server::shard`], [`server::queue`] |
//! | delivery back pressure: a consumer gets no more than its outbox has room for (credit across shards) | [`server::gate`], `server::shard::gate` |
//! | logins, users and vhosts changed at run time, permissions checked per operation; users as plain data and back (the definitions file, the cluster's metadata) | [`auth`], [`auth::access`], `server::shard::users`, [`server::grants`], [`server::admin_users`] |
//! | vhosts: a front end scopes each name the client gives (`qualify`); the core keys by that one string | [`protocol::vhost`] |
//! | deliver (encoded straight from the unacked store), ack, redeliver | [`server::queue`], [`native`], [`amqp`] |
//! | queue policies: TTL, length limits, dead-lettering, priorities (`docs/policies.md`) | [`server::policy`], [`server::queue`], [`server::deadletter`], `server::shard::timers`, `server::shard::dead_letters` |
//! | streams (`x-queue-type: stream`): offsets, retention, a read position per consumer, stored in the shard's log (`docs/streams.md`) | `server::queue::stream`, `server::shard::requests` (subscribe), `server::shard::durable` (retention, chunk times and stored offsets logged, record types 16 and 13 in [`storage`]), `server::queue::stream_read` and `server::shard::stream_reads` (past the in-memory window: reads from the log ahead of consumers), `amqp::consume_args` (`x-stream-offset`), `native` (`StreamSubscribe`, `StoreOffset`, `QueryOffset`), `client::streams` (the client's calls) |
//! | log persistent messages and acks, group commit, recovery, reclaim; a routed batch's exchange and routing key (record type 18) so recovered messages keep their origin | [`storage`] ([`storage::origin`]), [`server::shard`] |
//! | past the memory budget: entries on disk only, 16 bytes a message in a queue's cold part, read back ahead of consumers | [`server::queue`] (a queue's side: `queue::spill`), `server::shard::spill` (the budget and the fetch task) |
//! | write replies, one syscall per turn; large delivered entries by reference (vectored `sendmsg`) | [`rt::outbox`], [`rt::writev`] |
//! | TLS on the listeners (native, AMQPS, HTTPS): handshake after the connection is counted, certificates reloaded on SIGHUP; one `Transport` for plain and TLS | [`server::tls`], [`server::listener`], [`rt::transport`] |
//! | resource alarms: accounted memory and free disk against their limits, publishers blocked | [`server::alarm`], `server::shard::alarm` |
//! | the client side: shard-aware producer and consumer; one core ([`client::core`]) under the glommio, tokio and blocking shells | [`client`], [`client::tokio`], [`client::blocking`] |
//! | AMQP 0-9-1 front end: handshake, channels, same queues, over [`protocol::amqp`] | [`amqp`] (`docs/amqp.md`) |
//! | AMQP transactions: the channel's buffer, and commits routed on the connection's shard, applied per owner, gathered in a fan-in (`docs/amqp.md`, "Transactions") | [`amqp::tx`], [`server::shard::tx`] |
//! | exchanges and bindings: which queues a message goes to (pure data, [`routing::RoutingTable`]) | [`routing`] (`docs/routing.md`) |
//! | each shard's replica of the routing table, publishes through exchanges, changes sent to shard 0 | `server::shard::routing_replica`, `server::shard::meta` |
//! | operators: per-shard counters (plain cells, bumped per batch), snapshots gathered over the mesh (`AdminReq`), Prometheus text with RabbitMQ's names beside ringmq's, the process's own figures | `server::shard::counters`, `server::shard::admin`, [`server::stats`], `server::stats_rows`, [`server::stats_rabbit`], `server::stats_rabbit_detail`, `storage::io_stats`, `server::process_stats` |
//! | a shard's glommio task queues (latency, flush, bulk) and their scheduling figures (`ringmq_sched_*`) | [`server::sched`] |
//! | definitions in RabbitMQ's JSON: parse, export, import as a client's declares (`Shard::ask`), `load_definitions` at boot | [`server::definitions`], `http::definitions`, `src/cli/ctl_defs.rs` |
//! | the web UI (static files embedded) and its publish, get and purge | `http::ui`, `http::messages` |
//! | `/metrics` and the HTTP management API (hyper on glommio, shard 0) | [`http`] |
//! | `ringmq ctl`'s `Admin` frames; the CLI's declares, binds, peeks and listings, message properties from flags, completions and man page | [`server::admin`], `src/cli/ctl.rs`, `src/cli/ctl_objects.rs`, `src/cli/props.rs`, `src/cli/docgen.rs` |
//! | health and readiness: the node's listeners and ready flag, RabbitMQ's health checks and aliveness test, `sd_notify`, `ctl status`/`ping`/`await-startup` | [`server::health`], `http::health`, [`server::notify`], `src/cli/ctl_health.rs` |
//! | cluster metadata by consensus (`docs/cluster.md`): openraft on glommio, its durable log and vote, the state machine and the broker's metadata state, the members' requests to the leader | [`cluster`] ([`cluster::rt`], [`cluster::log_store`], [`cluster::state_machine`], [`cluster::meta`], [`cluster::service`]) |
//! | a clustered node: its identity, forming or joining, the member on shard 0; the local half that applies committed changes to the shards | [`server::cluster`], `server::shard::cluster`, `server::shard::cluster_admin` |
//! | the inter-node link carrying Raft's RPCs: its sans-IO codec, and the TCP transport (handshake with HMAC proofs, bounded frames and windows, redial with backoff) | [`protocol::link`], [`cluster::link`], read through [`rt::reader`] |
//! | queues on other nodes: placement by the group at a queue's first declare, each shard's copy of it, and the shard mesh across nodes (an owner id from `0x8000` up is another node's shard; requests and replies over per-shard data links) | [`server::remote`] ([`server::remote::wire`], [`server::remote::peer`], [`server::remote::serve`]), `server::shard::remote` |
//! | the cluster map for native clients (`MapGet`, `Locate`, `MapChanged`; a client gets it with its handshake), and the client that sends each queue's traffic to its node's owning shard | [`protocol::cluster_map`], [`client::cluster`], `client::handshake` |
//! | direct reply-to (`amq.rabbitmq.reply-to`): the generated name's codec, the reply's way to the requesting connection on any shard or node, and each front end's reply consumer | [`protocol::reply_to`], `server::shard::direct`, `amqp::reply_to`, `native::reply_to` |
//!
//! Everything a queue does happens on its owning shard, one thread, no locks.
//! The `ringmq` binary (`src/main.rs`, `src/cli/`) wraps this as `serve`,
//! `pub`, `sub` and `ctl`.

pub mod protocol;

#[cfg(feature = "client")]
#[deny(missing_docs)] // issue 21: rustdoc for every public item of the client library
pub mod client;

/// The socket plumbing the broker and the glommio client share.
#[cfg(feature = "glommio")]
pub mod rt;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "server")]
pub mod native;

#[cfg(feature = "server")]
pub mod amqp;

#[cfg(feature = "server")]
pub mod http;

#[cfg(feature = "server")]
mod broker;

#[cfg(feature = "server")]
pub mod auth;

#[cfg(feature = "server")]
pub mod routing;

#[cfg(feature = "server")]
pub mod storage;

#[cfg(feature = "server")]
pub mod cluster;
