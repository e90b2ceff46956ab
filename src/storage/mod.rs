//! Durable storage: one append-only log per shard in `data_dir/shard-N/`,
//! cut into segments, written with O_DIRECT from aligned buffers, with
//! group commit (one write and one fdatasync per flush for everything
//! appended since the last one), crash recovery and segment reclaim.
//! The format and the guarantees are in `docs/storage.md`.
//!
//! | file | what |
//! |---|---|
//! | [`record`] | the record format, encoding, the verifying scanner |
//! | [`io`] | the file I/O trait, its DMA implementation, fault injection |
//! | `aligned` | O_DIRECT write buffers, kept for reuse |
//! | [`recovery`] | replaying segments into queues at shard start |
//! | [`log`] | the running log: appends, flushes, reclaim |
//! | `poison` | a failed write stops the log; a full disk is told apart |
//! | `housekeep` | preparing the next segment (reusing a dead one), deleting the rest |
//! | [`compact`] | re-appending the live records of a mostly dead segment |
//! | [`read`] | reading spilled message entries back (DMA reads) |
//! | `runs` | where each queue's live messages are, per segment |
//! | [`origin`] | where messages were published to (exchange, routing key): the records, kept while they cover live messages |
//! | `search` | is there a valid record after a bad one (torn tail or damage) |
//! | [`sim`] | the power-loss simulator the tests run the log over |
//! | [`meta`] | the data dir's shard count |
//! | [`definitions`] | durable exchanges and bindings (shard 0 writes them) |
//!
//! Nothing here knows about connections: the shard hands in opaque
//! waiters (its deferred confirms) and gets them back after a flush.

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate, usize_of}`, or an
// `allow` with the reason).
#![deny(clippy::cast_possible_truncation)]

mod aligned;
pub mod compact;
pub mod definitions;
mod flush;
mod housekeep;
pub mod io;
pub mod io_stats;
pub mod log;
pub mod meta;
pub mod origin;
mod poison;
pub mod read;
pub mod record;
pub mod recovery;
mod runs;
mod search;
pub mod sim;

pub use compact::Moved;
pub use log::{Flushed, Storage};
pub use origin::Origin;
pub use record::{SEQ_LIMIT, STREAM_REFERENCE_BYTES_MAX};
pub use recovery::{Recovered, RecoveredMsg, RecoveredOrigin, RecoveredQueue, RecoveryReport};

use serde::Deserialize;
use std::num::NonZeroU32;
use std::path::PathBuf;

/// Where a publish record sits in the log: segment, offset of the record
/// in it, and the length of the message entry it carries. A spilled
/// message keeps only this (16 bytes) in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: NonZeroU32,
    pub off: u32,
    pub len: u32,
}

impl Loc {
    /// `None` when a number does not fit (segment past u32: never spilled).
    pub fn new(seg: u64, off: u64, len: usize) -> Option<Self> {
        Some(Self {
            seg: NonZeroU32::new(u32::try_from(seg).ok()?)?,
            off: u32::try_from(off).ok()?,
            len: u32::try_from(len).ok()?,
        })
    }

    pub fn segment(&self) -> u64 {
        u64::from(self.seg.get())
    }

    /// Bytes of the whole record (header, sequence number, entry).
    pub fn record_len(&self) -> u64 {
        (record::HEADER_BYTES + 8) as u64 + u64::from(self.len)
    }
}

/// When the log is fdatasync'ed; see `docs/storage.md` for what each risks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Every flush ends with fdatasync before its confirms go out.
    #[default]
    Always,
    /// Confirms go out after the O_DIRECT write; fdatasync every
    /// `fsync_interval_ms`.
    Interval,
    /// Never fdatasync while running (only at clean shutdown).
    Never,
}

#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// This shard's directory (`data_dir/shard-N`).
    pub dir: PathBuf,
    pub shard: u16,
    pub shard_count: u16,
    /// A segment is sealed and a new one started once it holds this much.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// Skip (and report) a corrupt record in a sealed segment instead of
    /// refusing to start; the rest of that segment is lost.
    pub skip_corrupt: bool,
    /// Compact the oldest sealed segment once its live bytes fall under
    /// this percentage of its size (or those of all sealed segments do);
    /// 0 turns compaction off.
    pub compact_live_ratio_pct: u32,
    /// Dead segments kept to be reused as the next ones (`housekeep.rs`).
    pub segments_recycled_max: u32,
    /// Entry bytes recovery keeps in memory; past it recovered messages
    /// keep only their location (the shard's `memory_budget_bytes`).
    pub resident_bytes_max: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "corrupt record in segment {path} at offset {offset}: {why}; \
         set storage_skip_corrupt = true to start anyway and lose the rest of that segment"
    )]
    Corrupt { path: PathBuf, offset: u64, why: &'static str },
    #[error("segment {path} was written by shard {found_shard} of {found_count}; this is shard {shard} of {count}")]
    WrongShard { path: PathBuf, found_shard: u16, found_count: u16, shard: u16, count: u16 },
    #[error("segment {path} has format version {found} (or a header that does not match it); this build reads versions 1 to {supported}")]
    Version { path: PathBuf, found: u32, supported: u32 },
    #[error("storage is poisoned since an earlier I/O error: {0}")]
    Poisoned(String),
    #[error("the log's queue ids are used up (the next would be past 2^32 - 1): no durable queue can be declared")]
    QueueIdsExhausted,
    /// A segment file larger than any the log writes (it is read whole).
    #[error(
        "segment {path} is {size} bytes, more than any segment the log writes ({max}): refusing to read it into memory"
    )]
    Oversized { path: PathBuf, size: u64, max: u64 },
    #[error(
        "{path} is corrupt: {why}. Durable exchanges and bindings cannot be recovered from it; \
         move it away to start without them"
    )]
    Definitions { path: PathBuf, why: definitions::DefsError },
    #[error(
        "data dir {dir} was written by a broker with {found} shards, and this one would run {wanted}. \
         Queues live on the shard their name hashes to, so the shard count of a data dir cannot change: \
         start with `--cores {found}` (or `cores = {found}`), or move the data dir away to start empty \
         (its persistent messages are then not recovered)"
    )]
    ShardCount { dir: PathBuf, found: usize, wanted: usize },
    #[error("{path} is {size} bytes, over the {max} limit of a definitions file")]
    DefinitionsTooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{0}: no valid `shards=` line")]
    BadMeta(PathBuf),
    #[error("spilled record in segment {seg} at offset {off} does not verify: {why}")]
    BadRead { seg: u64, off: u32, why: &'static str },
    /// A recovered queue's messages could not be read back (the queue
    /// cannot hold spilled ones).
    #[error("queue '{queue}': reading recovered messages back: {source}")]
    Restore { queue: String, source: Box<StorageError> },
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }
}
