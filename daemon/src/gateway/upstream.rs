//! Upstream connections: a per-port pool of HTTP/1.1 keep-alive connections to the servers,
//! each driven by the request that uses it rather than by a task of its own.
//!
//! A proxied request polls its upstream connection itself: while it waits for the response
//! head, and then from the response body the client connection is writing. The upstream
//! bytes are therefore read, decoded and re-encoded within one poll of the client's task:
//! no hand-off through a channel to another task, and every chunk that arrived together is
//! written to the client in one `writev`. When a response body has been read to its end, the
//! connection goes back to the pool; a body dropped before its end (the client went away)
//! closes the connection, which tells the server the stream is over.
//!
//! Idle connections are not polled. Taking one from the pool polls it once: a connection the
//! server closed meanwhile is seen closed and discarded. A request that a connection could
//! not even start (it was closed between that check and the write) is retried once on a new
//! connection; once any of it was written, an error is the caller's.
//!
//! Every connection, idle or busy, holds a place under two caps shared by all workers
//! (`Caps`): one for its server's port and one for all servers. A request that finds no place
//! first closes this worker's idle connections, then waits for one at most
//! `gateway.upstream_wait` (then `UpstreamError::Busy`, a 503). A response body that moves no
//! byte for `gateway.body_idle_timeout` ends with an error and closes its connection.
//!
//! Local servers (plain TCP to 127.0.0.1) are spoken to by this gateway's own HTTP/1.1
//! client (`link`, `response_head`, `body`): the request head and a whole body in one
//! `writev`, the response head parsed with `httparse` out of a buffer the connection keeps,
//! the body split off that buffer without copying. A connection goes back to the pool only
//! when its body was read to the end, the response did not say `Connection: close` nor was
//! framed by the close or by `Transfer-Encoding` next to `Content-Length`, and the server
//! sent nothing beyond it. Remote servers (`url:`, maybe TLS) go through hyper's client.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::Ipv4Addr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod body;
mod caps;
mod link;
mod response_body;
mod response_head;

pub use caps::Caps;
use caps::Places;
pub use response_body::ResponseBody;
use response_body::Source;

pub(crate) use body::{Decoder, Framing};
pub(crate) use response_head::{H1Error, parse as parse_response_head};

use super::conn::{ClientBody, IdleTimer};
use crate::remote::{ConnectError, RemoteTarget, Stream};
use link::H1Link;

/// What the proxy sends upstream: a body read whole (an inspected POST), or the client's body
/// streamed and cut off at `gateway.max_body`.
pub type RequestBody = Either<Full<Bytes>, Limited<ClientBody>>;

type Connection = http1::Connection<TokioIo<Stream>, RequestBody>;
type Sender = http1::SendRequest<RequestBody>;

/// Where a request goes: a local server's port on 127.0.0.1, or a remote server (`url:`).
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    Port(u16),
    Remote(&'a RemoteTarget),
}

/// What connections are pooled and capped by: a port, or one remote target (a reload that
/// changes a remote server makes a new target, so its old connections are not reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Port(u16),
    Remote(u64),
}

impl Dest<'_> {
    fn key(&self) -> Key {
        match self {
            Dest::Port(port) => Key::Port(*port),
            Dest::Remote(target) => Key::Remote(target.id),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Port(port) => write!(f, "127.0.0.1:{port}"),
            Key::Remote(_) => f.write_str("the remote server"),
        }
    }
}

