//! The cluster's part of the configuration: validated with the rest
//! before any shard starts.

use crate::server::config::{Config, ConfigError};

/// Seeds a node may be given to join through.
pub const JOIN_SEEDS_MAX: usize = 64;

impl Config {
    /// Whether this node runs as a cluster member.
    pub fn clustered(&self) -> bool {
        self.cluster_listen.is_some()
    }

    /// This node's name: `node_name`, or `ringmq@HOSTNAME`.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node_name {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        format!("ringmq@{}", if host.is_empty() { "localhost" } else { host })
    }

    /// The link address peers dial.
    pub fn cluster_advertised(&self) -> Option<String> {
        match (&self.cluster_advertise, self.cluster_listen) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(l)) => Some(l.to_string()),
            (None, None) => None,
        }
    }

    pub(in crate::server) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, why: String| Err(ConfigError::Invalid { key, why });
        let Some(listen) = self.cluster_listen else {
            for (key, set) in [
                ("join", !self.join.is_empty()),
                ("cluster_secret_file", self.cluster_secret_file.is_some()),
                ("cluster_advertise", self.cluster_advertise.is_some()),
                ("cluster_reset", self.cluster_reset),
                ("cluster_tls_cert_file", self.cluster_tls_cert_file.is_some()),
            ] {
                if set {
                    return bad(key, "needs cluster_listen (clustering is off without it)".into());
                }
            }
            return Ok(());
        };
        if self.cluster_secret_file.is_none() {
            return bad("cluster_secret_file", "a clustered node needs the cluster's shared secret".into());
        }
        let name = self.node_name();
        let max = crate::protocol::link::NODE_NAME_BYTES_MAX;
        if name.is_empty() || name.len() > max || name.chars().any(char::is_control) {
            return bad("node_name", format!("{name:?}: 1 to {max} bytes, no control characters"));
        }
        if self.cluster_advertise.is_none() && (listen.ip().is_unspecified() || listen.port() == 0) {
            return bad(
                "cluster_advertise",
                format!("cluster_listen {listen} is no address a peer can dial: give cluster_advertise"),
            );
        }
        if listen.port() != 0 && usize::from(listen.port()) + self.shard_count() >= 65_536 {
            return bad(
                "cluster_listen",
                format!("{listen}: the shards' data ports (port + 1 + shard) run past 65535"),
            );
        }
        let tls = [&self.cluster_tls_cert_file, &self.cluster_tls_key_file, &self.cluster_tls_ca_file];
        let given = tls.iter().filter(|f| f.is_some()).count();
        if given != 0 && given != 3 {
            return bad(
                "cluster_tls_cert_file",
                "TLS on the link needs cluster_tls_cert_file, cluster_tls_key_file and cluster_tls_ca_file".into(),
            );
        }
        if self.join.len() > JOIN_SEEDS_MAX {
            return bad("join", format!("{} seeds: at most {JOIN_SEEDS_MAX}", self.join.len()));
        }
        if let Some(seed) = self.join.iter().find(|s| s.is_empty() || s.len() > 255 || !s.contains(':')) {
            return bad("join", format!("{seed:?} is not HOST:PORT"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustering_keys_need_a_listener_and_a_secret() {
        let mut c = Config { join: vec!["127.0.0.1:1".into()], ..Config::default() };
        assert!(c.validate().is_err(), "join without cluster_listen");
        c.cluster_listen = Some("127.0.0.1:4000".parse().unwrap());
        assert!(c.validate().is_err(), "no secret file");
        c.cluster_secret_file = Some("/tmp/s".into());
        c.validate().unwrap();
        c.join = vec!["nonsense".into()];
        assert!(c.validate().is_err(), "a seed with no port");
        c.join = Vec::new();
        c.cluster_listen = Some("0.0.0.0:4000".parse().unwrap());
        assert!(c.validate().is_err(), "an unspecified address and no cluster_advertise");
        c.cluster_advertise = Some("10.0.0.1:4000".into());
        c.validate().unwrap();
        c.cluster_tls_cert_file = Some("/tmp/c.pem".into());
        assert!(c.validate().is_err(), "a certificate without its key and CA");
        c.cluster_tls_key_file = Some("/tmp/c.key".into());
        c.cluster_tls_ca_file = Some("/tmp/ca.pem".into());
        c.validate().unwrap();
        c.node_name = Some(String::new());
        assert!(c.validate().is_err(), "an empty node name");
        assert!(Config::default().validate().is_ok() && !Config::default().clustered());
    }
}
