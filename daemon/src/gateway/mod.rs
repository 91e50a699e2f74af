//! The HTTP gateway: registry, per-server MCP proxy, OAuth/JWT checks and RFC 9728 metadata.
//!
//! `serve` accepts HTTP/1.1 and h2c (prior knowledge) connections on a listener the caller
//! bound, hands each request to `router::handle`, and on shutdown stops accepting and lets
//! in-flight requests finish for at most `GatewayOptions::drain_timeout`.
//!
//! Every connection is held to `gateway.header_timeout`, `idle_timeout` and
//! `body_idle_timeout` by a watchdog (`conn`), and counted against the connection caps
//! (`limits`); upstream connections are capped in `upstream`.
//!
//! Choices where DESIGN.md is silent:
//! - `/healthz` answers any `Host`; every other route goes through the Host/Origin checks.
//!   `public_url`'s own origin is always allowed, and `*` in `allowed_origins` allows any.
//! - A disabled server is answered like an unknown one (404): it is not offered.
//! - `access_token=` in the query string (in any spelling, `query`) is refused with 400 (`error="invalid_request"` in
//!   the challenge for OAuth servers), even alongside a valid header: tokens in URLs leak
//!   into logs and histories.
//! - A token without `aud` (or, with `auth.issuer` set, without `iss`) is invalid (401); a
//!   token whose `aud` lacks the server's audience is valid but not for this server (403).
//! - An `Authorization` header that is not `Bearer` counts as no token (401 without `error`).
//! - Header policy (identity, `_` names, forwarding headers, `trusted_proxies`): `headers`.

pub mod auth;
pub mod authority;
mod bridged;
mod conn;
mod guard;
mod h1;
mod head_memo;
pub mod headers;
mod inspect;
mod limits;
pub use limits::bind_listener;
mod proxy;
pub mod query;
mod recent_tokens;
mod registry;
mod remote;
mod response;
mod router;
mod side_wake;
mod tap;
mod token_cache;
mod upstream;
mod virtual_server;
mod web;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Authenticator, KeyError};
/// The outcome reader, for the same target.
#[doc(hidden)]
pub(crate) use conn::sse_keep_alive;
/// The hand HTTP/1.1 head parser, for the `h1_head` fuzz target (`crate::fuzzing`).
#[doc(hidden)]
pub(crate) use h1::head as h1_head;
pub use registry::resource_metadata_url;
pub use router::{Route, route};
pub(crate) use tap::outcome;
/// The SSE splitter, for the `sse_split` fuzz target (`crate::fuzzing`).
#[doc(hidden)]
pub(crate) use tap::sse;
/// The gateway's own HTTP/1.1 client's parsers, for the `h1_response` fuzz target.
#[doc(hidden)]
pub(crate) use upstream::{Decoder, Framing, parse_response_head};
pub use web::WebRoute;

use crate::accept::{self, AcceptErrors};
use crate::audit::AuditLog;
use crate::config::DaemonConfig;
use crate::directory::Directory;
use crate::metrics::Metrics;
use conn::{ClientBody, OpenStream, Timeouts, Watch, Watched};
use limits::{Caps, ConnectionCounter};

/// Largest request head (request line plus headers) accepted from a client, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request target accepted, in bytes; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 100;
/// How often idle upstream connections are checked (closed by their server, or timed out).
const PRUNE_EVERY: Duration = Duration::from_secs(15);

/// Timeouts of the gateway that are not part of the configuration file.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How long an upstream server may take to send response headers (then 504). Bodies,
    /// SSE streams included, have no total timeout, only `gateway.body_idle_timeout`.
    pub upstream_header_timeout: Duration,
    /// How long an upstream connection may take to be established (then 502).
    pub connect_timeout: Duration,
    /// How long an idle upstream connection is kept for the next request.
    pub upstream_idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub drain_timeout: Duration,
    /// `Retry-After` seconds of a 503 for a server that is not running.
    pub retry_after_secs: u64,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            upstream_header_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            upstream_idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(10),
            retry_after_secs: 5,
        }
    }
}

