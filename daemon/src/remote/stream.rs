//! One connection to a server, plain TCP or TLS over TCP: what the probe client and the
//! gateway's upstream pool read and write, whatever kind of server is behind it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::RemoteTarget;

/// A connection to a server.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(stream) => stream.get_ref().0,
        }
    }

    /// False when the peer closed the connection while it was idle. Only peeks, so TLS
    /// records waiting (a session ticket) stay for the TLS layer to read.
    pub fn still_open(&self) -> bool {
        use nix::sys::socket::{MsgFlags, recv};
        use std::os::fd::AsRawFd;
        let mut byte = [0u8; 1];
        let peeked = recv(
            self.tcp().as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        match peeked {
            Ok(0) => false,
            Ok(_) => matches!(self, Stream::Tls(_)),
            Err(errno) => errno == nix::errno::Errno::EAGAIN,
        }
    }
}

/// Why no connection could be made; the text names the address and, for TLS, the reason
/// the handshake failed (an unknown authority, a wrong name, an expired certificate).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {address}: {source}")]
    Tcp {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {address} took longer than {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("TLS handshake with {address} failed: {reason}")]
    Tls { address: String, reason: String },
}

impl ConnectError {
    /// True when the address refused the connection (nothing listens there).
    pub fn is_refused(&self) -> bool {
        matches!(self, ConnectError::Tcp { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused)
    }
}

/// Connects to `target` (TCP, then TLS for `https:`), all within `timeout`.
pub async fn connect(target: &RemoteTarget, timeout: Duration) -> Result<Stream, ConnectError> {
    let address = target.url.address();
    let work = async {
        let host = target.url.host.as_str();
        let tcp = TcpStream::connect((host, target.url.port))
            .await
            .map_err(|source| ConnectError::Tcp {
                address: address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &target.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|err| ConnectError::Tls {
            address: address.clone(),
            reason: format!("{host:?} is not a valid TLS server name: {err}"),
        })?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|err| ConnectError::Tls {
                address: address.clone(),
                reason: tls_reason(&err),
            })?;
        Ok(Stream::Tls(Box::new(stream)))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { address, timeout }),
    }
}

/// The TLS failure in words (rustls's error, when that is what it was).
fn tls_reason(err: &io::Error) -> String {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!(
                "the server's certificate is not trusted: {why:?} (is its authority in tls.ca_file or the system store?)"
            )
        }
        Some(other) => other.to_string(),
        None => err.to_string(),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