/// Why a request got no response from upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to 127.0.0.1:{port}: {source}")]
    Connect { port: u16, source: std::io::Error },
    #[error("connecting to 127.0.0.1:{port} took longer than {timeout:?}")]
    ConnectTimeout { port: u16, timeout: Duration },
    /// A remote server could not be reached (TCP or TLS).
    #[error(transparent)]
    Remote(#[from] ConnectError),
    #[error("upstream closed the connection before the request could be sent")]
    Closed,
    #[error("no upstream connection to {key} came free within {wait:?} ({cap})")]
    Busy {
        key: Key,
        wait: Duration,
        cap: &'static str,
    },
    #[error("upstream did not send its response head in time")]
    HeadTimeout,
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// A local server's connection failed or its response broke the rules of HTTP/1.1.
    #[error(transparent)]
    H1(#[from] H1Error),
}

impl UpstreamError {
    /// True when no connection could be made (nothing listens on the port, or it is full).
    /// The server's port refused the connection (nothing listens there).
    pub fn is_refused(&self) -> bool {
        match self {
            UpstreamError::Connect { source, .. } => {
                source.kind() == std::io::ErrorKind::ConnectionRefused
            }
            UpstreamError::Remote(err) => err.is_refused(),
            _ => false,
        }
    }

    /// True when the response head did not come by the request's deadline.
    pub fn is_head_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::HeadTimeout | UpstreamError::H1(H1Error::HeadTimeout)
        )
    }

    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Remote(_)
        )
    }
}

/// One connection, with the places it holds under the caps.
struct Link {
    conn: Conn,
    _places: Places,
}

enum Conn {
    /// A remote server's connection, through hyper's client.
    Hyper(Box<HyperConn>),
    /// A local server's connection, through this gateway's own client.
    H1(H1Link),
}

struct HyperConn {
    sender: Sender,
    connection: Connection,
}

struct Idle {
    link: Link,
    since: Instant,
}

