//! Shard 0's checks of routing changes against the count limits
//! (`exchanges_max`, `bindings_max`).

use super::Shard;
use crate::protocol::ErrorCode;
use crate::routing::{Change, RoutingTable};
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
}
