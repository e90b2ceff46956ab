//! The client's TLS (`ringmqs://`): rustls on aws-lc-rs, as the broker.
//!
//! - The broker's certificate must chain to the CA in
//!   [`TlsFiles::ca`] (or, without one, to the system's bundle) and name
//!   the host of the URL (a DNS name, or an IP address in the
//!   certificate's IP SANs).
//! - A client certificate and key ([`TlsFiles::cert`], [`TlsFiles::key`])
//!   for brokers that ask for one (`tls_client_certs`).
//! - `Tls::connect` (glommio, for the async client and the loadgen),
//!   `Tls::connect_futures` (any futures-io stream: the tokio client's,
//!   through an adapter), [`Tls::connect_std`] (a `rustls::StreamOwned`
//!   over a std socket, for one thread) and `SyncTls` (the blocking
//!   client, whose heartbeat thread writes too).

use super::{BrokerUrl, ClientError, ClientOptions, Result};
#[cfg(feature = "glommio")]
use crate::rt::Transport;
use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// The files a TLS client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM) to trust; `None`: the system's bundle.
    pub ca: Option<PathBuf>,
    /// The client's certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files the client options name.
    pub fn from_options(o: &ClientOptions) -> Self {
        Self { ca: o.tls_ca_file.clone(), cert: o.tls_cert_file.clone(), key: o.tls_key_file.clone() }
    }
}

/// Where distributions keep the system's CA bundle (the first found is used).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A PEM file's bytes: a certificate chain or a key is a few KiB, a CA
/// bundle rarely over 1 MiB.
const PEM_FILE_BYTES_MAX: u64 = 16 << 20;

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    let bad = |why: String| ClientError::Tls(format!("{what} {}: {why}", path.display()));
    let len = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if len > PEM_FILE_BYTES_MAX {
        return Err(bad(format!("{len} bytes is over {PEM_FILE_BYTES_MAX}")));
    }
    std::fs::read(path).map_err(|e| bad(e.to_string()))
}

fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!("{what} {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn roots(ca: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in certificates("CA file", path)? {
                roots.add(c).map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            let Some(path) = SYSTEM_CA_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) else {
                return Err(ClientError::Tls(format!(
                    "no CA file given (tls_ca_file, --ca) and no system bundle at {}",
                    SYSTEM_CA_BUNDLES.join(", ")
                )));
            };
            let (added, _ignored) = roots.add_parsable_certificates(certificates("system CA bundle", path)?);
            if added == 0 {
                return Err(ClientError::Tls(format!("system CA bundle {}: no usable certificate", path.display())));
            }
        }
    }
    Ok(roots)
}

/// The rustls settings for `files`: the CA to trust (`None`: the system's
/// bundle), and a certificate and key to present if given.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots(files.ca.as_deref())?);
    let config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates("client certificate", cert)?;
            let key_pem = read_pem("client key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| ClientError::Tls(format!("client key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                ClientError::Tls(format!("{} and {} do not make a pair: {e}", cert.display(), key.display()))
            })?
        }
        _ => return Err(ClientError::Tls("a client certificate needs its key, and a key its certificate".into())),
    };
    Ok(Arc::new(config))
}

/// What a TLS failure means, in words a user acts on.
pub(crate) fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the broker's certificate is not signed by a CA this client trusts (check the CA file)"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the broker's certificate does not name the host in the URL"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "the broker's certificate has expired",
        E::AlertReceived(A::CertificateRequired) => "the broker requires a client certificate",
        E::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateExpired | A::CertificateUnknown) => {
            "the broker refused this client's certificate"
        }
        _ => return e.to_string(),
    };
    format!("{hint}: {e}")
}

/// TLS settings and the name to verify: one for every connection of a
/// client. Cheap to clone (the rustls config is shared, and with it the
/// session cache, so follow-on connections resume).
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.name.to_str()).finish_non_exhaustive()
    }
}

/// A finished TLS connection over a std socket, for one thread.
pub type StdTlsStream = rustls::StreamOwned<ClientConnection, TcpStream>;

