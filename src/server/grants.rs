//! A logged-in connection's permissions (`auth/permissions.rs`), checked
//! by the front ends on every operation that names a queue or exchange:
//! declare and delete (configure), publish and bind to (write), consume,
//! get, purge and bind from (read). The user's permissions are read from
//! the shard's copy of the users and kept until the users change (a
//! generation number), so a check costs a regular expression match per
//! operation, and a publish batch to the exchange last allowed costs a
//! string compare.

use super::shard::Shard;
use super::types::QueueError;
use crate::auth::permissions::{exchange_resource, Perm, Permission};
use crate::protocol::ErrorCode;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Refusals of one connection that are logged; the rest are not (each is
/// still answered).
const REFUSALS_LOGGED_MAX: u32 = 10;

/// What a queue or exchange is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queue,
    Exchange,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Exchange => "exchange",
        }
    }
}

pub struct Grants {
    user: String,
    /// The vhost the connection works in.
    vhost: String,
    /// The users' generation and the user's permissions read at it.
    cached: RefCell<(u64, Option<Arc<Permission>>)>,
    /// The exchange the last publish was allowed to, at that generation.
    last_write: RefCell<(u64, String)>,
    refusals: Cell<u32>,
}

impl Grants {
    pub fn new(shard: &Shard, user: &str, vhost: &str) -> Self {
        Self {
            user: user.to_string(),
            vhost: vhost.to_string(),
            cached: RefCell::new(shard.permission_of(user, vhost)),
            last_write: RefCell::new((u64::MAX, String::new())),
            refusals: Cell::new(0),
        }
    }

    /// The user the connection logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The vhost the connection works in.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// May this connection do `p` on `kind` `name`?
    pub fn check(&self, shard: &Shard, p: Perm, kind: Kind, name: &str) -> Result<(), QueueError> {
        let generation = shard.users_generation();
        if self.cached.borrow().0 != generation {
            *self.cached.borrow_mut() = shard.permission_of(&self.user, &self.vhost);
        }
        let name = if kind == Kind::Exchange { exchange_resource(name) } else { name };
        if self.cached.borrow().1.as_ref().is_some_and(|perm| perm.allows(p, name)) {
            return Ok(());
        }
        Err(self.refused(p, kind, name))
    }

    /// A publish to `exchange`: write on it, remembered while the users do
    /// not change.
    #[inline]
    pub fn check_publish(&self, shard: &Shard, exchange: &str) -> Result<(), QueueError> {
        let generation = shard.users_generation();
        {
            let last = self.last_write.borrow();
            if last.0 == generation && last.1 == exchange {
                return Ok(());
            }
        }
        self.check(shard, Perm::Write, Kind::Exchange, exchange)?;
        *self.last_write.borrow_mut() = (generation, exchange.to_string());
        Ok(())
    }

    fn refused(&self, p: Perm, kind: Kind, name: &str) -> QueueError {
        let name: String = name.chars().take(255).collect();
        let message =
            format!("access to {} '{name}' in vhost '{}' refused for user '{}'", kind.as_str(), self.vhost, self.user);
        let n = self.refusals.get();
        if n < REFUSALS_LOGGED_MAX {
            self.refusals.set(n + 1);
            tracing::warn!(user = self.user, permission = p.as_str(), "{message}");
        }
        QueueError::new(ErrorCode::AccessRefused, message)
    }
}
