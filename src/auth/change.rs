//! Run-time changes to the users (`ringmq ctl add-user`, `PUT /api/users`),
//! as shard 0 applies them and broadcasts them to every shard's copy. A
//! change carries a password hash, never a password: the shard that took
//! the request hashed it.

use super::password::PasswordHash;
use super::permissions::{check_vhost, Permission, PermissionError};
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

impl UserChange {
    pub fn name(&self) -> &str {
        match self {
            Self::Put { name, .. }
            | Self::Password { name, .. }
            | Self::Tags { name, .. }
            | Self::Delete { name }
            | Self::SetPermissions { name, .. }
            | Self::ClearPermissions { name, .. } => name,
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
    /// Applies a change; `users_max` bounds how many users may exist.
    pub fn apply(&mut self, change: &UserChange, users_max: usize) -> Result<(), ChangeError> {
        check_name(change.name())?;
        self.apply_checked(change, users_max)?;
        self.generation += 1;
        Ok(())
    }

    fn apply_checked(&mut self, change: &UserChange, users_max: usize) -> Result<(), ChangeError> {
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
                let permission = self.by_name.get(name).and_then(|u| u.permission.clone());
                self.by_name.insert(name.clone(), User { name: name.clone(), hash: hash.clone(), tags, permission });
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
                check_vhost(vhost)?;
                self.get_mut(name)?.permission = Some(permission.clone());
            }
            UserChange::ClearPermissions { name, vhost } => {
                check_vhost(vhost)?;
                self.get_mut(name)?.permission = None;
            }
        }
        Ok(())
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut User, ChangeError> {
        self.by_name.get_mut(name).ok_or_else(|| ChangeError::NotFound(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        u.apply(&put("alice", "a", &["management", "", "management"], true), 10).unwrap();
        assert_eq!(u.authenticate("alice", b"a", None).unwrap().tags, vec!["management".to_string()]);
        assert_eq!(u.apply(&put("alice", "b", &[], true), 10), Err(ChangeError::Exists("alice".into())));
        u.apply(&put("alice", "b", &["administrator"], false), 10).unwrap();
        assert!(u.authenticate("alice", b"a", None).is_err());
        assert!(u.authenticate("alice", b"b", None).unwrap().has_tag("administrator"));
        u.apply(&UserChange::Password { name: "alice".into(), hash: hash("c") }, 10).unwrap();
        assert!(u.authenticate("alice", b"c", None).is_ok());
        u.apply(&UserChange::Tags { name: "alice".into(), tags: vec![] }, 10).unwrap();
        assert!(u.authenticate("alice", b"c", None).unwrap().tags.is_empty());
        let gone = UserChange::Delete { name: "bob".into() };
        assert_eq!(u.apply(&gone, 10), Err(ChangeError::NotFound("bob".into())));
        u.apply(&UserChange::Delete { name: "alice".into() }, 10).unwrap();
        assert!(u.authenticate("alice", b"c", None).is_err());
        assert_eq!(u.apply(&put("", "p", &[], false), 10), Err(ChangeError::BadName));
        let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        let tags = UserChange::Tags { name: "x".into(), tags: many };
        assert_eq!(u.apply(&tags, 10), Err(ChangeError::BadTags));
        u.apply(&put("a", "p", &[], false), 1).unwrap();
        assert_eq!(u.apply(&put("b", "p", &[], false), 1), Err(ChangeError::TooMany(1)));
        u.apply(&put("a", "q", &[], false), 1).unwrap();
    }
}
