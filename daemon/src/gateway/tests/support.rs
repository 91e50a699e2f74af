//! Test harness: a gateway served on 127.0.0.1:0 over a hand-built directory, a small real
//! hyper upstream server, and an HTTP client.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::config::test_builder::{no_oauth, oauth};
use crate::config::{AuthConfig, DaemonConfig, OAuthConfig, ServerConfig, test_builder};
use crate::directory::{Directory, ServerEntry, ServerState, ServerStatus};
use crate::gateway::{Authenticator, GatewayContext, GatewayOptions, serve};

pub const WAIT: Duration = Duration::from_secs(10);

pub type TestBody = BoxBody<Bytes, Infallible>;

/// The shared test config, published on 8080 with an allowed origin and host, a 1 KiB body
/// limit and `auth`.
pub fn daemon_config(dir: &Path, auth: AuthConfig) -> DaemonConfig {
    let mut daemon = test_builder::daemon_config(dir);
    daemon.gateway.listen = "127.0.0.1:8080".parse().unwrap();
    daemon.gateway.allowed_origins = vec!["https://app.example.com".into()];
    daemon.gateway.allowed_hosts = vec!["mcp.internal".into()];
    daemon.gateway.max_body = 1024;
    daemon.auth = auth;
    daemon
}

/// A server of `daemon` served at `path` upstream, with `oauth`.
pub fn server_config(
    daemon: &DaemonConfig,
    name: &str,
    path: &str,
    oauth: OAuthConfig,
) -> ServerConfig {
    let mut server = test_builder::server_config(daemon, name);
    server.path = path.into();
    server.oauth = oauth;
    server
}

/// Asserts a 200, showing the body otherwise.
pub fn assert_ok(status: StatusCode, body: &[u8]) {
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
}

pub fn status(state: ServerState, port: Option<u16>) -> ServerStatus {
    let mut status = ServerStatus::new(state);
    status.port = port;
    status
}

/// A directory holding `servers`.
pub fn directory(servers: Vec<(ServerConfig, ServerStatus)>) -> Arc<Directory> {
    let directory = Directory::new();
    directory.replace(
        servers
            .into_iter()
            .map(|(config, status)| {
                (
                    config.name.clone(),
                    Arc::new(ServerEntry::new(config, status)),
                )
            })
            .collect(),
    );
    Arc::new(directory)
}

/// A gateway serving on 127.0.0.1:0 until dropped (or `stop`ped).
pub struct Gateway {
    pub addr: std::net::SocketAddr,
    pub ctx: GatewayContext,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    pub async fn start(
        directory: Arc<Directory>,
        config: DaemonConfig,
        options: GatewayOptions,
    ) -> Gateway {
        let auth = Authenticator::load(&config.auth).expect("test keys load");
        let ctx = GatewayContext::from_parts(directory, config, auth, options, None);
        Self::start_with(ctx).await
    }

    pub async fn start_with(ctx: GatewayContext) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, ctx.clone(), shutdown.clone()));
        Gateway {
            addr,
            ctx,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cancels and waits for `serve` to return.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("gateway stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2c_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

pub fn empty() -> TestBody {
    body(Bytes::new())
}

/// A JSON-RPC `ping`: the gateway reads every POST to an MCP route as JSON-RPC.
pub fn ping() -> TestBody {
    body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
}

/// A JSON-RPC `ping` of exactly `len` bytes (at least 64).
pub fn ping_of_len(len: usize) -> Vec<u8> {
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""#;
    let tail = r#""}}"#;
    let mut out = head.as_bytes().to_vec();
    out.resize(len - tail.len(), b'z');
    out.extend_from_slice(tail.as_bytes());
    out
}

/// Sends `request` and returns the response as soon as its head arrives (the body streams).
pub async fn open(
    client: &Client<HttpConnector, TestBody>,
    request: Request<TestBody>,
) -> Response<Incoming> {
    tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("gateway answers in time")
        .expect("request succeeds")
}

/// Sends `request` and returns status, headers and the whole body.
pub async fn send(
    client: &Client<HttpConnector, TestBody>,
    request: Request<TestBody>,
) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = open(client, request).await.into_parts();
    let bytes = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body arrives in time")
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, bytes)
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The upstream test server: a real hyper HTTP/1.1 server on 127.0.0.1:0.
///
/// - `/echo`: answers JSON describing the request it received (method, path, query, headers,
///   body length) with `Mcp-Session-Id: upstream-session` and a few hop-by-hop headers.
/// - `/sse`: an event stream whose events are the strings pushed into `events`.
/// - `/accepted`: 202 with no body, as for an MCP notification.
/// - `/slow`: never answers.
/// - `/hold`: tells `held` it has the request, then answers once `release` is notified; tells
///   `dropped` if it is cancelled before that.
pub struct Upstream {
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    events: Arc<Mutex<Option<mpsc::Receiver<String>>>>,
    pub held: Arc<Notify>,
    pub release: Arc<Notify>,
    pub dropped: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(None));
        let held = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let dropped = Arc::new(Notify::new());
        let state = UpstreamState {
            events: events.clone(),
            held: held.clone(),
            release: release.clone(),
            dropped: dropped.clone(),
        };
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(upstream_handle(state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            port,
            accepted,
            events,
            held,
            release,
            dropped,
            task,
        }
    }

    /// The sender of the next `/sse` stream.
    pub fn sse(&self) -> mpsc::Sender<String> {
        let (tx, rx) = mpsc::channel(4);
        *self.events.lock().unwrap() = Some(rx);
        tx
    }
}

#[derive(Clone)]
struct UpstreamState {
    events: Arc<Mutex<Option<mpsc::Receiver<String>>>>,
    held: Arc<Notify>,
    release: Arc<Notify>,
    dropped: Arc<Notify>,
}

/// Notifies when dropped unless disarmed: detects a cancelled handler.
struct DropSignal(Option<Arc<Notify>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(notify) = self.0.take() {
            notify.notify_one();
        }
    }
}

async fn upstream_handle(state: UpstreamState, request: Request<Incoming>) -> Response<TestBody> {
    let UpstreamState {
        events,
        held,
        release,
        dropped,
    } = state;
    match request.uri().path() {
        "/echo" => {
            let (parts, incoming) = request.into_parts();
            let received = incoming.collect().await.map(|b| b.to_bytes());
            let mut headers = serde_json::Map::new();
            for name in parts.headers.keys() {
                let values: Vec<String> = parts
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("<binary>").to_owned())
                    .collect();
                headers.insert(name.as_str().to_owned(), values.into());
            }
            let description = serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body_len": received.as_ref().map(|b| b.len()).ok(),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", "upstream-session")
                .header("connection", "x-upstream-hop")
                .header("x-upstream-hop", "1")
                .header("keep-alive", "timeout=5")
                .body(body(serde_json::to_vec(&description).unwrap()))
                .unwrap()
        }
        "/sse" => {
            let rx = events.lock().unwrap().take().expect("sse() called first");
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let frame = Frame::data(Bytes::from(format!("data: {event}\n\n")));
                Some((Ok::<_, Infallible>(frame), rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        "/accepted" => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(empty())
            .unwrap(),
        "/slow" => std::future::pending().await,
        "/hold" => {
            let mut signal = DropSignal(Some(dropped));
            held.notify_one();
            release.notified().await;
            signal.0 = None;
            Response::new(body("released"))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(empty())
            .unwrap(),
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
