//! Cluster metadata by consensus: issue 17's steps 1 and 2. One Raft
//! group (openraft 0.9, single-threaded mode) runs on a glommio executor
//! with no tokio runtime, logs durably into files of its own, applies
//! committed commands to a state machine the broker will supply, and
//! talks to its peers over the inter-node link. `docs/cluster.md` says
//! what is built and what comes next.
//!
//! | file | what |
//! |---|---|
//! | [`rt`] | openraft's `AsyncRuntime` on glommio: spawn, timers, instants, oneshot |
//! | [`record`] | the on-disk record: length, CRC, payload; the scanner that treats a file as hostile |
//! | `files` | blocking-pool file I/O, and small files replaced atomically (vote, purge point, snapshot) |
//! | [`log_store`] | the durable Raft log and vote (`RaftLogStorage`), fdatasync'ed before openraft hears "flushed" |
//! | [`state_machine`] | applies committed commands through [`Apply`], telling an observer; snapshots built to and installed from a file |
//! | [`service`] | a member's own requests, answered by the leader: a change forwarded, a join, a node forgotten, the group's status |
//! | [`meta`] | the broker's metadata as the group agrees on it (`ClusterMeta`: routing table, nodes) |
//! | [`snapshot_buf`] | a snapshot in flight: a buffer a peer's chunks cannot grow past `snapshot_bytes_max` |
//! | [`link`] | the inter-node link: Raft RPCs over TCP in the link codec ([`crate::protocol::link`]), authenticated, bounded, redialled with backoff |
//!
//! Tests: `store_tests` (the files: reopen, torn tail, damage, bounds;
//! snapshots); three-member groups on three executors (harness
//! `test_group`) over `test_net`, an in-process transport that exists
//! only for tests (`group_tests`), and over TCP through the link
//! (`link_tests`: restarts, peers without the secret, peers that send
//! garbage).
//!
//! This is a core-layer part: it may use `storage`, `protocol` and `rt`
//! (the frame reader and the outbox), never a front end.

// Lengths narrowed with `as` could wrap silently: each narrowing here says
// how (`protocol::wire::{len32, usize_of}`).
#![deny(clippy::cast_possible_truncation)]

mod files;
pub mod link;
pub mod log_store;
pub mod meta;
pub mod record;
pub mod rt;
pub mod service;
pub mod snapshot_buf;
pub mod state_machine;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod test_group;
#[cfg(test)]
mod test_kv;
#[cfg(test)]
mod test_net;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::PathBuf;

pub use log_store::LogStore;
pub use rt::GlommioRuntime;
pub use state_machine::{Event, Observer, StateMachine, StateView};

/// What the metadata state machine applies committed commands to. The
/// broker implements it (exchanges, bindings, queues, users) in a later
/// step; the tests implement it for a small key-value map.
///
/// The state is serialized whole into a snapshot (postcard), so it must be
/// serde-able, and `Default` is the state before the first command.
pub trait Apply: Default + Serialize + DeserializeOwned + 'static {
    /// One change, as the log carries it to every member.
    type Command: Clone + Debug + Serialize + DeserializeOwned + 'static;
    /// What applying a change answers the `client_write` that proposed it.
    type Response: Clone + Debug + Serialize + DeserializeOwned + 'static;

    /// Applies one committed command. Deterministic: every member applies
    /// the same commands in the same order and must reach the same state.
    fn apply(&mut self, command: &Self::Command) -> Self::Response;
}

/// The Raft type config of a metadata group applying `A`. A member's id is
/// a `u64`; its `BasicNode` holds the address its peers reach it at.
///
/// `R` is `Option<A::Response>`: entries that carry no command (a new
/// leader's blank entry, a membership change) answer `None`.
///
/// The snapshot travels as an in-memory buffer because openraft 0.9 wants
/// tokio's `AsyncRead + AsyncWrite + AsyncSeek` for it, and tokio's files
/// need a tokio runtime; metadata is small, the buffer is bounded
/// (`StoreLimits::snapshot_bytes_max`), and at rest it is a file.
pub struct MetaRaft<A>(PhantomData<fn() -> A>);

// By hand: derives would demand the same of `A`, which is only a marker.
impl<A> Debug for MetaRaft<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaRaft")
    }
}
impl<A> Clone for MetaRaft<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for MetaRaft<A> {}
impl<A> Default for MetaRaft<A> {
    fn default() -> Self {
        Self(PhantomData)
    }
}
impl<A> PartialEq for MetaRaft<A> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<A> Eq for MetaRaft<A> {}
impl<A> PartialOrd for MetaRaft<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for MetaRaft<A> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<A: Apply> openraft::RaftTypeConfig for MetaRaft<A> {
    type D = A::Command;
    type R = Option<A::Response>;
    type NodeId = NodeId;
    type Node = openraft::BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = snapshot_buf::SnapshotBuf;
    type AsyncRuntime = GlommioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

/// A member's id in the metadata group.
pub type NodeId = u64;

/// Bounds on what the store writes and, on recovery, believes: a length
/// read from a file is checked against these before anything is
/// allocated for it.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// The largest encoded log entry (one metadata command with its
    /// framing). A bigger one is refused on append and, read back, is a
    /// corrupt file.
    pub raft_entry_bytes_max: u32,
    /// The largest encoded snapshot (the whole metadata state).
    pub snapshot_bytes_max: u32,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            // A definitions import is one command; 4 MiB holds thousands
            // of declarations while keeping a hostile length harmless.
            raft_entry_bytes_max: 4 << 20,
            // Metadata for ~100,000 queues with their bindings is tens of
            // MiB; past 256 MiB something is wrong.
            snapshot_bytes_max: 256 << 20,
        }
    }
}

/// A failure of the Raft store: its files, their contents, or the thread
/// that does its I/O.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A record in a file is not what was written: its offset tells where.
    #[error("{}: {source}", path.display())]
    Record { path: PathBuf, source: record::ScanError },
    /// A record checked out but its contents do not decode.
    #[error("{}: record at offset {offset} does not decode: {source}", path.display())]
    Decode { path: PathBuf, offset: u64, source: postcard::Error },
    /// Records that decode but break the log's order (an index out of
    /// sequence, a second record in a one-record file).
    #[error("{}: record at offset {offset}: {what}", path.display())]
    Inconsistent { path: PathBuf, offset: u64, what: String },
    #[error("encoding a record: {0}")]
    Encode(postcard::Error),
    /// Refused on write: recovery would refuse it on read.
    #[error("a record of {len} bytes is more than its limit ({max} bytes)")]
    TooBig { len: usize, max: u32 },
}

impl StoreError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
