//! A producer's open batch ([`Open`]) and its kept batches: with recovery
//! on and confirms, each batch
//! sent and not yet confirmed stays here until its confirm (or a failure)
//! settles it, so that recovery can send it again after a redial, in
//! order, or fail it. Generic over the shell's pointers (`Rc` on glommio,
//! `Arc` on tokio) to the batch and to its outcome; the shell keeps it in
//! its own cell and never holds that cell while sending.

use super::batch::Batch;
use super::incoming::Response;
use crate::client::{ClientError, Result};
use std::collections::BTreeMap;

/// The batch being filled, and the outcome its messages await (`D`: the
/// shell's handle on it).
pub(crate) struct Open<D> {
    pub(crate) batch: Batch,
    pub(crate) done: D,
}

impl<D> Open<D> {
    pub(crate) fn new(id: u64, done: D) -> Self {
        Self { batch: Batch::new(id), done }
    }

    /// The open batch to send, if it has messages, replaced by the next
    /// one (empty, awaited through `done()`).
    pub(crate) fn take(&mut self, done: impl FnOnce() -> D) -> Option<Self> {
        if self.batch.count() == 0 {
            return None;
        }
        let next = Open::new(self.batch.id + 1, done());
        Some(std::mem::replace(self, next))
    }
}

/// Batches sent and not yet confirmed, by batch id (so a republish keeps
/// their order), each with the outcome its messages await. Bounded by the
/// producer's `in_flight_max`: a batch is kept only inside the window.
pub(crate) struct Kept<B, D> {
    batches: BTreeMap<u64, (B, D)>,
}

impl<B, D> Default for Kept<B, D> {
    fn default() -> Self {
        Self { batches: BTreeMap::new() }
    }
}

impl<B: Clone, D: Clone> Kept<B, D> {
    /// Keeps batch `id` until it is settled.
    pub(crate) fn keep(&mut self, id: u64, batch: B, done: D) {
        self.batches.insert(id, (batch, done));
    }

    /// Batch `id` is settled: no longer kept; its outcome to resolve, if
    /// it was still kept.
    pub(crate) fn settle(&mut self, id: u64) -> Option<D> {
        self.batches.remove(&id).map(|(_, done)| done)
    }

    /// Every kept batch, in order, to send again (a copy: sending may
    /// settle one, and the shell's cell must be free for that).
    pub(crate) fn to_send(&self) -> Vec<(u64, B, D)> {
        self.batches.iter().map(|(id, (b, d))| (*id, b.clone(), d.clone())).collect()
    }

    /// The ids of every kept batch, in order, to fail.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.batches.keys().copied().collect()
    }

    /// Empties it (the producer is gone): the outcomes still to resolve.
    pub(crate) fn take_all(&mut self) -> Vec<D> {
        std::mem::take(&mut self.batches).into_values().map(|(_, done)| done).collect()
    }
}

/// A `Publish` of `expect` messages answered: confirmed only by a
/// `Confirm` of that many.
pub(crate) fn confirm_outcome(r: Result<Response>, expect: u32) -> Result<()> {
    match r {
        Ok(Response::Confirm(n)) if n == expect => Ok(()),
        Ok(other) => Err(ClientError::Protocol(format!("publish of {expect} answered with {other:?}"))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_batches_come_back_in_order_and_leave_when_settled() {
        let mut k: Kept<&str, u32> = Kept::default();
        k.keep(3, "c", 30);
        k.keep(1, "a", 10);
        k.keep(2, "b", 20);
        assert_eq!(k.to_send(), vec![(1, "a", 10), (2, "b", 20), (3, "c", 30)]);
        assert_eq!(k.settle(2), Some(20));
        assert_eq!(k.settle(2), None);
        assert_eq!(k.ids(), vec![1, 3]);
        assert_eq!(k.take_all(), vec![10, 30]);
        assert!(k.ids().is_empty());
    }

    #[test]
    fn only_a_confirm_of_every_message_confirms() {
        assert!(confirm_outcome(Ok(Response::Confirm(4)), 4).is_ok());
        assert!(matches!(confirm_outcome(Ok(Response::Confirm(3)), 4), Err(ClientError::Protocol(_))));
        let e = ClientError::Closed("gone".into());
        assert!(matches!(confirm_outcome(Err(e), 4), Err(ClientError::Closed(_))));
    }
}
