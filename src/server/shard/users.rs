//! The shard's copy of the users, and how a run-time change reaches every
//! copy. Shard 0 owns the changes, as it owns routing changes
//! (`meta.rs`): it applies one to its copy, marks the definitions file
//! dirty (the users are stored there from the first change on, replacing
//! the config's seeds), broadcasts it to its peers under the next metadata
//! version, and answers once the file is written and every peer has
//! applied it. After the answer, a login on any shard sees the change.

use super::routing_replica::METADATA_SHARD;
use super::Shard;
use crate::auth::change::{ChangeLimits, UserChange};
use crate::auth::permissions::Permission;
use crate::auth::Users;
use crate::rt::Notify;
use crate::server::admin_users::UserChangeFailed;
use crate::server::config::Config;
use crate::server::mesh::MeshMsg;
use crate::storage::definitions::StoredAccess;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

/// How long shard 0 waits for the file write and the peers' copies:
/// under the 5 s an operator request waits for shard 0.
const CHANGE_WAIT: Duration = Duration::from_secs(4);

/// The users, and on shard 0 whether the definitions file holds them.
/// One part of `Shard`.
pub struct UserStore {
    pub(super) users: RefCell<Users>,
    /// Shard 0: the users are stored in the definitions file (changed at
    /// run time, now or before a restart).
    stored: Cell<bool>,
    /// Shard 0: a definitions write finished or a peer applied a change.
    progress: Notify,
}

impl UserStore {
    /// From the definitions file's users when it holds them, else from the
    /// config's seeds. The config was validated before any shard started.
    pub fn new(config: &Config, stored: Option<&StoredAccess>) -> Self {
        let users = match stored {
            Some(access) => crate::auth::access::users_from(access, &config.loopback_users),
            None => {
                let mut users = Users::new(&config.users, &config.loopback_users).unwrap_or_else(|e| {
                    tracing::error!("users: {e}; no login will succeed");
                    Users::none()
                });
                users.grant_all();
                users
            }
        };
        Self { users: RefCell::new(users), stored: Cell::new(stored.is_some()), progress: Notify::default() }
    }

    /// The users and vhosts as the definitions file stores them, once
    /// they are.
    pub(super) fn to_store(&self) -> Option<StoredAccess> {
        if !self.stored.get() {
            return None;
        }
        Some(crate::auth::access::access_of(&self.users.borrow()))
    }

    /// Wakes a change waiting for the file or the peers.
    pub(super) fn progressed(&self) {
        self.progress.notify();
    }
}

impl Shard {
    /// Shard 0: applies a user change everywhere; `Ok` once it is stored
    /// and every shard has it.
    pub async fn change_users(&self, change: UserChange) -> Result<(), UserChangeFailed> {
        if self.id != METADATA_SHARD {
            return Err(UserChangeFailed::NotStored("user changes go to shard 0".into()));
        }
        let limits = ChangeLimits { users: self.config.users_max as usize, vhosts: self.config.vhosts_max as usize };
        if self.is_clustered() {
            self.users_within(&change, limits)?;
            return self.propose_users(change).await;
        }
        self.users.users.borrow_mut().apply(&change, limits)?;
        let (gen, version) = self.user_change_applied(&change);
        self.wait_user_change(Some(gen), version).await
    }

    /// The node's own bounds on what a change may make exist, checked
    /// before the cluster hears of it (its members' configs may differ).
    fn users_within(&self, change: &UserChange, limits: ChangeLimits) -> Result<(), UserChangeFailed> {
        let users = self.users.users.borrow();
        let refused = |e| Err(UserChangeFailed::Refused(e));
        match change {
            UserChange::Put { name, .. } if users.get(name).is_none() && users.len() >= limits.users => {
                refused(crate::auth::change::ChangeError::TooMany(limits.users))
            }
            UserChange::AddVhost { vhost, .. }
                if !users.vhosts().any(|v| v == vhost) && users.vhosts().count() >= limits.vhosts =>
            {
                refused(crate::auth::vhosts::VhostError::TooMany(limits.vhosts).into())
            }
            _ => Ok(()),
        }
    }

