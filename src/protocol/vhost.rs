//! How a vhost scopes the names of queues and exchanges: the core keys
//! each by one string, its *qualified* name. In the default vhost `/` that
//! is the name itself, so a data directory and a shard map from before
//! vhosts mean what they meant; in any other vhost it is
//! `"\0" + vhost + "\0" + name`. A client's names never hold a control
//! character (`server::ops::queue_name_ok`, the exchange name check), so
//! no name in one vhost can spell a name in another, and the shard hash of
//! the qualified name covers the vhost (`docs/protocol.md`).
//!
//! The front ends qualify what a client names with the connection's vhost,
//! and show a client only [`split`]'s name part; a shard-aware client
//! hashes the qualified name to find a queue's shard. In the codec layer
//! so that the client shares it.

use std::borrow::Cow;

/// The default vhost.
pub const DEFAULT_VHOST: &str = "/";

const SEP: char = '\0';

/// The core's key for `name` in `vhost`.
#[inline]
pub fn qualify<'a>(vhost: &str, name: &'a str) -> Cow<'a, str> {
    if vhost == DEFAULT_VHOST {
        Cow::Borrowed(name)
    } else {
        let mut s = String::with_capacity(vhost.len() + name.len() + 2);
        s.push(SEP);
        s.push_str(vhost);
        s.push(SEP);
        s.push_str(name);
        Cow::Owned(s)
    }
}

/// [`qualify`] for a name the caller owns: in `/` it is returned as it is.
#[inline]
pub fn qualify_owned(vhost: &str, name: String) -> String {
    if vhost == DEFAULT_VHOST {
        name
    } else {
        qualify(vhost, &name).into_owned()
    }
}

/// A qualified name's vhost and name.
#[inline]
pub fn split(qualified: &str) -> (&str, &str) {
    match qualified.strip_prefix(SEP).and_then(|rest| rest.split_once(SEP)) {
        Some((vhost, name)) => (vhost, name),
        None => (DEFAULT_VHOST, qualified),
    }
}

/// The name a client sees.
#[inline]
pub fn name_of(qualified: &str) -> &str {
    split(qualified).1
}

/// The vhost a qualified name is in.
#[inline]
pub fn vhost_of(qualified: &str) -> &str {
    split(qualified).0
}

/// `'name' in vhost 'v'`, for messages to clients and the log.
pub fn describe(qualified: &str) -> String {
    let (vhost, name) = split(qualified);
    format!("'{name}' in vhost '{vhost}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_vhost_keeps_names_as_they_are() {
        assert_eq!(qualify("/", "orders"), "orders");
        assert!(matches!(qualify("/", "orders"), Cow::Borrowed(_)));
        assert_eq!(split("orders"), ("/", "orders"));
        assert_eq!(split(""), ("/", ""));
    }

    #[test]
    fn other_vhosts_round_trip_and_do_not_collide() {
        for (v, n) in [("prod", "orders"), ("a/b", ""), ("x", "amq.direct"), ("v", "n\u{1}")] {
            let q = qualify(v, n);
            assert_eq!(split(&q), (v, n));
            assert_ne!(q.as_ref(), n);
            assert_ne!(q, qualify("other", n));
        }
        assert_eq!(describe(&qualify("prod", "q")), "'q' in vhost 'prod'");
        assert_eq!(vhost_of(&qualify("prod", "q")), "prod");
        assert_eq!(name_of(&qualify("prod", "q")), "q");
    }
}