impl Tls {
    /// Loads `files` (the CA, the client's certificate and key) for
    /// connections to `server_name`: a DNS name or an IP address, as the
    /// broker's certificate names it.
    pub fn new(files: &TlsFiles, server_name: &str) -> Result<Tls> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(format!("{server_name:?} is no server name: {e}")))?;
        Ok(Tls { config: client_config(files)?, name })
    }

    /// The options' TLS settings for their URL's host; `None` when they
    /// connect in clear (refused when they also name TLS files).
    pub fn for_options(opts: &ClientOptions) -> Result<Option<Tls>> {
        let (opts, url): (ClientOptions, BrokerUrl) = opts.resolved()?;
        if !super::dial::tls_wanted(&opts, &url)? {
            return Ok(None);
        }
        Tls::new(&TlsFiles::from_options(&opts), &url.host).map(Some)
    }

    /// The name the broker's certificate is checked against.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }

    fn handshake_error(&self, e: io::Error) -> ClientError {
        let name = self.name.to_str();
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => ClientError::Tls(format!("handshake with {name}: {}", explain(t))),
            None => ClientError::Tls(format!("handshake with {name}: {e}")),
        }
    }

    /// The handshake over any futures-io stream (the tokio client's),
    /// within `timeout` as `timer` (the runtime's) measures it.
    #[cfg(feature = "tokio")]
    pub(crate) async fn connect_futures<S, T, F>(
        &self,
        stream: S,
        timeout: Duration,
        timer: T,
    ) -> Result<futures_rustls::client::TlsStream<S>>
    where
        S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
        T: FnOnce(Duration, futures_rustls::Connect<S>) -> F,
        F: std::future::Future<Output = std::result::Result<io::Result<futures_rustls::client::TlsStream<S>>, ()>>,
    {
        let connecting = futures_rustls::TlsConnector::from(self.config.clone()).connect(self.name.clone(), stream);
        match timer(timeout, connecting).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(self.handshake_error(e)),
            Err(()) => Err(ClientError::Tls(format!(
                "handshake with {} not done within {} ms",
                self.name.to_str(),
                timeout.as_millis()
            ))),
        }
    }

    /// The handshake over a glommio socket, within `timeout`.
    #[cfg(feature = "glommio")]
    pub async fn connect(&self, tcp: glommio::net::TcpStream, timeout: Duration) -> Result<Transport> {
        let connecting = futures_rustls::TlsConnector::from(self.config.clone()).connect(self.name.clone(), tcp);
        match glommio::timer::timeout(timeout, async { Ok(connecting.await) }).await {
            Ok(Ok(s)) => Ok(Transport::ClientTls(Box::new(s))),
            Ok(Err(e)) => Err(self.handshake_error(e)),
            Err(_) => Err(ClientError::Tls(format!(
                "handshake with {} not done within {} ms",
                self.name.to_str(),
                timeout.as_millis()
            ))),
        }
    }

    /// The handshake over a std socket, within `timeout`; the socket's
    /// write timeout is cleared after, its read timeout left at `timeout`.
    pub fn connect_std(&self, tcp: TcpStream, timeout: Duration) -> Result<StdTlsStream> {
        let conn = self.handshake(&tcp, timeout)?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    fn handshake(&self, tcp: &TcpStream, timeout: Duration) -> Result<ClientConnection> {
        let mut conn =
            ClientConnection::new(self.config.clone(), self.name.clone()).map_err(|e| ClientError::Tls(explain(&e)))?;
        let io_err = |e: io::Error| ClientError::Io(e.to_string());
        tcp.set_read_timeout(Some(timeout)).map_err(io_err)?;
        tcp.set_write_timeout(Some(timeout)).map_err(io_err)?;
        let deadline = Instant::now() + timeout;
        while conn.is_handshaking() || conn.wants_write() {
            if Instant::now() >= deadline {
                return Err(ClientError::Tls(format!(
                    "handshake with {} not done within {} ms",
                    self.name.to_str(),
                    timeout.as_millis()
                )));
            }
            match conn.complete_io(&mut &*tcp) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(ClientError::Tls(format!(
                        "handshake with {} not done within {} ms",
                        self.name.to_str(),
                        timeout.as_millis()
                    )))
                }
                Err(e) => return Err(self.handshake_error(e)),
            }
        }
        tcp.set_write_timeout(None).map_err(io_err)?;
        Ok(conn)
    }

    /// The blocking client's connection.
    pub(crate) fn connect_shared(&self, tcp: TcpStream, timeout: Duration) -> Result<SyncTls> {
        let conn = self.handshake(&tcp, timeout)?;
        Ok(SyncTls { state: Mutex::new(State { conn, out: Vec::new() }), sending: Mutex::new(Vec::new()), sock: tcp })
    }
}

