//! The tokio client's sockets: a TCP connection, plain or TLS. TLS is the
//! same rustls session the other clients use (`client::tls`), driven by
//! futures-rustls over a small adapter from tokio's I/O traits, so no
//! second TLS stack. A plain connection is split into tokio's owned
//! halves (no lock between reader and writer); a TLS one shares its
//! session between the halves.

use crate::client::{ClientError, Result};
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

#[cfg(feature = "tls")]
use compat::Compat;

#[cfg(feature = "tls")]
mod compat {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// A tokio socket seen through the futures-io traits futures-rustls drives.
    pub(crate) struct Compat(pub(crate) TcpStream);

    impl futures_lite::AsyncRead for Compat {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl futures_lite::AsyncWrite for Compat {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}

#[cfg(feature = "tls")]
type TlsStream = futures_rustls::client::TlsStream<Compat>;

/// A connection before it is split.
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

/// The reading half.
pub(crate) enum Reader {
    Plain(OwnedReadHalf),
    #[cfg(feature = "tls")]
    Tls(futures_lite::io::ReadHalf<Box<TlsStream>>),
}

/// The writing half.
pub(crate) enum Writer {
    Plain(OwnedWriteHalf),
    #[cfg(feature = "tls")]
    Tls(futures_lite::io::WriteHalf<Box<TlsStream>>),
}

impl Stream {
    pub(crate) fn split(self) -> (Reader, Writer) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (Reader::Plain(r), Writer::Plain(w))
            }
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                let (r, w) = futures_lite::io::split(s);
                (Reader::Tls(r), Writer::Tls(w))
            }
        }
    }
}

/// Bytes one read asks for at least.
pub(crate) const READ_BYTES: usize = 64 * 1024;

impl Reader {
    /// Appends what the next read brings to `dst`; 0 at the end of the stream.
    pub(crate) async fn read_into(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        if dst.capacity() - dst.len() < READ_BYTES {
            dst.reserve(READ_BYTES);
        }
        match self {
            Reader::Plain(r) => r.read_buf(dst).await,
            #[cfg(feature = "tls")]
            Reader::Tls(r) => {
                use futures_lite::AsyncReadExt as _;
                let start = dst.len();
                dst.resize(start + READ_BYTES, 0);
                let n = r.read(&mut dst[start..]).await;
                dst.truncate(start + *n.as_ref().unwrap_or(&0));
                n
            }
        }
    }
}

impl Writer {
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(w) => w.write_all(bytes).await,
            #[cfg(feature = "tls")]
            Writer::Tls(w) => {
                use futures_lite::AsyncWriteExt as _;
                w.write_all(bytes).await?;
                // The record waits in the session until flushed.
                w.flush().await
            }
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        match self {
            Writer::Plain(w) => {
                let _ = w.shutdown().await;
            }
            #[cfg(feature = "tls")]
            Writer::Tls(w) => {
                use futures_lite::AsyncWriteExt as _;
                let _ = w.close().await;
            }
        }
    }
}

/// How the tokio client dials: plain, or TLS with the client's settings
/// (the same `Tls` the glommio and blocking clients use).
pub(crate) struct Dialer {
    #[cfg(feature = "tls")]
    tls: Option<crate::client::tls::Tls>,
}

impl Dialer {
    pub(crate) fn new(opts: &crate::client::ClientOptions, url: &crate::client::BrokerUrl) -> Result<Dialer> {
        if !crate::client::dial::tls_wanted(opts, url)? {
            return Ok(Dialer {
                #[cfg(feature = "tls")]
                tls: None,
            });
        }
        #[cfg(feature = "tls")]
        {
            let files = crate::client::tls::TlsFiles::from_options(opts);
            Ok(Dialer { tls: Some(crate::client::tls::Tls::new(&files, &url.host)?) })
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

    /// Connects (and shakes hands over TLS) within `timeout` each.
    pub(crate) async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<Stream> {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ClientError::Io(format!("connect {addr}: {e}"))),
            Err(_) => return Err(ClientError::Io(format!("connect {addr}: not within {} ms", timeout.as_millis()))),
        };
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let s = tls.connect_futures(Compat(tcp), timeout, |t, f| async move {
                tokio::time::timeout(t, f).await.map_err(|_| ())
            });
            return Ok(Stream::Tls(Box::new(s.await?)));
        }
        Ok(Stream::Plain(tcp))
    }
}
