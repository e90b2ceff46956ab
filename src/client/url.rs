//! Broker URLs, parsed with the `url` crate:
//! `ringmq[s]://[USER[:PASSWORD]@]HOST:PORT[/VHOST][?OPTION=VALUE&...]`.
//!
//! - `ringmqs://` is TLS; a bare `HOST:PORT` is plain.
//! - USER, PASSWORD and VHOST are percent-decoded (`%2F` is `/`, the
//!   default vhost: also what no path, or `/`, means).
//! - Options: `heartbeat` (seconds, as AMQP URIs have it) or
//!   `heartbeat_ms`, `connection_timeout` (milliseconds, as RabbitMQ's),
//!   `shard_aware` and `cluster_aware` (`true`/`false`), `cacertfile`,
//!   `certfile`, `keyfile` (PEM paths, RabbitMQ's names). Anything else is
//!   refused by name: a typo must not be ignored.
//!
//! What the URL says wins over the same field of `ClientOptions`
//! ([`ClientOptions::resolved`]): every client applies it at connect.

use super::{ClientError, ClientOptions, Result};
use percent_encoding::percent_decode_str;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A broker URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The broker's address, resolved.
    pub addr: SocketAddr,
    /// The host as written (without brackets for IPv6): the name the
    /// broker's certificate is checked against.
    pub host: String,
    /// `ringmqs://`.
    pub tls: bool,
    /// Credentials, when the URL has them (percent-decoded).
    pub user: Option<String>,
    /// The password, when the URL has one (percent-decoded).
    pub password: Option<String>,
    /// The vhost of the path, when it has one (percent-decoded).
    pub vhost: Option<String>,
    /// The query's options, as given (checked by [`ClientOptions::resolved`]).
    pub options: Vec<(String, String)>,
}

/// The options a URL's query may set.
pub const URL_OPTIONS: &[&str] = &[
    "heartbeat",
    "heartbeat_ms",
    "connection_timeout",
    "shard_aware",
    "cluster_aware",
    "cacertfile",
    "certfile",
    "keyfile",
];

/// `url` with the credentials masked, for error messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn decode(s: &str, url: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ClientError::BadUrl(format!("{url}: not UTF-8 once percent-decoded")))
}

/// Parses a broker URL (the scheme may be left out: plain).
pub fn parse_broker_url(raw: &str) -> Result<BrokerUrl> {
    let masked = redact(raw);
    let url = masked.as_str();
    let bad = || ClientError::BadUrl(url.into());
    let full = if raw.contains("://") { raw.to_string() } else { format!("ringmq://{raw}") };
    let u = url::Url::parse(&full).map_err(|_| bad())?;
    let tls = match u.scheme() {
        "ringmqs" => true,
        "ringmq" => false,
        _ => return Err(bad()),
    };
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_string();
    let port = u.port().ok_or_else(bad)?;
    let addr = (host.as_str(), port).to_socket_addrs().map_err(|_| bad())?.next().ok_or_else(bad)?;
    let user = (!u.username().is_empty()).then(|| decode(u.username(), url)).transpose()?;
    let password = u.password().map(|p| decode(p, url)).transpose()?;
    let vhost = match u.path() {
        "" | "/" => None,
        p => {
            let v = decode(&p[1..], url)?;
            if v.is_empty() || v.len() > 255 {
                return Err(ClientError::BadUrl(format!("{url}: a vhost is 1 to 255 bytes")));
            }
            Some(v)
        }
    };
    if u.fragment().is_some() {
        return Err(bad());
    }
    let options = u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    Ok(BrokerUrl { addr, host, tls, user, password, vhost, options })
}

/// The address of a broker URL.
pub fn parse_url(url: &str) -> Result<SocketAddr> {
    parse_broker_url(url).map(|u| u.addr)
}

fn flag(url: &str, k: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ClientError::BadUrl(format!("{url}: {k}={v:?} is not true or false"))),
    }
}

fn number(url: &str, k: &str, v: &str) -> Result<u64> {
    v.parse().map_err(|_| ClientError::BadUrl(format!("{url}: {k}={v:?} is not a number")))
}

