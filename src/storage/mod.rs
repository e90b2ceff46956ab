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
//! | [`recovery`] | replaying segments into queues at shard start |
//! | [`log`] | the running log: appends, flushes, poisoning, reclaim |
//! | [`meta`] | the data dir's shard count |
//! | [`definitions`] | durable exchanges and bindings (shard 0 writes them) |
//!
//! Nothing here knows about connections: the shard hands in opaque
//! waiters (its deferred confirms) and gets them back after a flush.

pub mod definitions;
pub mod io;
pub mod log;
pub mod meta;
pub mod record;
pub mod recovery;

pub use log::{Flushed, Storage};
pub use recovery::{Recovered, RecoveredQueue, RecoveryReport};

use serde::Deserialize;
use std::path::PathBuf;

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
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "corrupt record in sealed segment {path} at offset {offset}: {why}; \
         set storage_skip_corrupt = true to start anyway and lose the rest of that segment"
    )]
    Corrupt { path: PathBuf, offset: u64, why: &'static str },
    #[error("segment {path} was written by shard {found_shard} of {found_count}; this is shard {shard} of {count}")]
    WrongShard { path: PathBuf, found_shard: u16, found_count: u16, shard: u16, count: u16 },
    #[error("segment {path} has format version {found}; this build reads version {supported}")]
    Version { path: PathBuf, found: u32, supported: u32 },
    #[error("storage is poisoned since an earlier I/O error: {0}")]
    Poisoned(String),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }
}
