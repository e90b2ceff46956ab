//! A connection's byte stream: a plain socket, or TLS over one (rustls,
//! driven by futures-rustls). One type for both, so the readers, the
//! outbox and every front end stay as they are; the branch per read or
//! write is one match on a tag, against a syscall.

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pub enum Transport {
    Plain(TcpStream),
    /// The broker's side of a TLS connection.
    #[cfg(feature = "tls")]
    ServerTls(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// A client's side.
    #[cfg(feature = "tls")]
    ClientTls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    /// The socket under the TLS layer, if any.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            #[cfg(feature = "tls")]
            Transport::ServerTls(s) => s.get_ref().0,
            #[cfg(feature = "tls")]
            Transport::ClientTls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }

    /// The certificate the peer presented and the broker verified (the
    /// first of its chain, DER), on a server-side TLS connection.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            #[cfg(feature = "tls")]
            Transport::ServerTls(s) => s.get_ref().1.peer_certificates()?.first().map(|c| c.as_ref()),
            _ => None,
        }
    }
}

/// Calls `$f` on the stream inside whichever variant this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Transport::ServerTls($s) => $e,
            #[cfg(feature = "tls")]
            Transport::ClientTls($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_close(cx))
    }
}
