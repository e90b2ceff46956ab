//! `amqp://user:pass@host:port/vhost` URLs.

use anyhow::{anyhow, Result};

/// `amqp://user:pass@host:port/vhost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl {
    pub addr: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
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
        let rest = url.strip_prefix("amqp://").ok_or_else(|| anyhow!("not an amqp:// URL: {url}"))?;
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
        let addr = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            hostport.to_string()
        } else {
            format!("{hostport}:5672")
        };
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) => percent_decode(p),
        };
        Ok(AmqpUrl { addr, user, pass, vhost })
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
            AmqpUrl { addr: "127.0.0.1:5673".into(), user: "bob".into(), pass: "s@cret".into(), vhost: "/".into() }
        );
        let u = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(u.addr, "localhost:5672");
        assert_eq!((u.user.as_str(), u.vhost.as_str()), ("guest", "/"));
        let u = AmqpUrl::parse("amqp://u:p@h:1/vh").unwrap();
        assert_eq!(u.vhost, "vh");
        assert!(AmqpUrl::parse("http://x").is_err());
    }
}
