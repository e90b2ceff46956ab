//! Virtual hosts: the names that exist (kept in [`super::Users`], changed
//! with [`super::change::UserChange::AddVhost`] and `DeleteVhost`, stored
//! with the users), and their rules. `/`, the default, always exists: the
//! seed's programs connect to it, and it cannot be deleted.

use std::collections::BTreeSet;

/// The default vhost, where a client that names none works.
pub const DEFAULT_VHOST: &str = "/";

/// A vhost's name: 1 to 255 bytes (AMQP's short string), no control
/// characters.
pub const VHOST_NAME_BYTES_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum VhostError {
    #[error("a vhost name must be 1 to {VHOST_NAME_BYTES_MAX} bytes without control characters")]
    BadName,
    #[error("vhost '{0}' already exists")]
    Exists(String),
    #[error("no vhost '{0}'")]
    NotFound(String),
    #[error("the default vhost '/' cannot be deleted")]
    Default,
    #[error("vhosts_max ({0}) vhosts exist already")]
    TooMany(usize),
}

pub fn check_name(name: &str) -> Result<(), VhostError> {
    let ok = !name.is_empty() && name.len() <= VHOST_NAME_BYTES_MAX && !name.chars().any(char::is_control);
    ok.then_some(()).ok_or(VhostError::BadName)
}

/// The vhosts of a broker nobody changed: `/` alone.
pub fn default_set() -> BTreeSet<String> {
    BTreeSet::from([DEFAULT_VHOST.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("/").is_ok());
        assert!(check_name("prod-eu").is_ok());
        assert_eq!(check_name(""), Err(VhostError::BadName));
        assert_eq!(check_name("a\u{0}b"), Err(VhostError::BadName));
        assert_eq!(check_name(&"v".repeat(256)), Err(VhostError::BadName));
    }
}
