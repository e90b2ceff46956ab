//! The broker as a cluster member (issue 17; `docs/cluster.md`): its
//! configuration, its identity on disk, and the member itself on shard 0
//! ([`node`]). The consensus machinery is the model layer's
//! [`crate::cluster`]; the shards' side of committed changes (the local
//! half) is `server::shard::cluster`.

pub mod config;
pub mod identity;
pub mod node;
pub mod start;

pub use node::{ClusterNode, ClusterStart, Progress};
