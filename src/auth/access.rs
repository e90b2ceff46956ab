//! The users and vhosts as plain data (`StoredAccess`, what the
//! definitions file and the cluster's metadata hold), and back: a `Users`
//! built from it, and its stored form. Shard 0's store and the cluster's
//! metadata state both use these, so the two agree by construction.

use super::change::{ChangeError, ChangeLimits, UserChange};
use super::permissions::{Permission, PermissionError};
use super::{UserSeed, Users};
use crate::storage::definitions::{StoredAccess, StoredPermission, StoredUser};

/// The users `access` holds; `loopback_users` is the node's own policy.
/// A stored entry that does not apply is logged and skipped (the file
/// and the cluster's commands were checked before they were stored).
pub fn users_from(access: &StoredAccess, loopback_users: &[String]) -> Users {
    let seeds: Vec<UserSeed> = access
        .users
        .iter()
        .map(|u| UserSeed {
            name: u.name.clone(),
            password: None,
            password_hash: Some(u.password_hash.clone()),
            tags: u.tags.clone(),
        })
        .collect();
    let mut users = Users::new(&seeds, loopback_users).unwrap_or_else(|e| {
        tracing::error!("users: {e}; no login will succeed");
        Users::none()
    });
    restore(&mut users, access);
    users
}

fn restore(users: &mut Users, stored: &StoredAccess) {
    let vhosts = stored.vhosts.iter().map(|v| UserChange::AddVhost { vhost: v.clone(), create_only: false });
    let permissions = stored
        .users
        .iter()
        .flat_map(|u| u.permissions.iter().map(|p| stored_permission(&u.name, p).map_err(ChangeError::from)));
    for change in vhosts.map(Ok).chain(permissions) {
        if let Err(e) = change.and_then(|c| users.apply(&c, ChangeLimits::NONE)) {
            tracing::error!("stored vhost or permission not applied: {e}");
        }
    }
}

/// A stored permission as the change that sets it.
pub fn stored_permission(user: &str, p: &StoredPermission) -> Result<UserChange, PermissionError> {
    let permission = Permission::new(&p.configure, &p.write, &p.read)?;
    Ok(UserChange::SetPermissions { name: user.to_string(), vhost: p.vhost.clone(), permission })
}

fn stored_of(vhost: &str, p: &Permission) -> StoredPermission {
    let (configure, write, read) = p.texts();
    StoredPermission { vhost: vhost.into(), configure: configure.into(), write: write.into(), read: read.into() }
}

/// The users and vhosts as plain data, users sorted by name.
pub fn access_of(users: &Users) -> StoredAccess {
    let stored = users
        .sorted()
        .into_iter()
        .map(|u| StoredUser {
            name: u.name.clone(),
            password_hash: u.hash_text(),
            tags: u.tags.clone(),
            permissions: u.permissions.iter().map(|(vhost, p)| stored_of(vhost, p)).collect(),
        })
        .collect();
    StoredAccess { users: stored, vhosts: users.vhosts().map(str::to_string).collect() }
}

/// The changes that turn `from` into `to`: vhosts added first, users put
/// with their tags, permissions set and cleared, users and vhosts that
/// `to` lacks deleted last. Applied in order to a `Users` holding `from`,
/// it holds `to`.
pub fn changes_between(from: &StoredAccess, to: &StoredAccess) -> Vec<UserChange> {
    let mut out: Vec<UserChange> = to
        .vhosts
        .iter()
        .filter(|v| !from.vhosts.contains(v))
        .map(|v| UserChange::AddVhost { vhost: v.clone(), create_only: false })
        .collect();
    for u in &to.users {
        let had = from.users.iter().find(|f| f.name == u.name);
        if had.is_none_or(|h| h.password_hash != u.password_hash || h.tags != u.tags) {
            match super::password::PasswordHash::parse(&u.password_hash) {
                Ok(hash) => {
                    out.push(UserChange::Put { name: u.name.clone(), hash, tags: u.tags.clone(), create_only: false })
                }
                Err(e) => tracing::error!(user = %u.name, "a stored password hash does not parse: {e}"),
            }
        }
        for p in &u.permissions {
            if had.is_none_or(|h| !h.permissions.contains(p)) {
                match stored_permission(&u.name, p) {
                    Ok(c) => out.push(c),
                    Err(e) => tracing::error!(user = %u.name, "a stored permission does not parse: {e}"),
                }
            }
        }
        for p in had.map(|h| h.permissions.as_slice()).unwrap_or_default() {
            if !u.permissions.iter().any(|q| q.vhost == p.vhost) {
                out.push(UserChange::ClearPermissions { name: u.name.clone(), vhost: p.vhost.clone() });
            }
        }
    }
    for f in from.users.iter().filter(|f| !to.users.iter().any(|u| u.name == f.name)) {
        out.push(UserChange::Delete { name: f.name.clone() });
    }
    for v in from.vhosts.iter().filter(|v| !to.vhosts.contains(v)) {
        out.push(UserChange::DeleteVhost { vhost: v.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::PasswordHash;

    fn user(name: &str, tags: &[&str], perms: &[(&str, &str)]) -> StoredUser {
        StoredUser {
            name: name.into(),
            password_hash: PasswordHash::with_salt([1, 2, 3, 4], name.as_bytes()).to_text(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            permissions: perms
                .iter()
                .map(|(v, c)| StoredPermission {
                    vhost: v.to_string(),
                    configure: c.to_string(),
                    write: ".*".into(),
                    read: ".*".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_changes_between_two_accesses_turn_one_into_the_other() {
        let from = StoredAccess {
            users: vec![user("a", &["x"], &[("/", ".*"), ("old", ".*")]), user("gone", &[], &[])],
            vhosts: vec!["/".into(), "old".into()],
        };
        let to = StoredAccess {
            users: vec![user("a", &["y"], &[("/", "^a")]), user("new", &["administrator"], &[("v", ".*")])],
            vhosts: vec!["/".into(), "v".into()],
        };
        let mut users = users_from(&from, &[]);
        for c in changes_between(&from, &to) {
            users.apply(&c, ChangeLimits::NONE).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
        assert_eq!(access_of(&users), to);
        assert!(changes_between(&to, &to).is_empty());
    }
}
