//! The light liveness request on a local connection the runtime does not watch: between
//! probes the connection is "parked" (a plain socket, not registered with the reactor), the
//! request is one `send`, and the answer is read with `recv` once [`super::LIVENESS_SETTLE`]
//! has passed. A server's answer then wakes nobody: the probes of one grid step are read on
//! the one timer tick that ends their wait, instead of each answer waking the daemon's
//! runtime through epoll. At 1000 servers those wake-ups, not the probes' own work, were most
//! of the daemon's idle CPU. An answer not complete by then is read the usual way (the socket
//! is registered for the rest), so a slow server costs time, not correctness. The probes that
//! start together share the settle wait's timer (`settle.rs`).

use std::io::{self, Read, Write};
use std::net::TcpStream as ParkedStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

use super::http::{self, HttpError, Reply};
use super::{ProbeClient, ProbeError};
use crate::remote::Stream;

/// A connection being read: still parked, or registered once the answer needed waiting for.
enum Lazy {
    Parked(Option<ParkedStream>),
    Live(TcpStream),
}

impl AsyncRead for Lazy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Lazy::Parked(parked) = &mut *self {
            let Some(parked) = parked.take() else {
                return Poll::Ready(Err(io::Error::other("the connection is gone")));
            };
            match TcpStream::from_std(parked) {
                Ok(live) => *self = Lazy::Live(live),
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        match &mut *self {
            Lazy::Live(live) => Pin::new(live).poll_read(cx, buf),
            Lazy::Parked(_) => Poll::Ready(Err(io::Error::other("the connection is gone"))),
        }
    }
}

impl ProbeClient {
    /// [`ProbeClient::send`] for the light liveness request of a local server: on the parked
    /// connection (or a new one), retried once on a new connection when a kept one turns out
    /// closed.
    pub(super) async fn send_settled<T: DeserializeOwned>(
        &mut self,
        method: &'static str,
        request: &[u8],
        id: Option<u64>,
        limit: usize,
    ) -> Result<(Reply<T>, &'static str), ProbeError> {
        let kept = match (self.parked.take(), self.connection.take()) {
            (Some(parked), _) => Some(parked),
            (None, Some(Stream::Plain(live))) => live.into_std().ok(),
            (None, _) => None,
        };
        let reused = kept.is_some();
        let stream = match kept {
            Some(stream) => stream,
            None => self.connect_parked().await?,
        };
        let mut reply = self.exchange_settled::<T>(stream, request, id, limit).await;
        if reused && matches!(reply, Err(HttpError::ClosedBeforeResponse)) {
            let stream = self.connect_parked().await?;
            reply = self.exchange_settled::<T>(stream, request, id, limit).await;
        }
        let reply = reply.map_err(|source| ProbeError::Http {
            at: self.at.clone(),
            method,
            source,
        })?;
        Ok((reply, method))
    }

    async fn connect_parked(&self) -> Result<ParkedStream, ProbeError> {
        match self.connect().await? {
            Stream::Plain(live) => live.into_std().map_err(|source| ProbeError::Connect {
                at: self.at.clone(),
                source,
            }),
            Stream::Tls(_) => Err(ProbeError::Connect {
                at: self.at.clone(),
                source: io::Error::other("a local probe connection cannot be TLS"),
            }),
        }
    }

    /// Sends `request`, waits the settle time, reads what arrived, and the rest (if any) the
    /// usual way. Keeps the connection (parked when it could stay so) when reusable.
    async fn exchange_settled<T: DeserializeOwned>(
        &mut self,
        mut stream: ParkedStream,
        request: &[u8],
        id: Option<u64>,
        limit: usize,
    ) -> Result<Reply<T>, HttpError> {
        match stream.write(request) {
            Ok(sent) if sent == request.len() => {}
            // A few hundred bytes into an idle connection's empty send buffer: a short
            // write means something is wrong with it.
            Ok(_) => return Err(HttpError::Io(io::Error::other("short write"))),
            Err(error) if http::is_reset(&error) => return Err(HttpError::ClosedBeforeResponse),
            Err(error) => return Err(HttpError::Io(error)),
        }
        super::settle::settle(self.settle).await;
        let mut early = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) if early.is_empty() => return Err(HttpError::ClosedBeforeResponse),
                Ok(0) => break,
                Ok(read) => {
                    early.extend_from_slice(&chunk[..read]);
                    // Less than asked for: that was all there is for now (saves the recv
                    // that would say so); anything later is read the usual way.
                    if read < chunk.len() {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if early.is_empty() && http::is_reset(&error) => {
                    return Err(HttpError::ClosedBeforeResponse);
                }
                Err(error) => return Err(HttpError::Io(error)),
            }
        }
        let mut lazy = Lazy::Parked(Some(stream));
        let reply = {
            let mut reader = AsyncReadExt::chain(&early[..], &mut lazy);
            http::read_reply::<_, T>(&mut reader, id, limit, false).await?
        };
        if reply.reusable {
            match lazy {
                Lazy::Parked(parked) => self.parked = parked,
                Lazy::Live(live) => self.connection = Some(Stream::Plain(live)),
            }
        }
        Ok(reply)
    }
}