/// A TLS connection over a std socket that one thread reads and any
/// thread writes (the blocking client and its heartbeat thread).
///
/// The rustls state is behind one lock, held only to encrypt or decrypt,
/// never across a socket call: a writer waiting for the socket (a broker
/// that stopped reading) never keeps the reader from taking in what has
/// arrived. Encrypted records queue in `out` in the order they were made;
/// a writer then takes the `sending` lock and sends everything queued, so
/// records leave in order whoever sends them.
pub(crate) struct SyncTls {
    state: Mutex<State>,
    /// Held while bytes go to the socket; holds the spare buffer.
    sending: Mutex<Vec<u8>>,
    sock: TcpStream,
}

struct State {
    conn: ClientConnection,
    /// Records made and not yet sent.
    out: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes one read may take from the socket.
const READ_BYTES: usize = 32 * 1024;

impl State {
    /// Moves every record rustls has made into `out`.
    fn seal(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.out)?;
        }
        Ok(())
    }
}

impl SyncTls {
    pub(crate) fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        {
            let mut s = lock(&self.state);
            while !bytes.is_empty() {
                let n = s.conn.writer().write(bytes)?;
                s.seal()?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                bytes = &bytes[n..];
            }
        }
        self.send(true)
    }

    /// Sends what is queued. Without `wait`, only when no other thread is
    /// sending (that one sends it, or the next write does).
    fn send(&self, wait: bool) -> io::Result<()> {
        let mut spare = match self.sending.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) if wait => lock(&self.sending),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        loop {
            {
                let mut s = lock(&self.state);
                if s.out.is_empty() {
                    return Ok(());
                }
                std::mem::swap(&mut s.out, &mut *spare);
            }
            let r = (&self.sock).write_all(&spare);
            spare.clear();
            r?;
        }
    }

    /// Appends the plaintext of what arrives within `timeout` (`None`:
    /// waits) to `dst`; `Ok(false)` at the end of the stream (the socket's
    /// or the broker's close_notify).
    pub(crate) fn read_into(&self, dst: &mut BytesMut, timeout: Option<Duration>) -> io::Result<bool> {
        self.sock.set_read_timeout(timeout)?;
        let mut raw = [0u8; READ_BYTES];
        let n = (&self.sock).read(&mut raw)?;
        if n == 0 {
            return Ok(false);
        }
        let before = dst.len();
        let mut closed = false;
        let failed = {
            let mut s = lock(&self.state);
            let mut rest = &raw[..n];
            let mut failed = None;
            while !rest.is_empty() && failed.is_none() {
                // Plaintext is taken out after each record batch, so
                // rustls's own buffers never fill.
                if s.conn.read_tls(&mut rest)? == 0 {
                    failed = Some(io::Error::other("TLS: the record buffer is full"));
                    break;
                }
                match s.conn.process_new_packets() {
                    Ok(st) => {
                        let have = st.plaintext_bytes_to_read();
                        closed |= st.peer_has_closed();
                        if have > 0 {
                            let at = dst.len();
                            dst.resize(at + have, 0);
                            s.conn.reader().read_exact(&mut dst[at..])?;
                        }
                    }
                    Err(e) => failed = Some(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            // An alert for the failure, or a record the protocol owes.
            s.seal()?;
            failed
        };
        let _ = self.send(false);
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(!closed || dst.len() > before)
    }
}

impl Drop for SyncTls {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        s.conn.send_close_notify();
        if s.seal().is_ok() && !s.out.is_empty() {
            let _ = self.sock.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = (&self.sock).write_all(&s.out);
        }
    }
}
