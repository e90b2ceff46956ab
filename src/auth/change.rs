//! Run-time changes to the users (`ringmq ctl add-user`, `PUT /api/users`),
//! as shard 0 applies them and broadcasts them to every shard's copy. A
//! change carries a password hash, never a password: the shard that took
//! the request hashed it.

use super::password::PasswordHash;
use super::permissions::{Permission, PermissionError};
use super::vhosts::{self, VhostError, DEFAULT_VHOST};
use super::{User, Users};
use std::sync::Arc;

/// Tags a user may carry, and the bytes of each (RabbitMQ sets no limit;
/// these bound what a request can make the broker store).
pub const TAGS_MAX: usize = 32;
pub const TAG_BYTES_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Creates the user, or replaces its password and tags (`PUT
    /// /api/users/NAME`); `create_only` refuses an existing name (`ctl
    /// add-user`, as `rabbitmqctl add_user`).
    Put {
        name: String,
        hash: PasswordHash,
        tags: Vec<String>,
        create_only: bool,
    },
    Password {
        name: String,
        hash: PasswordHash,
    },
    Tags {
        name: String,
        tags: Vec<String>,
    },
    Delete {
        name: String,
    },
    /// `ctl set-permissions`, `PUT /api/permissions/VHOST/USER`.
    SetPermissions {
        name: String,
        vhost: String,
        permission: Arc<Permission>,
    },
    ClearPermissions {
        name: String,
        vhost: String,
    },
    /// `ctl add-vhost`, `PUT /api/vhosts/NAME` (an existing one is left
    /// as it is unless `create_only`).
    AddVhost {
        vhost: String,
        create_only: bool,
    },
    /// `ctl delete-vhost`, `DELETE /api/vhosts/NAME`: every user's
    /// permissions in it go with it.
    DeleteVhost {
        vhost: String,
    },
}

/// What a change may make exist (the config's `users_max`, `vhosts_max`).
#[derive(Debug, Clone, Copy)]
pub struct ChangeLimits {
    pub users: usize,
    pub vhosts: usize,
}

impl ChangeLimits {
    /// For a peer's copy and the stored definitions: checked already.
    pub const NONE: Self = Self { users: usize::MAX, vhosts: usize::MAX };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ChangeError {
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("no user '{0}'")]
    NotFound(String),
    #[error("a user name must be 1 to 255 bytes")]
    BadName,
    #[error("at most {TAGS_MAX} tags of at most {TAG_BYTES_MAX} bytes each")]
    BadTags,
    #[error("users_max ({0}) users exist already")]
    TooMany(usize),
    #[error("{0}")]
    Permission(#[from] PermissionError),
    #[error("{0}")]
    Vhost(#[from] VhostError),
}

impl UserChange {
    /// The user it changes (none for a vhost change).
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Put { name, .. }
            | Self::Password { name, .. }
            | Self::Tags { name, .. }
            | Self::Delete { name }
            | Self::SetPermissions { name, .. }
            | Self::ClearPermissions { name, .. } => Some(name),
            Self::AddVhost { .. } | Self::DeleteVhost { .. } => None,
        }
    }

    /// The vhost it changes or names (none for a change to a user alone).
    pub fn vhost(&self) -> Option<&str> {
        match self {
            Self::SetPermissions { vhost, .. }
            | Self::ClearPermissions { vhost, .. }
            | Self::AddVhost { vhost, .. }
            | Self::DeleteVhost { vhost } => Some(vhost),
            _ => None,
        }
    }

    /// What an operator sees in the log: never the hash.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Put { create_only: true, .. } => "user added",
            Self::Put { .. } => "user created or replaced",
            Self::Password { .. } => "user's password changed",
            Self::Tags { .. } => "user's tags set",
            Self::Delete { .. } => "user deleted",
            Self::SetPermissions { .. } => "user's permissions set",
            Self::ClearPermissions { .. } => "user's permissions cleared",
            Self::AddVhost { .. } => "vhost added",
            Self::DeleteVhost { .. } => "vhost deleted",
        }
    }
}

