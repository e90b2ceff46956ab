//! TLS on the listeners (`tls_listen`, `amqps_listen`, `https_listen`):
//! each has its certificate, key, CA and client-certificate rule, loaded
//! at start and again on `SIGHUP` ([`TlsSet::reload`]). A reload that
//! fails keeps the listener on what it had, and says why in the log; a
//! connection's handshake takes whatever is current when it is accepted.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Whether a listener asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientCerts {
    /// Never asked for.
    #[default]
    None,
    /// Asked for, verified against the CA when given; a client without one
    /// still connects (and logs in with a password).
    Optional,
    /// A client without a certificate the CA signed is refused in the handshake.
    Required,
}

/// What AMQP's `EXTERNAL` login takes from a client certificate as the
/// user name (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CertLogin {
    /// The subject's common name (`CN`).
    #[default]
    CommonName,
    /// The whole subject, as RFC 4514 text (`CN=app,O=Example`).
    DistinguishedName,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{listener}: cannot read {path}: {why}")]
    File { listener: &'static str, path: PathBuf, why: String },
    #[error("{listener}: {path} holds no {what}")]
    Empty { listener: &'static str, path: PathBuf, what: &'static str },
    #[error("{listener}: {why}")]
    Config { listener: &'static str, why: String },
}

/// Why a connection's TLS handshake did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("TLS handshake not done within handshake_timeout_ms = {0}")]
    Timeout(u128),
    /// The connection was evicted at `unauthenticated_connections_max`.
    #[error("evicted during the TLS handshake")]
    Evicted,
}

/// Why a verified client certificate names no user for `EXTERNAL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertLoginError {
    #[error("unreadable certificate: {0}")]
    Unreadable(String),
    #[error("the certificate's subject has no common name")]
    NoCommonName,
}

/// The files one listener uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_certs: ClientCerts,
}

/// One TLS listener's current settings.
pub struct ListenerTls {
    pub name: &'static str,
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ListenerTls {
    pub fn load(name: &'static str, files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(name, &files)?;
        Ok(Self { name, files, current: RwLock::new(config) })
    }

    /// Reads the files again; on success new handshakes use them.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(self.name, &self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(p) => *p.into_inner() = config,
        }
        Ok(())
    }

    /// What a new connection's handshake uses.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        let c = match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        futures_rustls::TlsAcceptor::from(c)
    }
}

/// Every TLS listener the config turns on (`None`: that one is off).
#[derive(Default)]
pub struct TlsSet {
    pub native: Option<Arc<ListenerTls>>,
    pub amqps: Option<Arc<ListenerTls>>,
    pub https: Option<Arc<ListenerTls>>,
    /// The inter-node link's listening side (`cluster_tls_*`): it asks
    /// every peer for a certificate the cluster's CA signed.
    pub cluster: Option<Arc<ListenerTls>>,
}

impl TlsSet {
    /// Loads each configured listener's files: a bad one stops the start.
    pub fn load(c: &super::config::Config) -> Result<Self, TlsError> {
        let one = |name, on: bool, files: Option<TlsFiles>| -> Result<Option<Arc<ListenerTls>>, TlsError> {
            if !on {
                return Ok(None);
            }
            let files = files.ok_or_else(|| TlsError::Config {
                listener: name,
                why: "needs a certificate and key (tls_cert_file and tls_key_file, or the listener's own)".into(),
            })?;
            ListenerTls::load(name, files).map(|l| Some(Arc::new(l)))
        };
        Ok(Self {
            native: one("tls_listen", c.tls_listen.is_some(), c.tls_files(super::config::TlsListener::Native))?,
            amqps: one("amqps_listen", c.amqps_listen.is_some(), c.tls_files(super::config::TlsListener::Amqps))?,
            https: one("https_listen", c.https_listen.is_some(), c.tls_files(super::config::TlsListener::Https))?,
            cluster: one("cluster_listen", c.cluster_tls_cert_file.is_some(), cluster_files(c))?,
        })
    }

    /// `SIGHUP`: every listener reads its files again. Returns how many
    /// failed (each is logged, and keeps its previous certificate).
    pub fn reload(&self) -> usize {
        let mut failed = 0;
        for l in [&self.native, &self.amqps, &self.https, &self.cluster].into_iter().flatten() {
            match l.reload() {
                Ok(()) => tracing::info!(listener = l.name, "TLS certificate and key reloaded"),
                Err(e) => {
                    failed += 1;
                    tracing::error!(listener = l.name, "TLS reload failed; the previous certificate stays: {e}");
                }
            }
        }
        failed
    }
}

/// The link's files: all three (validated with the config).
fn cluster_files(c: &super::config::Config) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: c.cluster_tls_cert_file.clone()?,
        key: c.cluster_tls_key_file.clone()?,
        ca: Some(c.cluster_tls_ca_file.clone()?),
        client_certs: ClientCerts::Required,
    })
}

/// The bytes of a file that holds PEM (bounded: a certificate chain or a
/// key is a few KiB; a CA bundle rarely passes 1 MiB).
const PEM_FILE_BYTES_MAX: u64 = 16 << 20;

fn read_pem(listener: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bad = |why: String| TlsError::File { listener, path: path.into(), why };
    let len = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if len > PEM_FILE_BYTES_MAX {
        return Err(bad(format!("{len} bytes is over {PEM_FILE_BYTES_MAX}")));
    }
    std::fs::read(path).map_err(|e| bad(e.to_string()))
}

fn certificates(listener: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(listener, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::File {
        listener,
        path: path.into(),
        why: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { listener, path: path.into(), what: "PEM certificate" });
    }
    Ok(certs)
}

fn server_config(listener: &'static str, f: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(listener, &f.cert)?;
    let key_pem = read_pem(listener, &f.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::File {
        listener,
        path: f.key.clone(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config { listener, why: e.to_string() })?;
    let builder = match (f.client_certs, &f.ca) {
        (ClientCerts::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            let why = "client certificates need a CA file (tls_ca_file, or the listener's own)".into();
            return Err(TlsError::Config { listener, why });
        }
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(listener, ca)? {
                roots.add(c).map_err(|e| TlsError::File { listener, path: ca.clone(), why: e.to_string() })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if mode == ClientCerts::Optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Config { listener, why: e.to_string() })?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config { listener, why: format!("the certificate and key do not make a pair: {e}") })?;
    if listener == "https_listen" {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// The login name a verified client certificate carries (`EXTERNAL`), or
/// why there is none.
pub fn certificate_login(der: &[u8], from: CertLogin) -> Result<String, CertLoginError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertLoginError::Unreadable(e.to_string()))?;
    let subject = cert.subject();
    match from {
        CertLogin::DistinguishedName => Ok(subject.to_string()),
        CertLogin::CommonName => subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .ok_or(CertLoginError::NoCommonName),
    }
}