    /// A change now in shard 0's copy: what follows on this shard, the
    /// definitions file marked dirty, and the change sent to every peer
    /// under the next metadata version. The file's generation and that
    /// version.
    pub(super) fn user_change_applied(&self, change: &UserChange) -> (u64, u64) {
        tracing::info!(user = change.user(), vhost = change.vhost(), "{}", change.describe());
        self.after_change(change);
        self.users.stored.set(true);
        let gen = self.definitions_changed();
        let version = self.routing.table.borrow_mut().bump_version();
        for peer in (0..self.count).filter(|p| *p != self.id) {
            self.mesh.forward(peer, MeshMsg::UsersApply { version, change: change.clone() });
        }
        (gen, version)
    }

    /// Waits until every peer has applied `version` (and, with `gen`, the
    /// definitions file holds the change).
    pub(super) async fn wait_user_change(&self, gen: Option<u64>, version: u64) -> Result<(), UserChangeFailed> {
        let done = async {
            loop {
                let woken = self.users.progress.notified();
                let written = match gen {
                    Some(g) => self.definitions_written(g),
                    None => Some(Ok(())),
                };
                if let Some(written) = written {
                    if self.meta_applied_by_all() >= version {
                        return written;
                    }
                }
                woken.await;
            }
        };
        match futures_lite::future::or(async { Some(done.await) }, async {
            glommio::timer::sleep(CHANGE_WAIT).await;
            None
        })
        .await
        {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(UserChangeFailed::NotStored(format!(
                "the change is in effect but could not be stored: {}",
                e.message
            ))),
            None => Err(UserChangeFailed::NotStored(format!(
                "the change was not stored on every shard within {CHANGE_WAIT:?}"
            ))),
        }
    }

    pub(super) fn on_users_apply(&self, version: u64, change: UserChange) {
        if version <= self.routing.table.borrow().version() {
            return;
        }
        if let Err(e) = self.users.users.borrow_mut().apply(&change, ChangeLimits::NONE) {
            tracing::error!(shard = self.id, error = %e, user = change.user(), "user change failed here (bug)");
        }
        self.after_change(&change);
        let mut table = self.routing.table.borrow_mut();
        if table.bump_version() != version {
            tracing::error!(shard = self.id, local = table.version(), version, "metadata copy out of step (bug)");
        }
        self.mesh.forward(METADATA_SHARD, MeshMsg::MetaApplied { shard: self.id, version });
    }

    /// What a change means on this shard beyond the users: a deleted
    /// user's connections end (AMQP `CONNECTION_FORCED`, native
    /// `ShuttingDown`), as in RabbitMQ; a new vhost gets its standard
    /// exchanges; a deleted vhost loses its connections, exchanges,
    /// bindings and this shard's queues in it (`delete_vhost_here`).
    fn after_change(&self, change: &UserChange) {
        match change {
            UserChange::Delete { name } => {
                let n = self.conns.shut_down_user(name, &format!("user '{name}' was deleted"));
                if n > 0 {
                    tracing::info!(shard = self.id, user = %name, connections = n, "a deleted user's connections closed");
                }
            }
            UserChange::AddVhost { vhost, .. } => self.routing.table.borrow_mut().add_vhost(vhost),
            UserChange::DeleteVhost { vhost } => self.delete_vhost_here(vhost),
            _ => {}
        }
    }

    /// A deleted vhost's part on this shard: its connections end, its
    /// exchanges and bindings leave this copy of the table, and its queues
    /// here are deleted (durably, as any delete). A crash before the
    /// queues' deletes reach the log is finished at the next start
    /// (`delete_orphan_queues`).
    fn delete_vhost_here(&self, vhost: &str) {
        let why = format!("vhost '{vhost}' was deleted");
        let n = self.conns.shut_down_vhost(vhost, &why);
        self.routing.table.borrow_mut().drop_vhost(vhost);
        let deleted = self.delete_queues_where(|v| v == vhost);
        tracing::info!(shard = self.id, vhost, connections = n, queues = deleted, "{why}");
    }

