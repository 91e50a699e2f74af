//! rmcp clients and servers for the tests: one client set-up for both protocol generations
//! ([`connect`], [`call`], [`call_text`]) that records progress notifications as they
//! arrive, and an in-process server of the older, session-based generation only
//! ([`serve_session_only`]) whose sessions and accepted connections a test can count.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ClientRequest,
    DiscoverResult, ErrorCode, ErrorData, Implementation, ProgressNotificationParam,
    ProtocolVersion, Request, ServerResult,
};
use rmcp::service::{
    MaybeSendFuture, NotificationContext, PeerRequestOptions, RequestContext, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, RoleServer, ServerHandler,
    tool, tool_handler, tool_router,
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a client waits to connect or for a call's answer.
pub const CALL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Clients

/// The two MCP protocol generations a client may speak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generation {
    /// `initialize` + `Mcp-Session-Id` (2025-11-25 and earlier).
    Session,
    /// `server/discover`, stateless requests (2026-07-28).
    Stateless,
}

pub const BOTH: [Generation; 2] = [Generation::Session, Generation::Stateless];

/// An rmcp client that forwards each progress notification with its arrival time.
#[derive(Clone)]
pub struct ProgressClient {
    config: ClientConfig,
    progress: mpsc::UnboundedSender<(Instant, ProgressNotificationParam)>,
}

impl ClientHandler for ProgressClient {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send((Instant::now(), params));
    }
}

pub type Client = RunningService<RoleClient, ProgressClient>;
/// The progress notifications a [`Client`] received, with their arrival times.
pub type Progress = mpsc::UnboundedReceiver<(Instant, ProgressNotificationParam)>;

/// Connects a client of `generation` to `url`, with `token` as its bearer token if given.
pub async fn connect(
    url: &str,
    token: Option<&str>,
    generation: Generation,
) -> Result<(Client, Progress), String> {
    let mut transport = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = token {
        transport = transport.auth_header(token.to_owned());
    }
    connect_with(transport, generation).await
}

/// Connects a client of `generation` to `url` without a token; panics when it cannot.
pub async fn connected(url: &str, generation: Generation) -> (Client, Progress) {
    connect(url, None, generation)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Connects a client of `generation` over a transport configured by the caller.
pub async fn connect_with(
    transport: StreamableHttpClientTransportConfig,
    generation: Generation,
) -> Result<(Client, Progress), String> {
    let url = transport.uri.clone();
    let lifecycle = match generation {
        Generation::Session => ClientLifecycleMode::Initialize,
        Generation::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    };
    let (progress, received) = mpsc::unbounded_channel();
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mcpd-tests", "0"),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let client = tokio::time::timeout(
        CALL,
        ProgressClient { config, progress }.serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(transport),
            lifecycle,
        ),
    )
    .await
    .map_err(|_| format!("{generation:?} client: no answer from {url} within {CALL:?}"))?
    .map_err(|error| format!("{generation:?} client cannot connect to {url}: {error}"))?;
    Ok((client, received))
}

/// The object `value` as tool arguments; panics on anything else.
pub fn arguments(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, not {other}"),
    }
}

/// Calls `tool`; panics when it fails or does not answer within [`CALL`].
pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments(args));
    tokio::time::timeout(CALL, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} did not answer within {CALL:?}"))
        .unwrap_or_else(|error| panic!("{tool} failed: {error}"))
}

/// The text of a tool result's first content item; panics on a tool error.
pub fn text(result: &CallToolResult) -> String {
    assert_ne!(
        result.is_error,
        Some(true),
        "tool reported an error: {result:?}"
    );
    let content = serde_json::to_value(&result.content).expect("content serializes");
    content[0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {content}"))
        .to_owned()
}

/// Calls `tool` and returns the text of its first content item.
pub async fn call_text(client: &Client, tool: &str, args: Value) -> String {
    text(&call(client, tool, args).await)
}

/// Calls mcp-echo's `progress` tool (`steps` notifications, `interval` apart) as a
/// cancellable request, so that it carries a progress token in `_meta`; returns the result
/// and when it arrived. The notifications are in the client's [`Progress`].
pub async fn call_progress(
    client: &Client,
    steps: u32,
    interval: Duration,
) -> (CallToolResult, Instant) {
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("progress").with_arguments(arguments(json!({
            "steps": steps,
            "interval_ms": u64::try_from(interval.as_millis()).expect("a short interval"),
        }))),
    ));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send the progress call");
    let response = tokio::time::timeout(CALL, handle.await_response())
        .await
        .expect("progress answered in time")
        .expect("progress succeeded");
    let answered = Instant::now();
    let ServerResult::CallToolResult(result) = response else {
        panic!("progress: unexpected {response:?}")
    };
    (result, answered)
}

// ---------------------------------------------------------------------------------------------
// An in-process server of the session-based generation

/// A server of the session-based generation only (`initialize`; `server/discover` is an
/// unknown method), named `legacy` 1.2.3, with one tool `pong`.
#[derive(Debug, Clone)]
pub struct SessionOnly {
    tool_router: ToolRouter<Self>,
    versions: Vec<ProtocolVersion>,
}

#[tool_router]
impl SessionOnly {
    #[tool(description = "Answers pong")]
    async fn pong(&self) -> String {
        "pong".to_owned()
    }
}

#[tool_handler(router = self.tool_router, name = "legacy", version = "1.2.3")]
impl ServerHandler for SessionOnly {
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.versions.clone())
    }

    fn discover(
        &self,
        _: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "Method not found",
            None,
        )))
    }
}

/// A running [`serve_session_only`] server: stops when `shutdown` is cancelled.
#[derive(Debug)]
pub struct InProcessServer {
    pub shutdown: CancellationToken,
    pub sessions: Arc<LocalSessionManager>,
    accepted: Arc<AtomicUsize>,
}

impl InProcessServer {
    /// How many sessions are open.
    pub async fn open_sessions(&self) -> usize {
        self.sessions.sessions.read().await.len()
    }

    /// How many connections the server accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Serves [`SessionOnly`], speaking `versions`, on `127.0.0.1:port` (with TCP_NODELAY) until
/// the returned server's `shutdown` is cancelled.
pub async fn serve_session_only(port: u16, versions: &[ProtocolVersion]) -> InProcessServer {
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(LocalSessionManager::default());
    let accepted = Arc::new(AtomicUsize::new(0));
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let versions = versions.to_vec();
    let service: StreamableHttpService<SessionOnly, LocalSessionManager> =
        StreamableHttpService::new(
            move || {
                Ok(SessionOnly {
                    tool_router: SessionOnly::tool_router(),
                    versions: versions.clone(),
                })
            },
            sessions.clone(),
            config,
        );
    let listener = crate::hold_port(port);
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let stop = shutdown.clone();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.expect("accept").0,
                () = stop.cancelled() => return,
            };
            count.fetch_add(1, Ordering::SeqCst);
            stream.set_nodelay(true).expect("nodelay");
            let service = service.clone();
            let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(request).await) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    InProcessServer {
        shutdown,
        sessions,
        accepted,
    }
}
