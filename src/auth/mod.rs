//! Who may log in (model layer): users with RabbitMQ's password hashes
//! (`password.rs`) and tags, and the rule that some users
//! (`loopback_users`, by default `guest`) log in only from loopback, as in
//! RabbitMQ. Every front end's login asks [`Users::authenticate`].

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

pub mod access;
pub mod change;
pub mod password;
pub mod permissions;
pub mod vhosts;

use password::{HashError, PasswordHash};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// A user as the config file seeds it: a password in plain text (hashed at
/// start, then dropped) or RabbitMQ's `password_hash`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    /// `rabbit_password_hashing_sha256`: base64 of salt ++ SHA-256.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// RabbitMQ's tags: `administrator`, `monitoring`, `management`, ...
    #[serde(default)]
    pub tags: Vec<String>,
}

impl UserSeed {
    /// A user with a plain-text password (tests, the embedded default).
    pub fn new(name: &str, password: &str, tags: &[&str]) -> Self {
        Self {
            name: name.into(),
            password: Some(password.into()),
            password_hash: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl UserSeed {
    /// The seed with a plain-text password replaced by its hash, salted
    /// once: every shard's copy of the users then holds the same hash (an
    /// export shows one, whichever shard answers).
    pub fn hashed(&self) -> Result<Self, SeedError> {
        let Some(p) = &self.password else { return Ok(self.clone()) };
        if self.password_hash.is_some() {
            return Err(SeedError::OnePassword(self.name.clone()));
        }
        let hash = PasswordHash::new(p.as_bytes()).map_err(|e| SeedError::Hash(self.name.clone(), e))?;
        Ok(Self { password: None, password_hash: Some(hash.to_text()), ..self.clone() })
    }
}

/// Never prints a password.
impl std::fmt::Debug for UserSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSeed").field("name", &self.name).field("tags", &self.tags).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("user {0:?}: give exactly one of password and password_hash")]
    OnePassword(String),
    #[error("user {0:?}: {1}")]
    Hash(String, HashError),
    #[error("user {0:?} is given twice")]
    Duplicate(String),
    #[error("a user name must be 1 to 255 bytes")]
    BadName,
}

/// Why a login is refused. The peer hears only that it was refused
/// (`BadCredentials` and `LoopbackOnly` look alike to a guesser only in
/// that neither says which part was wrong); the log says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("bad user name or password")]
    BadCredentials,
    #[error("this user may log in only from loopback (loopback_users)")]
    LoopbackOnly,
    /// An `EXTERNAL` login whose certificate names no user here.
    #[error("no user is named by the client certificate")]
    UnknownCertificateUser,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    hash: PasswordHash,
    pub tags: Vec<String>,
    /// Its permissions per vhost; none in a vhost: it may not use it.
    pub permissions: BTreeMap<String, std::sync::Arc<permissions::Permission>>,
}

/// What a user's tags let it do with the management API and `ctl`, as
/// RabbitMQ's tags do (vhost-scoped views come with vhosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// No management tag: messaging only.
    None,
    /// `management`, `policymaker` or `monitoring`: may read.
    Read,
    /// `administrator`: may also change things.
    Admin,
}

impl User {
    /// RabbitMQ's `password_hash` text, for the definitions file and the
    /// API (as RabbitMQ shows it); never the password.
    pub fn hash_text(&self) -> String {
        self.hash.to_text()
    }

    /// Its permissions in `vhost`, if any.
    pub fn permission(&self, vhost: &str) -> Option<&std::sync::Arc<permissions::Permission>> {
        self.permissions.get(vhost)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn access(&self) -> Access {
        if self.has_tag("administrator") {
            Access::Admin
        } else if ["management", "policymaker", "monitoring"].iter().any(|t| self.has_tag(t)) {
            Access::Read
        } else {
            Access::None
        }
    }
}

/// The users and the vhosts they are given permissions in: built from
/// seeds, then changed (`change.rs`).
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// The vhosts that exist; `/` always does (`vhosts.rs`).
    vhosts: BTreeSet<String>,
    /// Counts changes, so that a connection's cached permissions know
    /// when to look again.
    generation: u64,
    loopback_only: HashSet<String>,
    /// Checked against for an unknown name, so that a login for a user
    /// that does not exist takes as long as one with a wrong password.
    decoy: PasswordHash,
}

impl Users {
    pub fn new(seeds: &[UserSeed], loopback_users: &[String]) -> Result<Self, SeedError> {
        let mut by_name = HashMap::with_capacity(seeds.len());
        for s in seeds {
            if s.name.is_empty() || s.name.len() > 255 {
                return Err(SeedError::BadName);
            }
            let hash = match (&s.password, &s.password_hash) {
                (Some(p), None) => PasswordHash::new(p.as_bytes()),
                (None, Some(h)) => PasswordHash::parse(h),
                _ => return Err(SeedError::OnePassword(s.name.clone())),
            }
            .map_err(|e| SeedError::Hash(s.name.clone(), e))?;
            let user = User { name: s.name.clone(), hash, tags: s.tags.clone(), permissions: BTreeMap::new() };
            if by_name.insert(s.name.clone(), user).is_some() {
                return Err(SeedError::Duplicate(s.name.clone()));
            }
        }
        let decoy = PasswordHash::new(b"decoy").map_err(|e| SeedError::Hash(String::new(), e))?;
        Ok(Self {
            by_name,
            vhosts: vhosts::default_set(),
            generation: 0,
            loopback_only: loopback_users.iter().cloned().collect(),
            decoy,
        })
    }

