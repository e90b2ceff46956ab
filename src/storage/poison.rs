//! Poisoning: after a failed write or fdatasync nothing more is written
//! to the shard's log (`docs/storage.md`, Poisoning). The appends and
//! acks it holds are dropped, so the flusher has nothing left to do but
//! answer waiters with the error; a failure for want of space is told
//! apart, so refusals can say the disk is full.

use super::log::{State, Storage};
use super::StorageError;

impl<W> Storage<W> {
    pub fn poisoned(&self) -> Option<String> {
        self.st.borrow().poisoned.clone()
    }

    /// Whether the log is poisoned because the disk was full.
    pub fn disk_full(&self) -> bool {
        let st = self.st.borrow();
        st.poisoned.is_some() && st.disk_full
    }

    /// Poisons the log (once): nothing more is written, pending appends
    /// and acks are dropped, so the flusher has nothing left to do.
    pub(super) fn poison(&self, e: &StorageError) -> String {
        let msg = e.to_string();
        let full = is_out_of_space(e);
        let mut st = self.st.borrow_mut();
        if st.poisoned.is_none() {
            if full {
                tracing::error!(shard = self.opts.shard, error = %msg, "disk full (no space left on device): shard's log poisoned, persistent publishes refused until space is freed and the broker restarted");
            } else {
                tracing::error!(shard = self.opts.shard, error = %msg, "storage write or fdatasync failed: shard poisoned, persistent publishes refused from now on");
            }
            st.poisoned = Some(msg.clone());
            st.disk_full = full;
        }
        st.chunks.clear();
        drop_acks(&mut st);
        msg
    }
}

/// Acks not yet logged, dropped: a poisoned log writes nothing (they
/// only mean redelivery after a restart).
pub(super) fn drop_acks<W>(st: &mut State<W>) {
    st.acks_pending = false;
    for q in st.queues.values_mut() {
        q.acks = Vec::new();
    }
}

/// Whether a failed write means the filesystem is out of space (or of
/// the user's quota) rather than broken.
pub fn is_out_of_space(e: &StorageError) -> bool {
    match e {
        StorageError::Io { source, .. } => {
            matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                || source.kind() == std::io::ErrorKind::StorageFull
                || source.kind() == std::io::ErrorKind::QuotaExceeded
        }
        _ => false,
    }
}