/// The pool: idle connections by port. Cheap to share behind an `Arc`.
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    body_idle_timeout: Duration,
    caps: Arc<Caps>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self.lock().values().map(Vec::len).sum();
        f.debug_struct("Pool")
            .field("idle", &idle)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Pool {
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        body_idle_timeout: Duration,
        caps: Arc<Caps>,
    ) -> Self {
        Pool {
            idle: Mutex::default(),
            connect_timeout,
            idle_timeout,
            body_idle_timeout,
            caps,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        // The map holds no invariant a panic elsewhere could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `request` to `dest` (its URI in origin form, its `Host` set) and returns the
    /// response head, or [`UpstreamError::is_head_timeout`] when it has not come by
    /// `deadline`; the body streams from the connection as it is read.
    ///
    /// A kept connection carries its own timer from request to request, moved to each new
    /// deadline (which costs no timer-wheel operation while the deadline only moves later):
    /// no timer is made per request.
    ///
    /// `identity`: header lines (`name: value\r\n`) written after the request's own, for a
    /// local server (`Dest::Port`, the gateway's own client); a remote server's request carries
    /// everything in its header map, and `identity` is empty then.
    pub async fn send(
        self: &Arc<Self>,
        dest: Dest<'_>,
        request: Request<RequestBody>,
        deadline: tokio::time::Instant,
        identity: &[u8],
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let port = dest.key();
        let mut request = request;
        if let Some(link) = self.take_idle(port) {
            match exchange(link, request, deadline, identity).await {
                Ok(exchanged) => return Ok(self.respond(port, exchanged)),
                Err(Failed::NotSent(unsent)) => request = *unsent,
                Err(Failed::Error(err)) => return Err(err),
            }
        }
        let link = tokio::time::timeout_at(deadline, self.connect(dest))
            .await
            .map_err(|_elapsed| UpstreamError::HeadTimeout)??;
        match exchange(link, request, deadline, identity).await {
            Ok(exchanged) => Ok(self.respond(port, exchanged)),
            Err(Failed::NotSent(_)) => Err(UpstreamError::Closed),
            Err(Failed::Error(err)) => Err(err),
        }
    }

    fn respond(self: &Arc<Self>, port: Key, exchanged: Exchanged) -> Response<ResponseBody> {
        let idle = IdleTimer::new(self.body_idle_timeout);
        match exchanged {
            Exchanged::Hyper(response, link) => response.map(|incoming| ResponseBody {
                // A response without a body (202 to a notification) is complete at once:
                // hyper will never poll it, and its connection is free for the next request.
                finished: incoming.is_end_stream(),
                source: Source::Hyper(incoming),
                link,
                pool: Arc::clone(self),
                port,
                idle,
            }),
            Exchanged::H1(head, link) => {
                let decoder = Decoder::new(head.framing);
                let mut body = ResponseBody {
                    source: Source::H1 {
                        decoder,
                        keep_alive: head.keep_alive,
                    },
                    link: Some(link),
                    finished: false,
                    pool: Arc::clone(self),
                    port,
                    idle,
                };
                if decoder.is_done() {
                    // Nothing to read (HEAD, 204, 304, a 202 without a body): the caller may
                    // never poll, and the connection is free now.
                    body.end_h1();
                }
                let mut response = Response::new(body);
                *response.status_mut() = head.status;
                *response.headers_mut() = head.headers;
                response
            }
        }
    }

    /// The most recently used idle connection to `port` that is still open.
    fn take_idle(&self, port: Key) -> Option<Link> {
        let now = Instant::now();
        loop {
            // An emptied list stays (no allocation per request when one connection goes
            // back and forth); `prune` removes lists left empty.
            let idle = self.lock().get_mut(&port)?.pop()?;
            if now.duration_since(idle.since) < self.idle_timeout
                && let Some(link) = idle.link.usable()
            {
                return Some(link);
            }
        }
    }

    async fn connect(&self, dest: Dest<'_>) -> Result<Link, UpstreamError> {
        let places = self.caps.acquire(dest.key()).await?;
        let port = match dest {
            Dest::Port(port) => port,
            Dest::Remote(target) => {
                let stream = target.connect(self.connect_timeout).await?;
                return Self::handshake(stream, places).await;
            }
        };
        let connecting = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(UpstreamError::Connect { port, source }),
            Err(_elapsed) => {
                return Err(UpstreamError::ConnectTimeout {
                    port,
                    timeout: self.connect_timeout,
                });
            }
        };
        // Without it, a request head and body written separately wait ~40 ms for an ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(port, cause = %err, "cannot set TCP_NODELAY on an upstream connection");
        }
        Ok(Link {
            conn: Conn::H1(H1Link::new(stream)),
            _places: places,
        })
    }

    async fn handshake(stream: Stream, places: Places) -> Result<Link, UpstreamError> {
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Link {
            conn: Conn::Hyper(Box::new(HyperConn { sender, connection })),
            _places: places,
        })
    }

    /// Closes this pool's idle connections (to `port` only, when given).
    fn close_idle(&self, port: Option<Key>) {
        let closed = match port {
            Some(port) => self.lock().get_mut(&port).map(std::mem::take),
            None => Some(
                std::mem::take(&mut *self.lock())
                    .into_values()
                    .flatten()
                    .collect(),
            ),
        };
        drop(closed);
    }

    /// Keeps `link` for the next request to `port`. At most as many are kept as the port may
    /// have connections at all (`gateway.max_upstream_per_server`), so a burst of concurrent
    /// calls finds its connections open the next time instead of opening most of them again.
    fn give_back(&self, port: Key, link: Link) {
        let now = Instant::now();
        let mut pool = self.lock();
        let list = pool.entry(port).or_default();
        list.retain(|idle| now.duration_since(idle.since) < self.idle_timeout);
        if list.len() < self.caps.per_server {
            list.push(Idle { link, since: now });
        }
    }

    /// Closes idle connections that timed out or that their server closed. The gateway calls
    /// this now and then, so the connections of stopped servers do not linger.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut pool = self.lock();
        pool.retain(|_, list| {
            let kept: Vec<Idle> = std::mem::take(list)
                .into_iter()
                .filter(|idle| now.duration_since(idle.since) < self.idle_timeout)
                .filter_map(|idle| {
                    let since = idle.since;
                    idle.link.usable().map(|link| Idle { link, since })
                })
                .collect();
            *list = kept;
            !list.is_empty()
        });
    }
}

impl Link {
    /// Checks an idle connection without a task to wake: returns it when it can take a
    /// request, `None` when the server closed it, sent something unasked, or it is otherwise
    /// finished.
    fn usable(mut self) -> Option<Link> {
        match &mut self.conn {
            Conn::H1(link) => link.is_idle_open().then_some(self),
            Conn::Hyper(conn) => {
                let mut cx = Context::from_waker(Waker::noop());
                if Pin::new(&mut conn.connection).poll(&mut cx).is_ready() {
                    return None;
                }
                match conn.sender.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => Some(self),
                    Poll::Ready(Err(_)) | Poll::Pending => None,
                }
            }
        }
    }
}

