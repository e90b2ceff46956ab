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
