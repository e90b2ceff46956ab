//! Certificates a TLS test makes for itself (rcgen), written as PEM files
//! into a temporary directory so that any client (pika, Node, Go, Java,
//! the ringmq tools) can read them:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the test CA, which signs everything below |
//! | `server.pem`, `server.key` | the broker's: `localhost` and `127.0.0.1` |
//! | `client.pem`, `client.key` | a client's, subject `CN=<client_cn>` |
//! | `expired.pem`, `expired.key` | a client's the CA signed, expired in 2020 |
//! | `other-ca.pem` | a CA nobody here uses: trusting it alone must fail |
//! | `other-client.pem`, `other-client.key` | a client's the other CA signed |
//! | `stranger.pem`, `stranger.key` | a client's the CA signed, `CN=stranger` (no such user) |

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

pub struct TestCerts {
    dir: tempfile::TempDir,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "ringmq tests");
    d
}

impl TestCerts {
    /// A CA, the broker's certificate, and client certificates for `client_cn`.
    pub fn new(client_cn: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let main = ca("ringmq test CA");
        let other = ca("some other CA");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", main.cert.pem());
        write("other-ca.pem", other.cert.pem());
        let leaf = |sans: Vec<String>, cn: &str, expired: bool, by: &Ca| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name = dn(cn);
            if expired {
                p.not_before = rcgen::date_time_ymd(2019, 1, 1);
                p.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &by.cert, &by.key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (c, k) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost", false, &main);
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(vec![], client_cn, false, &main);
        write("client.pem", c);
        write("client.key", k);
        let (c, k) = leaf(vec![], client_cn, true, &main);
        write("expired.pem", c);
        write("expired.key", k);
        let (c, k) = leaf(vec![], client_cn, false, &other);
        write("other-client.pem", c);
        write("other-client.key", k);
        let (c, k) = leaf(vec![], "stranger", false, &main);
        write("stranger.pem", c);
        write("stranger.key", k);
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Turns on every TLS listener (port 0) with the broker's certificate,
    /// and this CA for client certificates.
    pub fn configure(&self, c: &mut ringmq::server::config::Config) {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        c.tls_listen = Some(any);
        c.amqps_listen = Some(any);
        c.https_listen = Some(any);
        c.tls_cert_file = Some(self.path("server.pem"));
        c.tls_key_file = Some(self.path("server.key"));
        c.tls_ca_file = Some(self.path("ca.pem"));
    }
}

/// A TLS client (rustls, blocking) trusting `ca` for the name `localhost`,
/// presenting `client` (certificate and key files) when given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
    };
    std::sync::Arc::new(config)
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Connects and finishes the handshake (both flights: a refused client
/// certificate shows here, as TLS 1.3 reports it after the client's
/// Finished). `Err` carries the TLS or socket error.
pub fn connect(addr: std::net::SocketAddr, config: std::sync::Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = std::net::TcpStream::connect_timeout(&addr, super::STEP)?;
    tcp.set_read_timeout(Some(super::STEP))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The certificate the server presented (DER).
pub fn server_certificate(s: &TlsStream) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

/// An HTTP/1.1 request over `s` with basic auth; the status and body.
/// The connection stays open (keep-alive) for the next one.
pub fn https_request(s: &mut TlsStream, method: &str, path: &str, (user, password): (&str, &str)) -> (u16, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed mid-response: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let len = head.lines().find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().unwrap())
        });
        let done = match len {
            Some(len) => body.len() >= len,
            None => head.to_ascii_lowercase().contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n"),
        };
        if done {
            let status = head[9..12].parse().unwrap();
            return (status, body.to_string());
        }
    }
}