/// The response head, and the connection unless it already ended (hyper: the whole response
/// was read and the server closed it).
enum Exchanged {
    Hyper(Response<Incoming>, Option<Link>),
    H1(response_head::Head, Link),
}

enum Failed {
    /// The connection was closed before the request was written; here it is back.
    NotSent(Box<Request<RequestBody>>),
    Error(UpstreamError),
}

/// Writes `request` on `link` and reads the response head, by `deadline`.
async fn exchange(
    link: Link,
    request: Request<RequestBody>,
    deadline: tokio::time::Instant,
    identity: &[u8],
) -> Result<Exchanged, Failed> {
    let Link {
        conn,
        _places: places,
    } = link;
    match conn {
        Conn::Hyper(conn) => {
            debug_assert!(
                identity.is_empty(),
                "hyper's client writes only the header map"
            );
            tokio::time::timeout_at(deadline, exchange_hyper(*conn, places, request))
                .await
                .unwrap_or(Err(Failed::Error(UpstreamError::HeadTimeout)))
        }
        Conn::H1(mut conn) => match conn.exchange(request, deadline, identity).await {
            Ok(head) => {
                let link = Link {
                    conn: Conn::H1(conn),
                    _places: places,
                };
                Ok(Exchanged::H1(head, link))
            }
            Err(link::Failed::NotSent(request)) => Err(Failed::NotSent(request)),
            Err(link::Failed::Error(err)) => Err(Failed::Error(err.into())),
        },
    }
}

/// Sends on a hyper connection, polling the connection while it waits for the response head.
async fn exchange_hyper(
    conn: HyperConn,
    places: Places,
    request: Request<RequestBody>,
) -> Result<Exchanged, Failed> {
    let HyperConn {
        mut sender,
        connection,
    } = conn;
    let mut connection = Some(connection);
    let mut response = pin!(sender.try_send_request(request));
    let result = poll_fn(|cx| {
        if let Some(open) = connection.as_mut()
            && Pin::new(open).poll(cx).is_ready()
        {
            // Finished: an error or a close reaches the response future as its result.
            connection = None;
        }
        response.as_mut().poll(cx)
    })
    .await;
    match result {
        Ok(response) => {
            let link = connection.map(|connection| Link {
                conn: Conn::Hyper(Box::new(HyperConn { sender, connection })),
                _places: places,
            });
            Ok(Exchanged::Hyper(response, link))
        }
        Err(mut err) => match err.take_message() {
            Some(request) => Err(Failed::NotSent(Box::new(request))),
            None => Err(Failed::Error(err.into_error().into())),
        },
    }
}

#[cfg(test)]
mod tests {
    //! The pooled socket itself, which only this module can reach.

    use super::*;

    /// The TCP_NODELAY flag of `link`'s socket, read back from the kernel (getsockopt).
    fn nodelay(link: Link) -> bool {
        let Conn::H1(conn) = link.conn else {
            panic!("a local server's connection goes through the gateway's own client");
        };
        conn.stream.nodelay().expect("getsockopt TCP_NODELAY")
    }

    #[tokio::test]
    async fn pooled_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let caps = Arc::new(Caps::new(4, 4, Duration::from_secs(10)));
        let pool = Arc::new(Pool::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(60),
            caps,
        ));
        let fresh = pool.connect(Dest::Port(port)).await.unwrap();
        assert!(nodelay(fresh), "a new upstream connection has Nagle on");
        // The same socket after a trip through the idle list.
        let link = pool.connect(Dest::Port(port)).await.unwrap();
        pool.give_back(Key::Port(port), link);
        let pooled = pool
            .take_idle(Key::Port(port))
            .expect("the idle connection is still open");
        assert!(nodelay(pooled), "a pooled upstream connection has Nagle on");
        drop(listener);
    }
}