impl ClientOptions {
    /// These options with what their URL says applied (credentials,
    /// vhost, query options), and the URL taken apart.
    pub fn resolved(&self) -> Result<(ClientOptions, BrokerUrl)> {
        let url = parse_broker_url(&self.url)?;
        let masked = redact(&self.url);
        let mut o = self.clone();
        if let Some(u) = &url.user {
            o.user = u.clone();
        }
        if let Some(p) = &url.password {
            o.password = p.clone();
        }
        if let Some(v) = &url.vhost {
            o.vhost = v.clone();
        }
        let s = &masked;
        for (k, v) in &url.options {
            match k.as_str() {
                "heartbeat" => {
                    let secs = number(s, k, v)?;
                    o.heartbeat_ms = u32::try_from(secs.saturating_mul(1000))
                        .map_err(|_| ClientError::BadUrl(format!("{s}: heartbeat={v} is too long")))?;
                }
                "heartbeat_ms" => {
                    o.heartbeat_ms = u32::try_from(number(s, k, v)?)
                        .map_err(|_| ClientError::BadUrl(format!("{s}: heartbeat_ms={v} is too long")))?;
                }
                "connection_timeout" => o.connect_timeout = Duration::from_millis(number(s, k, v)?),
                "shard_aware" => o.shard_aware = flag(s, k, v)?,
                "cluster_aware" => o.cluster_aware = flag(s, k, v)?,
                "cacertfile" => o.tls_ca_file = Some(v.into()),
                "certfile" => o.tls_cert_file = Some(v.into()),
                "keyfile" => o.tls_key_file = Some(v.into()),
                _ => {
                    return Err(ClientError::BadUrl(format!(
                        "{s}: unknown option {k:?} (known: {})",
                        URL_OPTIONS.join(", ")
                    )))
                }
            }
        }
        Ok((o, url))
    }

    /// Options from a URL alone (defaults for what it does not say).
    pub fn from_url(url: &str) -> Result<ClientOptions> {
        Ok(ClientOptions { url: url.into(), ..Default::default() }.resolved()?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = parse_broker_url("ringmqs://localhost:5681").unwrap();
        assert_eq!((u.host.as_str(), u.addr.port(), u.tls), ("localhost", 5681, true));
        let u = parse_broker_url("ringmq://127.0.0.1:5680/").unwrap();
        assert_eq!((u.host.as_str(), u.tls, u.vhost), ("127.0.0.1", false, None));
        // No scheme: plain; IPv6 without its brackets as the server name.
        let u = parse_broker_url("[::1]:5680").unwrap();
        assert_eq!((u.host.as_str(), u.tls), ("::1", false));
        assert_eq!(parse_url("ringmqs://[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        for bad in ["amqps://localhost:5671", "ringmqs://", "ringmqs://localhost", ":1", "ringmq://h:1/v#f"] {
            assert!(matches!(parse_broker_url(bad), Err(ClientError::BadUrl(_))), "{bad}");
        }
    }

    #[test]
    fn errors_do_not_show_the_password() {
        let e = parse_broker_url("ringmq://u:secret@127.0.0.1:5680?x#y").unwrap_err().to_string();
        assert!(!e.contains("secret") && e.contains("***@127.0.0.1"), "{e}");
        let e = ClientOptions::from_url("ringmq://u:secret@127.0.0.1:5680?bogus=1").unwrap_err().to_string();
        assert!(!e.contains("secret") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn credentials_vhost_and_options() {
        let o = ClientOptions::from_url(
            "ringmq://app%40corp:p%3Ass@127.0.0.1:5680/orders%2Feu?heartbeat=15&connection_timeout=2500&shard_aware=false",
        )
        .unwrap();
        assert_eq!((o.user.as_str(), o.password.as_str(), o.vhost.as_str()), ("app@corp", "p:ss", "orders/eu"));
        assert_eq!((o.heartbeat_ms, o.connect_timeout, o.shard_aware), (15_000, Duration::from_millis(2500), false));
        let o = ClientOptions::from_url("ringmq://127.0.0.1:5680/%2F?heartbeat_ms=500&cacertfile=/ca.pem").unwrap();
        assert_eq!((o.vhost.as_str(), o.heartbeat_ms), ("/", 500));
        assert_eq!(o.tls_ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let d = ClientOptions::default();
        let o = ClientOptions::from_url("ringmq://127.0.0.1:5680").unwrap();
        assert_eq!((o.user, o.password, o.vhost), (d.user, d.password, d.vhost), "defaults where the URL is silent");
        for bad in [
            "ringmq://127.0.0.1:5680?heartbaet=5",
            "ringmq://127.0.0.1:5680?heartbeat=soon",
            "ringmq://127.0.0.1:5680?shard_aware=yes",
            "ringmq://127.0.0.1:5680?heartbeat=99999999999",
            "ringmq://127.0.0.1:5680/%FF",
        ] {
            let e = ClientOptions::from_url(bad).unwrap_err();
            assert!(matches!(e, ClientError::BadUrl(_)), "{bad}: {e}");
        }
    }
}