    /// Checks a login. `peer` is the client's address (`None` when unknown,
    /// which a loopback-only user is refused for).
    pub fn authenticate(&self, name: &str, password: &[u8], peer: Option<IpAddr>) -> Result<&User, LoginError> {
        let Some(user) = self.by_name.get(name) else {
            let _ = self.decoy.verify(password);
            return Err(LoginError::BadCredentials);
        };
        if !user.hash.verify(password) {
            return Err(LoginError::BadCredentials);
        }
        if self.loopback_only.contains(name) && !peer.is_some_and(|p| p.is_loopback()) {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(user)
    }

    /// Checks an `EXTERNAL` login: the TLS handshake verified the client's
    /// certificate, which names `name`; the user must exist (its password
    /// is not asked), and `loopback_users` still applies.
    pub fn authenticate_certificate(&self, name: &str, peer: Option<IpAddr>) -> Result<&User, LoginError> {
        let user = self.by_name.get(name).ok_or(LoginError::UnknownCertificateUser)?;
        if self.loopback_only.contains(name) && !peer.is_some_and(|p| p.is_loopback()) {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(user)
    }

    /// No users: every login is refused.
    pub fn none() -> Self {
        Self {
            by_name: HashMap::new(),
            vhosts: vhosts::default_set(),
            generation: 0,
            loopback_only: HashSet::new(),
            decoy: PasswordHash::with_salt([0; 4], b"decoy"),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every user, sorted by name.
    pub fn sorted(&self) -> Vec<&User> {
        let mut all: Vec<&User> = self.by_name.values().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// Changes so far (`change.rs`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Gives every user full permissions on `/`: the config's users, as
    /// RabbitMQ's default user.
    pub fn grant_all(&mut self) {
        let full = permissions::Permission::full();
        for u in self.by_name.values_mut() {
            u.permissions.insert(vhosts::DEFAULT_VHOST.into(), full.clone());
        }
    }

    /// The vhosts, sorted by name.
    pub fn vhosts(&self) -> impl Iterator<Item = &str> {
        self.vhosts.iter().map(String::as_str)
    }

    pub fn has_vhost(&self, vhost: &str) -> bool {
        self.vhosts.contains(vhost)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let hashed = UserSeed {
            name: "rabbit".into(),
            password: None,
            password_hash: Some("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into()),
            tags: vec!["monitoring".into()],
        };
        let seeds =
            [UserSeed::new("guest", "guest", &["administrator"]), UserSeed::new("alice", "s3cret", &[]), hashed];
        Users::new(&seeds, &["guest".to_string()]).unwrap()
    }

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));

    #[test]
    fn logins() {
        let u = users();
        assert_eq!(u.authenticate("alice", b"s3cret", REMOTE).unwrap().name, "alice");
        assert!(u.authenticate("guest", b"guest", LOCAL).unwrap().has_tag("administrator"));
        assert!(u.authenticate("rabbit", b"test12", REMOTE).unwrap().has_tag("monitoring"));
        assert_eq!(u.authenticate("rabbit", b"test12", REMOTE).unwrap().access(), Access::Read);
        assert_eq!(u.authenticate("guest", b"guest", LOCAL).unwrap().access(), Access::Admin);
        assert_eq!(u.authenticate("alice", b"s3cret", LOCAL).unwrap().access(), Access::None);
        assert_eq!(u.authenticate("alice", b"s3cre", REMOTE).unwrap_err(), LoginError::BadCredentials);
        assert_eq!(u.authenticate("bob", b"s3cret", LOCAL).unwrap_err(), LoginError::BadCredentials);
        assert_eq!(u.authenticate("guest", b"guest", REMOTE).unwrap_err(), LoginError::LoopbackOnly);
        assert_eq!(u.authenticate("guest", b"guest", None).unwrap_err(), LoginError::LoopbackOnly);
        let v6 = Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        assert!(u.authenticate("guest", b"guest", v6).is_ok());
        // A wrong password says nothing about loopback.
        assert_eq!(u.authenticate("guest", b"nope", REMOTE).unwrap_err(), LoginError::BadCredentials);
    }

    #[test]
    fn seeds_are_checked_and_never_printed() {
        let both = UserSeed { password_hash: Some("x".into()), ..UserSeed::new("a", "p", &[]) };
        assert_eq!(Users::new(&[both], &[]).unwrap_err(), SeedError::OnePassword("a".into()));
        let neither = UserSeed { password: None, ..UserSeed::new("a", "p", &[]) };
        assert_eq!(Users::new(&[neither], &[]).unwrap_err(), SeedError::OnePassword("a".into()));
        let bad = UserSeed { password: None, password_hash: Some("AAAA".into()), ..UserSeed::new("a", "p", &[]) };
        assert!(matches!(Users::new(&[bad], &[]).unwrap_err(), SeedError::Hash(..)));
        let twice = [UserSeed::new("a", "p", &[]), UserSeed::new("a", "q", &[])];
        assert_eq!(Users::new(&twice, &[]).unwrap_err(), SeedError::Duplicate("a".into()));
        assert_eq!(Users::new(&[UserSeed::new("", "p", &[])], &[]).unwrap_err(), SeedError::BadName);
        let printed = format!("{:?} {:?}", UserSeed::new("a", "hunter2", &[]), users());
        assert!(!printed.contains("hunter2") && !printed.contains("s3cret"), "{printed}");
    }
}
