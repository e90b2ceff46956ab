//! Delivery back pressure. A consumer whose socket does not drain must not
//! make the broker buffer its messages: once its connection's outbox holds
//! `outbox_bytes_max` bytes (queued or being written), the queues' owners
//! stop dispatching to that connection, and its messages stay in the
//! queue (or on disk) where the memory budget and the length limits see
//! them. When the outbox has drained to half, the owners are told and
//! dispatch resumes.
//!
//! The owner's side is one set of stopped connections per shard
//! (`Shard::takes_deliveries`: an `is_empty` check when no connection is
//! stopped, once per queue dispatch). The connection's side is this gate:
//! which owners stopped, and a watch task that tells remote owners and
//! sends the resumes. The outbox can pass its bound by what one dispatch
//! hands one consumer (at most its prefetch) per queue it consumes from,
//! plus what was on its way over the mesh before the owner heard.

use super::shard::Shard;
use super::types::{ConnRef, Request};
use crate::rt::{Notify, Outbox};
use std::cell::RefCell;

#[derive(Default)]
pub struct DeliveryGate {
    /// Owner shards that stopped dispatching to this connection.
    owners: RefCell<Vec<u16>>,
    /// Of those, the ones on other shards still to be told.
    to_tell: RefCell<Vec<u16>>,
    kick: Notify,
}

impl DeliveryGate {
    /// `owner` has stopped dispatching to this connection (it is this
    /// shard and did so itself), or must be told to (another shard).
    /// Never calls into the shard: the watch task does.
    pub fn stopped_at(&self, owner: u16, here: u16) {
        let mut owners = self.owners.borrow_mut();
        if owners.contains(&owner) {
            return;
        }
        owners.push(owner);
        if owner != here {
            self.to_tell.borrow_mut().push(owner);
        }
        self.kick.notify();
    }

    /// The connection's watch task: tells remote owners to stop, and once
    /// the outbox has drained to half its bound (or the connection is
    /// closing), tells every owner to resume. Ends with the connection.
    pub async fn run(&self, shard: &Shard, me: ConnRef, outbox: &Outbox) {
        let low = shard.config.outbox_bytes_max as usize / 2;
        loop {
            let kicked = self.kick.notified();
            // Taken first: a submit handled here can call `stopped_at`.
            let tell = std::mem::take(&mut *self.to_tell.borrow_mut());
            for owner in tell {
                shard.submit(me, 0, owner, Request::Deliveries { open: false });
            }
            let stopped = !self.owners.borrow().is_empty();
            if stopped && (outbox.pending_bytes() <= low || outbox.is_closing()) {
                let owners = std::mem::take(&mut *self.owners.borrow_mut());
                for owner in owners {
                    shard.submit(me, 0, owner, Request::Deliveries { open: true });
                }
                continue;
            }
            if outbox.is_closing() && !stopped {
                return;
            }
            if stopped {
                futures_lite::future::or(kicked, outbox.wait_pending_below(low)).await;
            } else {
                futures_lite::future::or(kicked, outbox.wait_finished()).await;
            }
        }
    }
}
