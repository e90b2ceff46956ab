//! `amqp://user:pass@host:port/vhost` and `amqps://...` URLs, with
//! RabbitMQ's TLS query parameters (`cacertfile`, `certfile`, `keyfile`,
//! `server_name_indication`).

use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;

/// `amqp://user:pass@host:port/vhost` or `amqps://...?cacertfile=...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl {
    pub addr: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
    /// `amqps://`: the TLS settings.
    pub tls: Option<AmqpTls>,
}

/// How an `amqps://` connection verifies the broker and presents itself.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AmqpTls {
    /// The name the broker's certificate must carry: the URL's host, or
    /// `server_name_indication`.
    pub server_name: String,
    /// `cacertfile` (or `--tls-ca`); none: the system's CA bundle.
    pub ca: Option<PathBuf>,
    /// `certfile` and `keyfile` (or `--tls-cert`, `--tls-key`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl AmqpUrl {
    pub fn parse(url: &str) -> Result<AmqpUrl> {
        let (tls, rest) = match (url.strip_prefix("amqps://"), url.strip_prefix("amqp://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => bail!("not an amqp:// or amqps:// URL: {url}"),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let mut params = AmqpTls::default();
        let mut sni = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "cacertfile" => params.ca = Some(v.into()),
                "certfile" => params.cert = Some(v.into()),
                "keyfile" => params.key = Some(v.into()),
                "server_name_indication" => sni = Some(v),
                // heartbeat, connection_timeout, ...: not the loadgen's
                _ => {}
            }
        }
        if !tls && (params.ca.is_some() || params.cert.is_some() || params.key.is_some() || sni.is_some()) {
            bail!("TLS parameters in a plain amqp:// URL: use amqps://");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(ui) => match ui.find(':') {
                Some(i) => (percent_decode(&ui[..i]), percent_decode(&ui[i + 1..])),
                None => (percent_decode(ui), String::new()),
            },
            None => ("guest".into(), "guest".into()),
        };
        let hostport = if hostport.is_empty() { "127.0.0.1" } else { hostport };
        let (host, addr) = match hostport.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
            Some((host, _)) => (host, hostport.to_string()),
            None => (hostport, format!("{hostport}:{}", if tls { 5671 } else { 5672 })),
        };
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) => percent_decode(p),
        };
        let tls = tls.then(|| AmqpTls { server_name: sni.unwrap_or_else(|| host.to_string()), ..params });
        Ok(AmqpUrl { addr, user, pass, vhost, tls })
    }

    /// Fills in the TLS files the URL does not name (`--tls-ca` etc.).
    pub fn with_tls_defaults(
        mut self,
        ca: Option<&PathBuf>,
        cert: Option<&PathBuf>,
        key: Option<&PathBuf>,
    ) -> Result<Self> {
        match &mut self.tls {
            Some(t) => {
                t.ca = t.ca.take().or_else(|| ca.cloned());
                t.cert = t.cert.take().or_else(|| cert.cloned());
                t.key = t.key.take().or_else(|| key.cloned());
            }
            None if ca.is_some() || cert.is_some() || key.is_some() => {
                return Err(anyhow!("--tls-ca, --tls-cert and --tls-key need an amqps:// URL"))
            }
            None => {}
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = AmqpUrl::parse("amqp://bob:s%40cret@127.0.0.1:5673/%2f").unwrap();
        assert_eq!(
            u,
            AmqpUrl {
                addr: "127.0.0.1:5673".into(),
                user: "bob".into(),
                pass: "s@cret".into(),
                vhost: "/".into(),
                tls: None
            }
        );
        let u = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(u.addr, "localhost:5672");
        assert_eq!((u.user.as_str(), u.vhost.as_str()), ("guest", "/"));
        let u = AmqpUrl::parse("amqp://u:p@h:1/vh").unwrap();
        assert_eq!(u.vhost, "vh");
        assert!(AmqpUrl::parse("http://x").is_err());
    }

    #[test]
    fn amqps_urls() {
        let u = AmqpUrl::parse("amqps://u:p@localhost/vh?cacertfile=/tmp/ca%20dir/ca.pem&heartbeat=10").unwrap();
        assert_eq!((u.addr.as_str(), u.vhost.as_str()), ("localhost:5671", "vh"));
        let t = u.tls.clone().unwrap();
        assert_eq!(t.server_name, "localhost");
        assert_eq!(t.ca, Some("/tmp/ca dir/ca.pem".into()));
        assert_eq!((t.cert, t.key), (None, None));
        // The flags fill in what the URL leaves out, never what it says.
        let flag: PathBuf = "/flag/ca.pem".into();
        let cert: PathBuf = "/flag/c.pem".into();
        let u = u.with_tls_defaults(Some(&flag), Some(&cert), None).unwrap();
        let t = u.tls.unwrap();
        assert_eq!((t.ca, t.cert), (Some("/tmp/ca dir/ca.pem".into()), Some(cert.clone())));
        let u =
            AmqpUrl::parse("amqps://127.0.0.1:1?server_name_indication=broker.example&certfile=c&keyfile=k").unwrap();
        let t = u.tls.unwrap();
        assert_eq!(t.server_name, "broker.example");
        assert_eq!((t.cert, t.key), (Some("c".into()), Some("k".into())));
        assert_eq!(AmqpUrl::parse("amqps://[::1]:5671").unwrap().tls.unwrap().server_name, "::1");
        // TLS settings for a plain URL are a mistake, not something to ignore.
        assert!(AmqpUrl::parse("amqp://h?cacertfile=ca.pem").is_err());
        assert!(AmqpUrl::parse("amqp://h").unwrap().with_tls_defaults(Some(&flag), None, None).is_err());
    }
}