    /// Start-up: deletes the queues of vhosts that no longer exist (a
    /// vhost deleted just before a crash).
    pub fn delete_orphan_queues(&self) {
        let n = self.delete_queues_where(|v| !self.has_vhost(v));
        if n > 0 {
            tracing::info!(shard = self.id, queues = n, "queues of deleted vhosts deleted");
        }
    }

    fn delete_queues_where(&self, vhost_gone: impl Fn(&str) -> bool) -> usize {
        let mut queues = self.queues.borrow_mut();
        let names: Vec<String> =
            queues.keys().filter(|q| vhost_gone(crate::routing::vhost::vhost_of(q))).cloned().collect();
        for q in &names {
            self.remove_queue(&mut queues, q);
        }
        names.len()
    }

    /// Every user (this shard's copy; all shards agree once a change is
    /// answered), as RabbitMQ's `GET /api/users` shows them.
    pub fn users_json(&self) -> serde_json::Value {
        let users = self.users.users.borrow();
        serde_json::Value::Array(users.sorted().into_iter().map(user_json).collect())
    }

    /// Every user's permissions in every vhost, as RabbitMQ's `GET
    /// /api/permissions`.
    pub fn permissions_json(&self) -> serde_json::Value {
        let users = self.users.users.borrow();
        let rows = users
            .sorted()
            .into_iter()
            .flat_map(|u| u.permissions.iter().map(|(vhost, p)| permission_json(&u.name, vhost, p)));
        serde_json::Value::Array(rows.collect())
    }

    /// One user's permissions in `vhost`; `None` when it has none.
    pub fn permission_json(&self, user: &str, vhost: &str) -> Option<serde_json::Value> {
        let users = self.users.users.borrow();
        Some(permission_json(user, vhost, users.get(user)?.permission(vhost)?))
    }

    /// `user`'s permissions in `vhost` (none for an unknown user), and
    /// the users' generation they were read at: a connection caches them
    /// until the generation moves.
    pub fn permission_of(&self, user: &str, vhost: &str) -> (u64, Option<Arc<Permission>>) {
        let users = self.users.users.borrow();
        (users.generation(), users.get(user).and_then(|u| u.permission(vhost).cloned()))
    }

    /// The vhosts, as RabbitMQ's `GET /api/vhosts` names them.
    pub fn vhost_names(&self) -> Vec<String> {
        self.users.users.borrow().vhosts().map(str::to_string).collect()
    }

    /// The vhosts as `ctl list-vhosts` shows them.
    pub fn vhosts_json(&self) -> serde_json::Value {
        let names = self.vhost_names().into_iter().map(|name| serde_json::json!({ "name": name }));
        serde_json::Value::Array(names.collect())
    }

    pub fn has_vhost(&self, vhost: &str) -> bool {
        self.users.users.borrow().has_vhost(vhost)
    }

    /// The users' generation (`permission_of`).
    pub fn users_generation(&self) -> u64 {
        self.users.users.borrow().generation()
    }

    /// One user; `None` when there is no such user.
    pub fn user_json(&self, name: &str) -> Option<serde_json::Value> {
        self.users.users.borrow().get(name).map(user_json)
    }
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> serde_json::Value {
    let (configure, write, read) = p.texts();
    serde_json::json!({ "user": user, "vhost": vhost, "configure": configure, "write": write, "read": read })
}

fn user_json(u: &crate::auth::User) -> serde_json::Value {
    serde_json::json!({
        "name": u.name,
        "tags": u.tags,
        "password_hash": u.hash_text(),
        "hashing_algorithm": crate::auth::password::ALGORITHM,
    })
}
