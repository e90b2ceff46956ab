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

/// A producer's recovery side, the same in both shells but for the
/// pointer (`Rc` on glommio, `Arc` on tokio) and the outcome's constructor
/// (`$new_done`): `impl Inner` with `conn`, `flush_kept`, `settle_kept`,
/// `republish` and `fail_unconfirmed`, and `Drop for Inner`. Needs from
/// the shell's `Inner`: the fields `conn` and `kept`, and the methods
/// `kept_book()` (the kept batches, when recovery is on), `open_batch()`
/// (the open batch), `window_taken()`/`window_freed()` (the in-flight
/// count, the second waking `publish`) and `send_kept`.
#[cfg(any(feature = "glommio", feature = "tokio"))]
macro_rules! shell_kept_methods {
    ($ptr:ident, $new_done:expr) => {
        /// Recovery's side of a producer: batches kept until confirmed, sent again
        /// or failed after a redial.
        impl Inner {
            pub(crate) fn conn(&self) -> &$ptr<Conn> {
                &self.conn
            }

            /// `flush` with recovery on: the batch is kept until its confirm; while
            /// recovery is under way the open batch waits (it goes out after the
            /// republished ones).
            fn flush_kept(self: &$ptr<Self>) -> Result<()> {
                if !self.conn.is_up() {
                    return Ok(());
                }
                let Some(open) = self.open_batch().take($new_done) else { return Ok(()) };
                let (id, batch, done) = (open.batch.id, $ptr::new(open.batch), open.done);
                self.window_taken();
                if let Some(mut kept) = self.kept_book() {
                    kept.keep(id, batch.clone(), done.clone());
                }
                self.send_kept(id, &batch, &done)
            }

            /// Batch `id` is settled: no longer kept, its confirmations resolve.
            fn settle_kept(&self, id: u64, outcome: Outcome) {
                let done = self.kept_book().and_then(|mut k| k.settle(id));
                if let Some(done) = done {
                    self.window_freed();
                    done.set(outcome);
                }
            }

            /// Sends every kept batch again, in order; returns how many.
            pub(crate) fn republish(self: &$ptr<Self>) -> usize {
                let all = self.kept_book().map_or_else(Vec::new, |k| k.to_send());
                for (id, b, d) in &all {
                    let _ = self.send_kept(*id, b, d);
                }
                all.len()
            }

            /// Fails every kept batch with `err`; returns how many.
            pub(crate) fn fail_unconfirmed(&self, err: &ClientError) -> usize {
                let ids = self.kept_book().map_or_else(Vec::new, |k| k.ids());
                for id in &ids {
                    self.settle_kept(*id, Err(err.clone()));
                }
                ids.len()
            }
        }

        /// A producer dropped while recovery is under way: what it held (kept
        /// batches whose waiters are spent, the open batch) can no longer go out;
        /// their confirmations resolve with `Closed` instead of waiting forever.
        /// While up, sent batches resolve from their confirms (their waiters hold
        /// the outcome, not the producer).
        impl Drop for Inner {
            fn drop(&mut self) {
                if self.kept.is_none() || self.conn.is_up() {
                    return;
                }
                let e = ClientError::Closed("the producer was dropped while its connection was recovering".into());
                let dones = self.kept_book().map_or_else(Vec::new, |mut k| k.take_all());
                for done in dones {
                    done.set(Err(e.clone()));
                }
                self.open_batch().done.set(Err(e));
            }
        }
    };
}
#[cfg(any(feature = "glommio", feature = "tokio"))]
pub(crate) use shell_kept_methods;

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
