//! How a client reaches the broker: a TCP connection, and TLS over it for
//! `ringmqs://` (or [`ClientOptions::tls`]). The async client gets a
//! [`Transport`], the blocking one a [`SyncStream`].
//!
//! One [`Dialer`] serves every connection of a client: the follow-on
//! connections to other shards (dialled at the addresses the Hello's shard
//! map gives) use the same TLS settings and are verified against the same
//! server name, the URL's host, since that is what the broker's
//! certificate names.

use super::{BrokerUrl, ClientError, ClientOptions, Result};
#[cfg(feature = "glommio")]
use crate::rt::Transport;
use bytes::BytesMut;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

pub(crate) struct Dialer {
    #[cfg(feature = "tls")]
    tls: Option<super::tls::Tls>,
}

impl Dialer {
    /// Plain, or TLS with the options' files and the URL's host as the
    /// server name.
    pub(crate) fn new(opts: &ClientOptions, url: &BrokerUrl) -> Result<Dialer> {
        if !tls_wanted(opts, url)? {
            return Ok(Dialer {
                #[cfg(feature = "tls")]
                tls: None,
            });
        }
        #[cfg(feature = "tls")]
        {
            let files = super::tls::TlsFiles::from_options(opts);
            Ok(Dialer { tls: Some(super::tls::Tls::new(&files, &url.host)?) })
        }
        #[cfg(not(feature = "tls"))]
        Err(ClientError::Invalid(format!("{} needs TLS, and this build of ringmq has no `tls` feature", opts.url)))
    }

    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Connects (and shakes hands) within `timeout` each.
    #[cfg(feature = "glommio")]
    pub(crate) async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<Transport> {
        let tcp = glommio::net::TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|e| ClientError::Io(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.connect(tcp, timeout).await;
        }
        Ok(Transport::Plain(tcp))
    }

    /// The blocking client's connection, within `timeout` each.
    pub(crate) fn connect_std(&self, addr: SocketAddr, timeout: Duration) -> Result<SyncStream> {
        let tcp =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| ClientError::Io(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return Ok(SyncStream::Tls(std::sync::Arc::new(tls.connect_shared(tcp, timeout)?)));
        }
        Ok(SyncStream::Plain(tcp))
    }
}

/// Whether `opts` connect to `url` over TLS. TLS files with a plain URL
/// are refused: a client that names a CA expects its password not to
/// cross the network in clear.
pub(crate) fn tls_wanted(opts: &ClientOptions, url: &BrokerUrl) -> Result<bool> {
    if url.tls || opts.tls {
        return Ok(true);
    }
    if opts.tls_ca_file.is_some() || opts.tls_cert_file.is_some() || opts.tls_key_file.is_some() {
        return Err(ClientError::Invalid(format!(
            "TLS files are set but {} is plain: use ringmqs://{}:{} (or the tls option)",
            opts.url,
            url.host,
            url.addr.port()
        )));
    }
    Ok(false)
}

/// An I/O error as the client reports it: a TLS failure (an alert from
/// the broker, a record that does not decrypt) as [`ClientError::Tls`].
pub(crate) fn io_error(e: io::Error) -> ClientError {
    #[cfg(feature = "tls")]
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return ClientError::Tls(super::tls::explain(t));
    }
    ClientError::Io(e.to_string())
}

/// The blocking client's byte stream. Reading is the connection's own
/// thread's; writes may also come from the heartbeat thread, through a
/// [`SyncWriter`].
pub(crate) enum SyncStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(std::sync::Arc<super::tls::SyncTls>),
}

/// Bytes one read may take from a socket.
const READ_BYTES: usize = 64 * 1024;

impl SyncStream {
    /// Appends what arrives within `timeout` (`None`: waits) to `dst`:
    /// `Ok(false)` at the end of the stream, `Ok(true)` otherwise (over
    /// TLS possibly with nothing appended yet: a record not yet whole).
    /// A read that times out is an error of kind `WouldBlock` or
    /// `TimedOut`.
    pub(crate) fn read_into(&self, dst: &mut BytesMut, timeout: Option<Duration>) -> io::Result<bool> {
        // A signal to this process (the broker's, when it runs in the same
        // one) interrupts a read without ending it: read again.
        loop {
            match self.read_once(dst, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn read_once(&self, dst: &mut BytesMut, timeout: Option<Duration>) -> io::Result<bool> {
        match self {
            SyncStream::Plain(s) => {
                s.set_read_timeout(timeout)?;
                let mut tmp = [0u8; READ_BYTES];
                let n = (&*s).read(&mut tmp)?;
                dst.extend_from_slice(&tmp[..n]);
                Ok(n > 0)
            }
            #[cfg(feature = "tls")]
            SyncStream::Tls(t) => t.read_into(dst, timeout),
        }
    }

    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            SyncStream::Plain(s) => (&*s).write_all(bytes),
            #[cfg(feature = "tls")]
            SyncStream::Tls(t) => t.write_all(bytes),
        }
    }

    /// A writer for another thread (the heartbeat's).
    pub(crate) fn writer(&self) -> io::Result<SyncWriter> {
        Ok(match self {
            SyncStream::Plain(s) => SyncWriter::Plain(Mutex::new(s.try_clone()?)),
            #[cfg(feature = "tls")]
            SyncStream::Tls(t) => SyncWriter::Tls(t.clone()),
        })
    }
}

/// Writes to a blocking connection from any thread; one writer at a time.
pub(crate) enum SyncWriter {
    Plain(Mutex<TcpStream>),
    /// The TLS stream orders its writers itself.
    #[cfg(feature = "tls")]
    Tls(std::sync::Arc<super::tls::SyncTls>),
}

impl SyncWriter {
    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            SyncWriter::Plain(m) => m.lock().unwrap_or_else(|p| p.into_inner()).write_all(bytes),
            #[cfg(feature = "tls")]
            SyncWriter::Tls(t) => t.write_all(bytes),
        }
    }
}
