//! File I/O for the Raft store.
//!
//! Which API, and why: plain `std::fs`, run on the glommio executor's
//! blocking thread pool (`spawn_blocking`), never on the executor's own
//! thread. The group lives on shard 0, which also serves clients; an
//! fdatasync takes milliseconds, a rename plus a directory fsync waits for
//! a journal commit, and none of that may stall the shard. glommio's DMA
//! files would keep writes on io_uring, but they want block-aligned
//! buffers, and this log's records are small and unaligned; its buffered
//! files send truncate, rename and remove to the same blocking pool
//! anyway. The volume is metadata (a few records per change), so a
//! thread hop per write costs nothing that matters. `storage/io.rs` does
//! the same for its unlinks and directory syncs.
//!
//! The functions without `async` are the blocking halves; recovery calls
//! them directly, and the tests do too.

use super::record::{self, Next, Scanner, HEADER_BYTES};
use super::StoreError;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

/// Runs `f` on the executor's blocking thread pool and waits for it
/// without blocking other tasks.
pub(super) async fn blocking<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Makes creations, renames and removals in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}

/// Replaces `dir/name` with one record holding `payload`, durably: a
/// temporary file is written and fdatasync'ed, renamed over the old one,
/// and the directory synced. A crash leaves the old file or the new one,
/// whole.
pub(super) fn replace_file(dir: &Path, name: &str, payload: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    record::encode_into(&mut bytes, payload);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()
    };
    write().map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)
}

/// Reads a file written by [`replace_file`]: `None` if it is not there.
/// Such a file is replaced whole, never appended to, so anything but one
/// whole record is damage: an error, not a tail to cut.
pub(super) fn read_file(path: &Path, max: u32) -> Result<Option<Vec<u8>>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let len = f.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut scan = Scanner::new(BufReader::new(f), len, max);
    let bad =
        |offset: u64, what: &str| StoreError::Inconsistent { path: path.to_path_buf(), offset, what: what.to_string() };
    let record = |e| StoreError::Record { path: path.to_path_buf(), source: e };
    match scan.next_record().map_err(record)? {
        Next::Record { payload, .. } => match scan.next_record().map_err(record)? {
            Next::End => Ok(Some(payload)),
            Next::Record { offset, .. } | Next::Torn { offset } => {
                Err(bad(offset, "bytes after the file's one record"))
            }
        },
        Next::End => Err(bad(0, "empty file")),
        Next::Torn { offset } => Err(bad(offset, "the file's one record is incomplete")),
    }
}

/// Decodes a postcard payload read at `offset` of `path`.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    path: &Path,
    offset: u64,
    payload: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(payload).map_err(|source| StoreError::Decode { path: path.to_path_buf(), offset, source })
}

/// Encodes a payload, refusing one over `max` (recovery would refuse it).
pub(super) fn encode<T: serde::Serialize>(value: &T, max: u32) -> Result<Vec<u8>, StoreError> {
    let bytes = postcard::to_allocvec(value).map_err(StoreError::Encode)?;
    if bytes.len() > crate::protocol::wire::usize_of(u64::from(max)) {
        return Err(StoreError::TooBig { len: bytes.len(), max });
    }
    Ok(bytes)
}

/// Removes `path` if it is there (a leftover temporary file).
pub(super) fn remove_if_there(path: PathBuf) -> Result<(), StoreError> {
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}