/// Checks a user name (as the config's seeds are checked).
pub fn check_name(name: &str) -> Result<(), ChangeError> {
    if name.is_empty() || name.len() > 255 {
        return Err(ChangeError::BadName);
    }
    Ok(())
}

/// Checks a tag list, and drops empty tags and repeats (RabbitMQ's
/// `set_user_tags alice ""` clears the tags).
pub fn check_tags(tags: &[String]) -> Result<Vec<String>, ChangeError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len().min(TAGS_MAX));
    for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if t.len() > TAG_BYTES_MAX || out.len() >= TAGS_MAX {
            return Err(ChangeError::BadTags);
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

impl Users {
    /// Applies a change within `limits`.
    pub fn apply(&mut self, change: &UserChange, limits: ChangeLimits) -> Result<(), ChangeError> {
        if let Some(name) = change.user() {
            check_name(name)?;
        }
        if let Some(vhost) = change.vhost() {
            vhosts::check_name(vhost)?;
        }
        self.apply_checked(change, limits)?;
        self.generation += 1;
        Ok(())
    }

    fn apply_checked(&mut self, change: &UserChange, limits: ChangeLimits) -> Result<(), ChangeError> {
        let users_max = limits.users;
        match change {
            UserChange::Put { name, hash, tags, create_only } => {
                let exists = self.by_name.contains_key(name);
                if exists && *create_only {
                    return Err(ChangeError::Exists(name.clone()));
                }
                if !exists && self.by_name.len() >= users_max {
                    return Err(ChangeError::TooMany(users_max));
                }
                let tags = check_tags(tags)?;
                // A replaced user keeps its permissions, as in RabbitMQ.
                let permissions = self.by_name.get(name).map(|u| u.permissions.clone()).unwrap_or_default();
                self.by_name.insert(name.clone(), User { name: name.clone(), hash: hash.clone(), tags, permissions });
            }
            UserChange::Password { name, hash } => self.get_mut(name)?.hash = hash.clone(),
            UserChange::Tags { name, tags } => {
                let tags = check_tags(tags)?;
                self.get_mut(name)?.tags = tags;
            }
            UserChange::Delete { name } => {
                self.by_name.remove(name).ok_or_else(|| ChangeError::NotFound(name.clone()))?;
            }
            UserChange::SetPermissions { name, vhost, permission } => {
                self.existing_vhost(vhost)?;
                self.get_mut(name)?.permissions.insert(vhost.clone(), permission.clone());
            }
            UserChange::ClearPermissions { name, vhost } => {
                self.existing_vhost(vhost)?;
                self.get_mut(name)?.permissions.remove(vhost);
            }
            UserChange::AddVhost { vhost, create_only } => {
                let exists = self.vhosts.contains(vhost);
                if exists && *create_only {
                    return Err(VhostError::Exists(vhost.clone()).into());
                }
                if !exists && self.vhosts.len() >= limits.vhosts {
                    return Err(VhostError::TooMany(limits.vhosts).into());
                }
                self.vhosts.insert(vhost.clone());
            }
            UserChange::DeleteVhost { vhost } => {
                if vhost == DEFAULT_VHOST {
                    return Err(VhostError::Default.into());
                }
                self.existing_vhost(vhost)?;
                self.vhosts.remove(vhost);
                for u in self.by_name.values_mut() {
                    u.permissions.remove(vhost);
                }
            }
        }
        Ok(())
    }

    fn existing_vhost(&self, vhost: &str) -> Result<(), VhostError> {
        match self.vhosts.contains(vhost) {
            true => Ok(()),
            false => Err(VhostError::NotFound(vhost.into())),
        }
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut User, ChangeError> {
        self.by_name.get_mut(name).ok_or_else(|| ChangeError::NotFound(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(users: usize) -> ChangeLimits {
        ChangeLimits { users, vhosts: 3 }
    }

    fn hash(p: &str) -> PasswordHash {
        PasswordHash::with_salt([9, 9, 9, 9], p.as_bytes())
    }

    fn put(name: &str, p: &str, tags: &[&str], create_only: bool) -> UserChange {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        UserChange::Put { name: name.into(), hash: hash(p), tags, create_only }
    }

    #[test]
    fn changes_apply_in_order_and_are_checked() {
        let mut u = Users::none();
        u.apply(&put("alice", "a", &["management", "", "management"], true), lim(10)).unwrap();
        assert_eq!(u.authenticate("alice", b"a", None).unwrap().tags, vec!["management".to_string()]);
        assert_eq!(u.apply(&put("alice", "b", &[], true), lim(10)), Err(ChangeError::Exists("alice".into())));
        u.apply(&put("alice", "b", &["administrator"], false), lim(10)).unwrap();
        assert!(u.authenticate("alice", b"a", None).is_err());
        assert!(u.authenticate("alice", b"b", None).unwrap().has_tag("administrator"));
        u.apply(&UserChange::Password { name: "alice".into(), hash: hash("c") }, lim(10)).unwrap();
        assert!(u.authenticate("alice", b"c", None).is_ok());
        u.apply(&UserChange::Tags { name: "alice".into(), tags: vec![] }, lim(10)).unwrap();
        assert!(u.authenticate("alice", b"c", None).unwrap().tags.is_empty());
        let gone = UserChange::Delete { name: "bob".into() };
        assert_eq!(u.apply(&gone, lim(10)), Err(ChangeError::NotFound("bob".into())));
        u.apply(&UserChange::Delete { name: "alice".into() }, lim(10)).unwrap();
        assert!(u.authenticate("alice", b"c", None).is_err());
        assert_eq!(u.apply(&put("", "p", &[], false), lim(10)), Err(ChangeError::BadName));
        let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        let tags = UserChange::Tags { name: "x".into(), tags: many };
        assert_eq!(u.apply(&tags, lim(10)), Err(ChangeError::BadTags));
        u.apply(&put("a", "p", &[], false), lim(1)).unwrap();
        assert_eq!(u.apply(&put("b", "p", &[], false), lim(1)), Err(ChangeError::TooMany(1)));
        u.apply(&put("a", "q", &[], false), lim(1)).unwrap();
    }
}

#[cfg(test)]
mod vhost_tests {
    use super::*;

    #[test]
    fn vhosts_are_added_deleted_and_take_their_permissions_along() {
        let mut u = Users::none();
        let lim = ChangeLimits { users: 10, vhosts: 3 };
        let put = UserChange::Put {
            name: "a".into(),
            hash: PasswordHash::with_salt([1; 4], b"p"),
            tags: vec![],
            create_only: true,
        };
        u.apply(&put, lim).unwrap();
        let set = |vhost: &str| UserChange::SetPermissions {
            name: "a".into(),
            vhost: vhost.into(),
            permission: Permission::full(),
        };
        let nope = Err(ChangeError::Vhost(VhostError::NotFound("v".into())));
        assert_eq!(u.apply(&set("v"), lim), nope);
        u.apply(&UserChange::AddVhost { vhost: "v".into(), create_only: true }, lim).unwrap();
        let again = UserChange::AddVhost { vhost: "v".into(), create_only: true };
        assert_eq!(u.apply(&again, lim), Err(ChangeError::Vhost(VhostError::Exists("v".into()))));
        u.apply(&UserChange::AddVhost { vhost: "v".into(), create_only: false }, lim).unwrap();
        u.apply(&set("v"), lim).unwrap();
        assert!(u.get("a").unwrap().permission("v").is_some());
        u.apply(&UserChange::AddVhost { vhost: "w".into(), create_only: true }, lim).unwrap();
        let third = UserChange::AddVhost { vhost: "x".into(), create_only: true };
        assert_eq!(u.apply(&third, lim), Err(ChangeError::Vhost(VhostError::TooMany(3))));
        u.apply(&UserChange::DeleteVhost { vhost: "v".into() }, lim).unwrap();
        assert!(u.get("a").unwrap().permission("v").is_none());
        assert!(!u.has_vhost("v"));
        let default = UserChange::DeleteVhost { vhost: "/".into() };
        assert_eq!(u.apply(&default, lim), Err(ChangeError::Vhost(VhostError::Default)));
        let bad = UserChange::AddVhost { vhost: "".into(), create_only: false };
        assert_eq!(u.apply(&bad, lim), Err(ChangeError::Vhost(VhostError::BadName)));
    }
}

/// A change as the cluster's log carries it: hashes and permissions as
/// their text, parsed (and so checked) again where the log is read.
#[derive(serde::Serialize, serde::Deserialize)]
enum Wire {
    Put { name: String, hash: String, tags: Vec<String>, create_only: bool },
    Password { name: String, hash: String },
    Tags { name: String, tags: Vec<String> },
    Delete { name: String },
    SetPermissions { name: String, vhost: String, configure: String, write: String, read: String },
    ClearPermissions { name: String, vhost: String },
    AddVhost { vhost: String, create_only: bool },
    DeleteVhost { vhost: String },
}

impl serde::Serialize for UserChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = match self.clone() {
            Self::Put { name, hash, tags, create_only } => Wire::Put { name, hash: hash.to_text(), tags, create_only },
            Self::Password { name, hash } => Wire::Password { name, hash: hash.to_text() },
            Self::Tags { name, tags } => Wire::Tags { name, tags },
            Self::Delete { name } => Wire::Delete { name },
            Self::SetPermissions { name, vhost, permission } => {
                let (c, w, r) = permission.texts();
                let (configure, write, read) = (c.to_string(), w.to_string(), r.to_string());
                Wire::SetPermissions { name, vhost, configure, write, read }
            }
            Self::ClearPermissions { name, vhost } => Wire::ClearPermissions { name, vhost },
            Self::AddVhost { vhost, create_only } => Wire::AddVhost { vhost, create_only },
            Self::DeleteVhost { vhost } => Wire::DeleteVhost { vhost },
        };
        w.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for UserChange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let hash = |h: &str| PasswordHash::parse(h).map_err(|e| D::Error::custom(format!("password hash: {e}")));
        Ok(match Wire::deserialize(d)? {
            Wire::Put { name, hash: h, tags, create_only } => Self::Put { name, hash: hash(&h)?, tags, create_only },
            Wire::Password { name, hash: h } => Self::Password { name, hash: hash(&h)? },
            Wire::Tags { name, tags } => Self::Tags { name, tags },
            Wire::Delete { name } => Self::Delete { name },
            Wire::SetPermissions { name, vhost, configure, write, read } => {
                let permission =
                    Permission::new(&configure, &write, &read).map_err(|e| D::Error::custom(e.to_string()))?;
                Self::SetPermissions { name, vhost, permission }
            }
            Wire::ClearPermissions { name, vhost } => Self::ClearPermissions { name, vhost },
            Wire::AddVhost { vhost, create_only } => Self::AddVhost { vhost, create_only },
            Wire::DeleteVhost { vhost } => Self::DeleteVhost { vhost },
        })
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn a_change_survives_the_log_and_a_bad_one_does_not_decode() {
        let changes = [
            UserChange::Put {
                name: "u".into(),
                hash: PasswordHash::with_salt([9; 4], b"pw"),
                tags: vec!["administrator".into()],
                create_only: true,
            },
            UserChange::SetPermissions {
                name: "u".into(),
                vhost: "v".into(),
                permission: Permission::new("^a", ".*", "").unwrap(),
            },
            UserChange::DeleteVhost { vhost: "v".into() },
        ];
        for c in changes {
            let b = postcard::to_allocvec(&c).unwrap();
            let back: UserChange = postcard::from_bytes(&b).unwrap();
            assert_eq!(format!("{back:?}"), format!("{c:?}"));
        }
        let bad = Wire::SetPermissions {
            name: "u".into(),
            vhost: "/".into(),
            configure: "(".into(),
            write: String::new(),
            read: String::new(),
        };
        let b = postcard::to_allocvec(&bad).unwrap();
        assert!(postcard::from_bytes::<UserChange>(&b).is_err(), "a pattern that does not compile");
    }
}