/// What a reload swaps at once: the daemon configuration and the keys loaded from it.
#[derive(Debug)]
pub struct Live {
    pub config: DaemonConfig,
    pub auth: Authenticator,
}

#[derive(Debug)]
struct Shared {
    directory: Arc<Directory>,
    live: ArcSwap<Live>,
    options: GatewayOptions,
    metrics: Option<Arc<Metrics>>,
    /// Where `tools/call` records go (`None`: not recorded).
    audit: Option<Arc<AuditLog>>,
    /// Session key and member sessions of virtual servers.
    virtuals: virtual_server::VirtualState,
}

/// Everything the gateway reads: the live directory, the configuration and keys (swappable
/// by a reload), the upstream connection pool and optional metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayContext {
    shared: Arc<Shared>,
}

impl GatewayContext {
    /// Loads the keys of `config.auth` and builds a context with default options.
    pub fn new(directory: Arc<Directory>, config: DaemonConfig) -> Result<Self, KeyError> {
        let auth = Authenticator::load(&config.auth)?;
        Ok(Self::from_parts(
            directory,
            config,
            auth,
            GatewayOptions::default(),
            None,
        ))
    }

    pub fn from_parts(
        directory: Arc<Directory>,
        config: DaemonConfig,
        auth: Authenticator,
        options: GatewayOptions,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        GatewayContext {
            shared: Arc::new(Shared {
                directory,
                live: ArcSwap::from_pointee(Live { config, auth }),
                options,
                metrics,
                audit: None,
                virtuals: Default::default(),
            }),
        }
    }

    /// The same context, recording `tools/call` in `audit`. Meant for a context just built
    /// (by [`GatewayContext::from_parts`]); a context already cloned gets a copy of its own.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.audit = Some(audit);
            return self;
        }
        let shared = &self.shared;
        GatewayContext {
            shared: Arc::new(Shared {
                directory: shared.directory.clone(),
                live: ArcSwap::new(shared.live.load_full()),
                options: shared.options.clone(),
                metrics: shared.metrics.clone(),
                audit: Some(audit),
                virtuals: Default::default(),
            }),
        }
    }

    /// Loads the keys of a new configuration and swaps both in; on error nothing changes.
    /// The verified-token cache starts empty, so removed keys stop working at once.
    pub fn reload(&self, config: DaemonConfig) -> Result<(), KeyError> {
        let auth = Authenticator::load(&config.auth)?;
        self.shared.live.store(Arc::new(Live { config, auth }));
        Ok(())
    }

    /// The configuration and keys in force.
    pub fn live(&self) -> Arc<Live> {
        self.shared.live.load_full()
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.shared.directory
    }

    /// The audit log `tools/call` records go to, if any.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.shared.audit.as_ref()
    }
}

/// Serves the gateway on `workers` threads until `shutdown` is cancelled, then drains; returns
/// when every worker has stopped.
///
/// Each worker is a thread with a single-threaded runtime, its own upstream connections, and
/// a duplicate of the listening socket, like the worker processes of nginx: a request is
/// handled start to end on one thread, with no hand-off between threads. The rest of the
/// daemon (supervision, control socket) runs on the caller's runtime and is never delayed by
/// gateway traffic, nor the gateway by it.
pub async fn serve_workers(
    listener: TcpListener,
    ctx: GatewayContext,
    shutdown: CancellationToken,
    workers: usize,
) -> std::io::Result<()> {
    let workers = workers.max(1);
    tracing::info!(address = %listener.local_addr()?, workers, "gateway listening");
    let listener = listener.into_std()?;
    let accept_errors = Arc::new(Mutex::new(AcceptErrors::new("gateway")));
    let shared = WorkerShared::new(&ctx);
    let mut done = Vec::new();
    for index in 0..workers {
        let listener = listener.try_clone()?;
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let accept_errors = accept_errors.clone();
        let shared = shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("mcpd-gateway-{index}"))
            .spawn(move || {
                let mut runtime = tokio::runtime::Builder::new_current_thread();
                runtime.enable_all();
                // The worker writes the audit log's batches when it has nothing else to do.
                if let Some(audit) = ctx.audit().cloned() {
                    runtime.on_thread_park(move || audit.on_worker_park());
                }
                let result = runtime.build().and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        serve_worker(listener, ctx, shutdown, &accept_errors, shared).await
                    })
                });
                let _ = tx.send(result);
            })?;
        done.push(rx);
    }
    drop(listener);
    let mut result = Ok(());
    for rx in done {
        let outcome = rx
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("a gateway worker thread panicked")));
        if let Err(err) = outcome {
            tracing::error!(cause = %err, "gateway worker failed");
            result = Err(err);
        }
    }
    result
}

