//! Permissions as RabbitMQ defines them: per user and vhost, three regular
//! expressions matched against the name of the queue or exchange an
//! operation touches. `configure` for declare and delete, `write` for
//! publishing to an exchange and binding to a queue or exchange, `read` for
//! consume, get, purge and binding from an exchange. The default exchange
//! is `amq.default` here, as in RabbitMQ. An empty expression allows
//! nothing; the match is unanchored (`^` and `$` anchor it).

use regex::{Regex, RegexBuilder};
use std::sync::Arc;

/// One expression may be this long; its compiled form this large. The
/// `regex` crate matches in time linear in the name, whatever the pattern.
pub const PATTERN_BYTES_MAX: usize = 4096;
const COMPILED_BYTES_MAX: usize = 1 << 20;

pub use super::vhosts::DEFAULT_VHOST;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configure => "configure",
            Self::Write => "write",
            Self::Read => "read",
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    /// `None` for the empty expression: nothing matches.
    re: Option<Regex>,
}

impl Pattern {
    fn new(text: &str) -> Result<Self, PermissionError> {
        if text.len() > PATTERN_BYTES_MAX {
            return Err(PermissionError::TooLong);
        }
        let re = if text.is_empty() {
            None
        } else {
            let re = RegexBuilder::new(text)
                .size_limit(COMPILED_BYTES_MAX)
                .dfa_size_limit(COMPILED_BYTES_MAX)
                .build()
                .map_err(|e| PermissionError::BadPattern(text.chars().take(64).collect(), e.to_string()))?;
            Some(re)
        };
        Ok(Self { text: text.to_string(), re })
    }

    fn matches(&self, name: &str) -> bool {
        self.re.as_ref().is_some_and(|re| re.is_match(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PermissionError {
    #[error("a permission expression is at most {PATTERN_BYTES_MAX} bytes")]
    TooLong,
    #[error("bad regular expression {0:?}: {1}")]
    BadPattern(String, String),
}

/// A user's permissions in one vhost.
#[derive(Debug, Clone)]
pub struct Permission {
    configure: Pattern,
    write: Pattern,
    read: Pattern,
}

impl PartialEq for Permission {
    fn eq(&self, other: &Self) -> bool {
        self.texts() == other.texts()
    }
}

impl Eq for Permission {}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Arc<Self>, PermissionError> {
        Ok(Arc::new(Self {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        }))
    }

    /// Everything: what the config's users get on `/`, as RabbitMQ's
    /// default user.
    pub fn full() -> Arc<Self> {
        let all = || Pattern { text: ".*".into(), re: Regex::new(".*").ok() };
        Arc::new(Self { configure: all(), write: all(), read: all() })
    }

    /// Whether `p` on the queue or exchange `name` is allowed.
    pub fn allows(&self, p: Perm, name: &str) -> bool {
        match p {
            Perm::Configure => self.configure.matches(name),
            Perm::Write => self.write.matches(name),
            Perm::Read => self.read.matches(name),
        }
    }

    /// The expressions: configure, write, read.
    pub fn texts(&self) -> (&str, &str, &str) {
        (&self.configure.text, &self.write.text, &self.read.text)
    }
}

/// The name a permission is checked against for exchange `name`: the
/// default exchange is `amq.default`, as in RabbitMQ.
pub fn exchange_resource(name: &str) -> &str {
    if name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_semantics() {
        let p = Permission::new("^app-", "^(app-|amq\\.default$)", "").unwrap();
        assert!(p.allows(Perm::Configure, "app-1") && !p.allows(Perm::Configure, "x-app-1"));
        assert!(p.allows(Perm::Write, exchange_resource("")) && p.allows(Perm::Write, "app-x"));
        assert!(!p.allows(Perm::Write, "logs"));
        assert!(!p.allows(Perm::Read, "app-1") && !p.allows(Perm::Read, ""), "empty allows nothing");
        let full = Permission::full();
        assert!(full.allows(Perm::Read, "") && full.allows(Perm::Configure, "anything"));
        // Unanchored, as RabbitMQ's re:run.
        assert!(Permission::new("b", "", "").unwrap().allows(Perm::Configure, "abc"));
        assert!(matches!(Permission::new("(", "", ""), Err(PermissionError::BadPattern(..))));
        let long = "a".repeat(PATTERN_BYTES_MAX + 1);
        assert_eq!(Permission::new(&long, "", ""), Err(PermissionError::TooLong));
        // A pattern whose compiled form is huge is refused, not built.
        assert!(Permission::new("\\w{1000}\\w{1000}\\w{1000}", "", "").is_err());
    }
}
