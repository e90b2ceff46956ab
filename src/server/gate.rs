//! Delivery back pressure. A consumer whose socket does not drain must not
//! make the broker buffer its messages: a queue's owner hands a consumer's
//! connection only as many bytes as it has room for, and its messages stay
//! in the queue (or on disk) where the memory budget and the length limits
//! see them. The outbox holds at most `outbox_bytes_max` plus one message
//! per consumer.
//!
//! - An owner on the connection's shard asks the outbox directly: its room
//!   is `outbox_bytes_max` less what it holds. Once that runs out the owner
//!   stops dispatching to the connection, and this gate resumes it when the
//!   outbox has drained to half.
//! - An owner on another shard cannot ask without a hop, so it keeps a
//!   window of credit (`shard/gate.rs`): it forwards at most half of
//!   `outbox_bytes_max` (split among the other shards) not yet granted back.
//!   This gate counts what arrives from each remote owner and grants it
//!   back, a quarter of the window at a time, whenever the outbox is at
//!   half or below: a fast consumer's window never closes, a slow one's
//!   stays shut until it drains.
//!
//! Deliveries are counted alike on both sides ([`delivery_cost`]).

use super::shard::Shard;
use super::types::{ConnRef, Request};
use crate::rt::{Notify, Outbox};
use std::cell::RefCell;

pub use super::queue::delivery_cost;

#[derive(Default)]
pub struct DeliveryGate {
    /// Owners on this shard that stopped dispatching to this connection.
    owners: RefCell<Vec<u16>>,
    /// Bytes received from each remote owner and not yet granted back.
    ungranted: RefCell<Vec<(u16, usize)>>,
    kick: Notify,
}

/// Owners on other nodes (`server::remote`) are granted credit back at
/// least every this many bytes, and give a connection there a window of
/// at least [`REMOTE_NODE_WINDOW_MIN`]: nodes may differ in shard count
/// and `outbox_bytes_max`, and a grant threshold past the other side's
/// window would stop deliveries for good.
pub const REMOTE_NODE_GRANT_BYTES: usize = 64 << 10;
pub const REMOTE_NODE_WINDOW_MIN: usize = 256 << 10;

/// A remote owner's window of credit for one connection: half of
/// `outbox_bytes_max`, split among the shards that may send.
pub fn remote_window(outbox_bytes_max: u32, shards: u16) -> usize {
    let others = usize::from(shards.max(2) - 1);
    (outbox_bytes_max as usize / 2 / others).max(4)
}

impl DeliveryGate {
    /// `owner`, on this shard, has stopped dispatching to this connection.
    /// Never calls into the shard: the watch task does.
    pub fn stopped_at(&self, owner: u16) {
        let mut owners = self.owners.borrow_mut();
        if !owners.contains(&owner) {
            owners.push(owner);
            self.kick.notify();
        }
    }

    /// `bytes` of deliveries arrived from remote `owner`; the watch task
    /// grants them back once a quarter of the window has gathered.
    pub fn received(&self, owner: u16, bytes: usize, window: usize) {
        let mut ungranted = self.ungranted.borrow_mut();
        let i = match ungranted.iter().position(|(o, _)| *o == owner) {
            Some(i) => i,
            None => {
                ungranted.push((owner, 0));
                ungranted.len() - 1
            }
        };
        let before = ungranted[i].1;
        ungranted[i].1 = before.saturating_add(bytes);
        let quarter =
            if super::remote::is_remote(owner) { (window / 4).min(REMOTE_NODE_GRANT_BYTES) } else { window / 4 };
        if before < quarter && ungranted[i].1 >= quarter {
            self.kick.notify();
        }
    }

    /// The connection's watch task: whenever the outbox is at half its
    /// bound or below (or the connection is closing), resumes the owners
    /// on this shard that stopped and grants remote owners their credit
    /// back. Ends with the connection.
    pub async fn run(&self, shard: &Shard, me: ConnRef, outbox: &Outbox) {
        let low = shard.config.outbox_bytes_max as usize / 2;
        let quarter = remote_window(shard.config.outbox_bytes_max, shard.count) / 4;
        loop {
            let kicked = self.kick.notified();
            let threshold = |owner: u16| {
                if super::remote::is_remote(owner) {
                    quarter.min(REMOTE_NODE_GRANT_BYTES)
                } else {
                    quarter
                }
            };
            let due =
                !self.owners.borrow().is_empty() || self.ungranted.borrow().iter().any(|(o, b)| *b >= threshold(*o));
            if due && (outbox.pending_bytes() <= low || outbox.is_closing()) {
                let owners = std::mem::take(&mut *self.owners.borrow_mut());
                for owner in owners {
                    shard.submit(me, 0, owner, Request::DeliveriesResume);
                }
                let grants: Vec<(u16, usize)> = self
                    .ungranted
                    .borrow_mut()
                    .iter_mut()
                    .filter(|(o, b)| *b >= threshold(*o))
                    .map(|(o, b)| (*o, std::mem::take(b)))
                    .collect();
                for (owner, bytes) in grants {
                    shard.submit(me, 0, owner, Request::DeliveriesCredit { bytes });
                }
                continue;
            }
            if outbox.is_closing() {
                return;
            }
            if due {
                futures_lite::future::or(kicked, outbox.wait_pending_below(low)).await;
            } else {
                futures_lite::future::or(kicked, outbox.wait_finished()).await;
            }
        }
    }
}
