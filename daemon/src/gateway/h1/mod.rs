//! The hand HTTP/1.1 connection loop: the common exchange (a plainly framed request, its body
//! read whole, answered through `router::handle`) without hyper's server dispatcher.
//!
//! Each head is read into one reused per-connection buffer and judged by `head::parse`. A
//! request that is not plainly framed (anything in doubt: chunked, duplicate or odd
//! `Content-Length`, `Upgrade`, `Expect`, HTTP/1.0, a bare LF, a head too large, ...) hands
//! the whole connection to hyper's HTTP/1.1 server through `Replay`, every byte read so far
//! first. That is safe at every request boundary: nothing of the pending request has been
//! answered, and every earlier response was written whole.
//!
//! Deadlines are the watchdog's (`conn::drive`), as for hyper's connections: an exchange is an
//! `OpenStream` from its head until its response is written, and each body read or response
//! frame is progress, so a stalled body or a client that stops reading is closed at the body
//! idle timeout, and a connection waiting for its next head at the header timeout. On
//! shutdown the exchange in flight finishes (with `connection: close`), and no new one starts.

mod body_out;
pub(crate) mod head;
mod replay;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use replay::Replay;

use super::conn::{BoxError, ClientBody, OpenStream, Watch};
use super::upstream::Pool;
use super::{GatewayContext, MAX_HEAD_BYTES, router};
use head::Verdict;
use write::Buffers;

/// The least room made in the buffer before each read.
const READ_AT_LEAST: usize = 8 * 1024;
/// The most room made at once for a body (a large declared length is not allocated up front).
const BODY_STEP: usize = 64 * 1024;

/// What the exchanges of one connection need.
pub struct Exchange {
    pub ctx: GatewayContext,
    pub upstream: Arc<Pool>,
    pub bound: SocketAddr,
    pub peer: SocketAddr,
    pub watch: Arc<Watch>,
    pub body_idle: Duration,
    /// Cancelled when the gateway stops accepting: finish the exchange in flight, then close.
    pub shutdown: CancellationToken,
}

/// Serves `socket` by hand until it closes, or hands it to `fallback` (hyper's HTTP/1.1
/// server) at the first request that is not plainly framed.
pub async fn serve<F, Fut, E>(
    mut socket: TcpStream,
    exchange: Exchange,
    fallback: F,
) -> Result<(), BoxError>
where
    F: FnOnce(Replay<TcpStream>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    let shared = &exchange.ctx.shared;
    let mut buffers = Buffers {
        read: BytesMut::with_capacity(READ_AT_LEAST),
        ..Buffers::default()
    };
    let mut fields = Vec::new();
    loop {
        if exchange.shutdown.is_cancelled() {
            return Ok(());
        }
        let max_body = shared.live.load().config.gateway.max_body;
        // Bytes at the start of the buffer known not to end a head. A head ends with a line
        // feed, so it is parsed again (from its start) only once a new one has come: a head
        // trickled a byte at a time costs a parse per line, not one per byte.
        let mut seen = 0;
        let head = loop {
            let verdict = if memchr::memchr(b'\n', &buffers.read[seen..]).is_some() {
                head::parse(&buffers.read, max_body, &mut fields)
            } else {
                Verdict::Partial
            };
            match verdict {
                Verdict::Fast(head) => break head,
                Verdict::Partial if buffers.read.len() < MAX_HEAD_BYTES => {
                    seen = buffers.read.len();
                }
                verdict => {
                    tracing::trace!(peer = %exchange.peer, ?verdict, "request handed to hyper");
                    return fallback(Replay::new(buffers.read, socket))
                        .await
                        .map_err(Into::into);
                }
            }
            buffers.read.reserve(READ_AT_LEAST);
            let read = tokio::select! {
                biased;
                read = socket.read_buf(&mut buffers.read) => read?,
                () = exchange.shutdown.cancelled() => return Ok(()),
            };
            if read == 0 {
                return Ok(());
            }
        };

        let open = OpenStream::new(&exchange.watch);
        let progress = open.progress();
        let frozen = buffers.read.split_to(head.len).freeze();
        let (uri, headers) = head.build(&frozen, &mut fields, std::mem::take(&mut buffers.spare));
        let length = usize::try_from(head.content_length)?;
        while buffers.read.len() < length {
            buffers
                .read
                .reserve((length - buffers.read.len()).min(BODY_STEP));
            if socket.read_buf(&mut buffers.read).await? == 0 {
                tracing::debug!(peer = %exchange.peer, "client closed the connection inside a request body");
                return Ok(());
            }
            progress.moved();
        }
        let body = ClientBody::read(
            buffers.read.split_to(length).freeze(),
            progress,
            exchange.body_idle,
        );
        let head_request = head.method == Method::HEAD;
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        drop(frozen);

        // Pinned where it is made: the request's future is the size of the largest path
        // through the router (kilobytes), and moving it into `select!` would copy all of it
        // once per request.
        let mut handled = std::pin::pin!(router::handle(
            shared,
            &exchange.upstream,
            exchange.bound,
            exchange.peer,
            request,
        ));
        // A client that goes away while its request is handled cancels it (as with hyper).
        let response = tokio::select! {
            biased;
            response = &mut handled => response,
            gone = client_gone(&mut socket, &mut buffers.read) => {
                gone?;
                tracing::debug!(peer = %exchange.peer, "client closed the connection before its answer");
                return Ok(());
            }
        };
        open.moved();
        let close = head.close || exchange.shutdown.is_cancelled();
        let keep = write::respond(
            &mut socket,
            &mut buffers,
            response,
            head_request,
            close,
            &open,
        )
        .await?;
        drop(open);
        if !keep {
            let _ = socket.shutdown().await;
            return Ok(());
        }
    }
}

/// Returns when the client closes its side while an exchange is in flight (hyper's dispatcher
/// does the same: a request whose client is gone is cancelled). Bytes that arrive meanwhile
/// (a pipelined request) are kept in `buf`, and once there are some nothing more is read.
pub(super) async fn client_gone<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<()> {
    loop {
        if !buf.is_empty() {
            return std::future::pending().await;
        }
        // A small buffer of its own: the connection's may still be shared with the request.
        let mut probe = [0u8; 1024];
        let read = socket.read(&mut probe).await?;
        if read == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&probe[..read]);
    }
}