/// How long an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The first bytes of an h2c (prior knowledge) connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves the gateway on `listener` until `shutdown` is cancelled, then drains. Runs on the
/// caller's runtime; the daemon runs one per worker thread (`serve_workers`).
pub async fn serve(
    listener: TcpListener,
    ctx: GatewayContext,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "gateway listening");
    let accept_errors = Mutex::new(AcceptErrors::new("gateway"));
    let shared = WorkerShared::new(&ctx);
    serve_worker(listener, ctx, shutdown, &accept_errors, shared).await
}

/// What the workers of one listener share: the connection counter and the upstream caps,
/// resolved once at start from `gateway.*` and the open-file limit.
#[derive(Debug, Clone)]
struct WorkerShared {
    connections: Arc<ConnectionCounter>,
    upstream: Arc<upstream::Caps>,
    timeouts: Timeouts,
    max_streams: u32,
}

impl WorkerShared {
    fn new(ctx: &GatewayContext) -> Self {
        let live = ctx.live();
        let limits = &live.config.gateway.limits;
        let nofile = limits::open_file_limit();
        let caps = Caps::resolve(limits, nofile);
        tracing::info!(
            open_file_limit = nofile,
            max_connections = caps.connections,
            max_connections_per_peer = caps.connections_per_peer,
            max_upstream = caps.upstream,
            max_upstream_per_server = caps.upstream_per_server,
            "gateway connection caps"
        );
        WorkerShared {
            connections: Arc::new(ConnectionCounter::new(
                caps.connections,
                caps.connections_per_peer,
            )),
            upstream: Arc::new(upstream::Caps::new(
                caps.upstream,
                caps.upstream_per_server,
                limits.upstream_wait,
            )),
            timeouts: Timeouts {
                header: limits.header_timeout,
                idle: limits.idle_timeout,
                body_idle: limits.body_idle_timeout,
            },
            max_streams: limits.max_streams,
        }
    }
}

