//! One client connection: the handshake, then request/response frames until the client leaves,
//! goes idle, sends garbage, or asks to follow logs or the audit log.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use interprocess::local_socket::tokio::Stream;
use mcpd_protocol::codec::{self, CodecError};
use mcpd_protocol::{
    ErrorCode, ErrorReply, Incompatible, PROTOCOL_VERSION, Request, Response, Welcome,
};
use tokio::io::AsyncReadExt;

use super::Peer;
use super::context::ControlContext;
use super::handlers::{self, Frames, Reply};

/// Why a connection ended early; logged at debug level, never sent anywhere.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the client did not read a reply within {0:?}")]
    WriteTimeout(Duration),
}

/// Serves one connection until it ends. Never panics on client input.
pub(super) async fn handle(stream: Stream, ctx: &ControlContext) {
    let peer = Peer::of(&stream);
    let mut conn = Connection {
        stream: &stream,
        ctx,
        peer,
    };
    if let Err(e) = conn.run().await {
        tracing::debug!(pid = ?conn.peer.pid, error = %e, "control connection ended");
    }
}

/// Answers a connection over the limit with `Busy` and closes it.
pub(super) async fn refuse_busy(stream: Stream, ctx: &ControlContext) {
    let busy = Response::Error(ErrorReply {
        code: ErrorCode::Busy,
        message: format!(
            "mcpd is serving {} control connections; try again",
            ctx.limits.max_connections
        ),
    });
    let _ = tokio::time::timeout(
        ctx.limits.write_timeout,
        codec::write_message(&mut &stream, &busy),
    )
    .await;
}

struct Connection<'a> {
    /// Reads and writes go through `&Stream`, which implements both directions.
    stream: &'a Stream,
    ctx: &'a ControlContext,
    peer: Peer,
}

impl Connection<'_> {
    async fn run(&mut self) -> Result<(), ConnectionEnd> {
        let limits = self.ctx.limits.clone();
        let Some(first) = self.read(limits.handshake_timeout, "Hello").await? else {
            return Ok(());
        };
        match first {
            Request::Hello(hello) if hello.protocol == PROTOCOL_VERSION => {
                self.write(&Response::Welcome(Welcome {
                    daemon_version: self.ctx.daemon_version.clone(),
                    protocol: PROTOCOL_VERSION,
                }))
                .await?;
            }
            Request::Hello(hello) => {
                tracing::info!(client = hello.protocol, daemon = PROTOCOL_VERSION, pid = ?self.peer.pid,
                    "refusing a control client with another protocol version");
                return self
                    .write(&Response::Incompatible(Incompatible {
                        daemon: PROTOCOL_VERSION,
                        client: hello.protocol,
                        daemon_version: self.ctx.daemon_version.clone(),
                    }))
                    .await;
            }
            other => {
                let message = format!("the first request must be Hello, not {}", other.name());
                return self
                    .write_error(ErrorCode::HandshakeRequired, message)
                    .await;
            }
        }

        loop {
            let Some(request) = self.read(limits.idle_timeout, "a request").await? else {
                return Ok(());
            };
            match handlers::dispatch(self.ctx, &self.peer, request).await {
                Reply::One(response) => self.write(&response).await?,
                Reply::Follow { first, rest } => {
                    self.write(&first).await?;
                    return self.follow(rest).await;
                }
            }
        }
    }

    /// Reads one request within `timeout`. `None` when the client left or went silent; a
    /// malformed or oversized frame is answered with an error frame and ends the connection.
    async fn read(
        &mut self,
        timeout: Duration,
        what: &str,
    ) -> Result<Option<Request>, ConnectionEnd> {
        match tokio::time::timeout(timeout, codec::read_message::<Request, _>(&mut self.stream))
            .await
        {
            Err(_) => {
                let message = format!("no {what} within {timeout:?}; closing");
                self.write_error(ErrorCode::Timeout, message).await?;
                Ok(None)
            }
            Ok(Ok(request)) => Ok(request),
            Ok(Err(CodecError::Io(e))) => Err(CodecError::Io(e).into()),
            Ok(Err(e)) => {
                tracing::debug!(pid = ?self.peer.pid, error = %e, "malformed control frame");
                // The client may already be gone; the error frame is best effort.
                let _ = self.write_error(ErrorCode::Malformed, e.to_string()).await;
                Err(e.into())
            }
        }
    }

    async fn write(&mut self, response: &Response) -> Result<(), ConnectionEnd> {
        let timeout = self.ctx.limits.write_timeout;
        with_timeout(timeout, codec::write_message(&mut self.stream, response)).await
    }

    async fn write_error(&mut self, code: ErrorCode, message: String) -> Result<(), ConnectionEnd> {
        self.write(&Response::Error(ErrorReply { code, message }))
            .await
    }

    /// Writes `frames` as they come until the client closes its end (or sends anything at
    /// all), the frames end (the server went away), or the daemon shuts down (the caller's
    /// cancellation).
    async fn follow(&mut self, mut frames: Frames) -> Result<(), ConnectionEnd> {
        let mut probe = [0u8; 1];
        loop {
            tokio::select! {
                // Cancel-safe: a dropped `read` consumes nothing, and a dropped `next` leaves
                // the stream where it was.
                _ = self.stream.read(&mut probe) => return Ok(()),
                frame = frames.next() => match frame {
                    Some(frame) => self.write(&frame).await?,
                    None => return Ok(()),
                },
            }
        }
    }
}

async fn with_timeout<F>(timeout: Duration, write: F) -> Result<(), ConnectionEnd>
where
    F: Future<Output = Result<(), CodecError>>,
{
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => result.map_err(ConnectionEnd::from),
        Err(_) => Err(ConnectionEnd::WriteTimeout(timeout)),
    }
}
