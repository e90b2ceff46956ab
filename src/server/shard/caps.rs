//! Shard 0's checks and bookkeeping for routing changes: the count limits
//! (`exchanges_max`, `bindings_max`) and the set of stored (durable)
//! bindings.

use super::routing::key_of;
use super::Shard;
use crate::protocol::ErrorCode;
use crate::routing::{Change, Dest, RoutingTable};
use crate::server::types::QueueError;

impl Shard {
    /// `exchanges_max` and `bindings_max`: a change that would add one
    /// past its limit is refused (an identical redeclare or rebind adds
    /// nothing and passes).
    pub(super) fn check_caps(&self, table: &RoutingTable, change: &Change) -> Result<(), QueueError> {
        let c = &self.config;
        match change {
            Change::DeclareExchange(d)
                if table.exchange(&d.name).is_none() && table.exchange_count() >= c.exchanges_max as usize =>
            {
                Err(QueueError::new(
                    ErrorCode::DefinitionLimit,
                    format!("cannot declare exchange '{}': exchanges_max ({}) is reached", d.name, c.exchanges_max),
                ))
            }
            Change::Bind(b) if !table.is_bound(b) && table.binding_count() >= c.bindings_max as usize => {
                Err(QueueError::new(
                    ErrorCode::DefinitionLimit,
                    format!(
                        "cannot bind '{}' to '{}': bindings_max ({}) is reached",
                        b.source,
                        b.dest.name(),
                        c.bindings_max
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Keeps the set of stored bindings in step; true when it changed.
    pub(super) fn track_durable_bindings(&self, table: &RoutingTable, change: &Change, durable_dest: bool) -> bool {
        let mut set = self.routing.durable_bindings.borrow_mut();
        let before = set.len();
        match change {
            Change::Bind(b) => {
                let dest_durable = match &b.dest {
                    Dest::Queue(_) => durable_dest,
                    Dest::Exchange(x) => table.exchange(x).is_some_and(|x| x.durable),
                };
                if dest_durable && table.exchange(&b.source).is_some_and(|x| x.durable) {
                    set.insert(key_of(b));
                }
            }
            Change::Unbind(b) => {
                set.remove(&key_of(b));
            }
            Change::DeleteExchange(n) => {
                set.retain(|(s, d, _, _)| s != n && !matches!(d, Dest::Exchange(x) if x == n));
            }
            Change::QueueGone(q) => set.retain(|(_, d, _, _)| !matches!(d, Dest::Queue(x) if x == q)),
            Change::DeclareExchange(_) => {}
        }
        set.len() != before
    }
}