/// One worker's accept loop; `accept_errors` is shared by the workers of one listener, so
/// an exhausted descriptor table is reported once per interval, not once per worker.
async fn serve_worker(
    listener: TcpListener,
    ctx: GatewayContext,
    shutdown: CancellationToken,
    accept_errors: &Mutex<AcceptErrors>,
    shared: WorkerShared,
) -> std::io::Result<()> {
    let bound = listener.local_addr()?;
    let options = ctx.shared.options.clone();
    let timeouts = shared.timeouts;
    let upstream = Arc::new(upstream::Pool::new(
        options.connect_timeout,
        options.upstream_idle_timeout,
        timeouts.body_idle,
        shared.upstream.clone(),
    ));
    shared.upstream.register(&upstream);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    // Plain HTTP/1.1 has no timer of hyper's: the watchdog holds each connection to one
    // deadline (`conn`), the header timeout included, instead of a timer armed per request.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(shared.max_streams)
        // Pings find a peer that is gone while its streams wait; they are not progress.
        .keep_alive_interval(Some(timeouts.idle / 2))
        .keep_alive_timeout(H2_PING_TIMEOUT.min(timeouts.idle / 2));

    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    let force_close = CancellationToken::new();

    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = prune.tick() => {
                upstream.prune();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    let pause = accept_errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .failed(&err, std::time::Instant::now());
                    if pause {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(accept::PAUSE) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let accepted = tokio::time::Instant::now();
        let admitted = match shared.connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(why) => {
                // Closed at once: a refused client holds no descriptor. The 503 goes out
                // only if the socket takes it without waiting.
                let _ = stream.try_write(limits::REFUSAL_RESPONSE);
                shared.connections.refused(why, peer.ip());
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(cause = %err, "cannot set TCP_NODELAY on a client connection");
        }
        let service_ctx = ctx.clone();
        let service_upstream = upstream.clone();
        // One service per connection, built once its protocol (so its stream count) is known.
        let new_service = move |watch: Arc<Watch>| {
            service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let ctx = service_ctx.clone();
                let upstream = service_upstream.clone();
                let stream = OpenStream::new(&watch);
                let progress = stream.progress();
                let request =
                    request.map(|body| ClientBody::new(body, progress, timeouts.body_idle));
                async move {
                    let response =
                        router::handle(&ctx.shared, &upstream, bound, peer, request).await;
                    stream.moved();
                    Ok::<_, Infallible>(response.map(|body| Watched::new(body, stream)))
                }
            })
        };
        let hand = h1::Exchange {
            ctx: ctx.clone(),
            upstream: upstream.clone(),
            bound,
            peer,
            watch: Arc::new(Watch::new(1)),
            body_idle: timeouts.body_idle,
            shutdown: shutdown.clone(),
        };
        let builder = builder.clone();
        let http1 = http1.clone();
        let max_streams = usize::try_from(shared.max_streams)
            .unwrap_or(usize::MAX)
            .min(conn::MAX_TRACKED_STREAMS);
        let watcher = graceful.watcher();
        let force_close = force_close.clone();
        tracker.spawn(async move {
            let _admitted = admitted;
            // Telling HTTP/1 from h2 reads the first bytes with no timeout of its own, and
            // hyper's header timeout starts only after them: without this, a connection that
            // never sends anything would hold a descriptor forever.
            let mut first = [0u8; H2_PREFACE.len()];
            let peeked = tokio::select! {
                peeked = tokio::time::timeout_at(accepted + timeouts.header, stream.peek(&mut first)) => peeked,
                () = force_close.cancelled() => return,
                // Nothing sent yet: nothing to drain (the drain waits for every task).
                () = hand.shutdown.cancelled() => return,
            };
            let Ok(Ok(n @ 1..)) = peeked else {
                tracing::debug!(%peer, "client sent nothing within the header timeout; closing");
                return;
            };
            // Either way the watchdog holds the connection to its deadlines (`conn`): hyper's
            // preface detection and HTTP/2 have no timeout of their own.
            if H2_PREFACE.starts_with(&first[..n]) {
                // h2c, or too few bytes yet to tell: let hyper read the preface.
                let watch = Arc::new(Watch::new(max_streams));
                let service = new_service(watch.clone());
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = watcher.watch(connection);
                conn::drive(connection, &force_close, &watch, timeouts, accepted, peer).await;
            } else {
                // Plain HTTP/1.1, the common case: no preface detection on every read, and
                // plainly framed requests handled by hand (`h1`), the rest by hyper.
                let watch = hand.watch.clone();
                let service = new_service(watch.clone());
                let fallback = move |io| {
                    watcher.watch(http1.serve_connection(TokioIo::new(io), service))
                };
                let connection = h1::serve(stream, hand, fallback);
                // Between requests an HTTP/1.1 connection waits for its next head: the
                // header timeout, not the idle one (which is h2c's, whose pings keep it).
                let timeouts = Timeouts {
                    idle: timeouts.header,
                    ..timeouts
                };
                conn::drive(connection, &force_close, &watch, timeouts, accepted, peer).await;
            }
        });
    }

    drop(listener);
    tracker.close();
    tracing::debug!(
        connections = tracker.len(),
        "gateway worker stopped accepting; draining"
    );
    // Hand HTTP/1.1 connections are not hyper's: they stop at `shutdown` themselves, and
    // the tracker waits for them.
    let drained = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    if tokio::time::timeout(options.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "drain timeout reached; closing the remaining connections"
        );
    }
    force_close.cancel();
    tracker.wait().await;
    Ok(())
}
