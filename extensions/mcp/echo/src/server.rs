//! The MCP server: the `ServerHandler` that exposes the tools, and the HTTP loop that serves it
//! with rmcp's streamable HTTP transport on hyper.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    DiscoverResult, ErrorCode, ErrorData, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{MaybeSendFuture, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, tool_handler};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::content::Content;

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// How long in-flight requests may run after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The versions of the session-based generation.
const SESSION_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// The stateless generation alone.
const STATELESS_VERSIONS: &[ProtocolVersion] = &[ProtocolVersion::V_2026_07_28];

/// How the server behaves beyond its tools; the defaults suit production. The other settings
/// make it act like servers mcpd meets in the wild, for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Serve only the session-based protocol generation (2025-11-25 and earlier): no
    /// `server/discover`, like most servers written before 2026-07-28.
    pub session_only: bool,
    /// Close keep-alive connections idle this long (uvicorn, under the Python SDK, closes them
    /// after 5 s). `None`: keep them open.
    pub idle_timeout: Option<Duration>,
    /// Answer `<MCP_PATH>?reflect-headers` with the request's headers as JSON, for tests of
    /// what a proxy in front forwards. Off by default.
    pub reflect_headers: bool,
    /// More tools, each acting like `echo` under its own name.
    pub extra_tools: &'static [String],
    /// Forget a session idle this long (rmcp's default: 5 minutes).
    pub session_idle: Option<Duration>,
    /// Prompts and resources (none by default).
    pub content: Content,
    /// Offer `ask` (see `ask.rs`).
    pub ask: bool,
    /// Take resource subscriptions and offer `touch` (see `subscribe.rs`).
    pub subscribe: bool,
    /// Serve only 2026-07-28 (stateless): `initialize` is refused, like a server written for
    /// that version alone.
    pub stateless_only: bool,
    /// Offer `toggle_late`, which changes the tool list at run time (see `changes.rs`).
    pub tool_changes: bool,
}

/// The server's state. The tools themselves live in `tools.rs`; `tool_router` is the table of
/// them that `#[tool_router]` generates there.
#[derive(Debug, Clone)]
pub struct Echo {
    tool_router: ToolRouter<Self>,
    session_only: bool,
    stateless_only: bool,
    /// The tool list may change at run time (`changes.rs`).
    tool_changes: bool,
    content: Content,
    /// Declares `resources.subscribe` (with resources).
    subscribe: bool,
    /// This session's subscriptions.
    subscribed: crate::subscribe::Subscribed,
}

impl Echo {
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    pub fn with_options(options: Options) -> Self {
        let mut tool_router = Self::tool_router();
        if let Some(echo) = tool_router.map.get("echo").cloned() {
            for name in options.extra_tools {
                let mut route = echo.clone();
                route.attr.name = name.clone().into();
                tool_router.add_route(route);
            }
        }
        if options.ask {
            tool_router.merge(Self::ask_router());
        }
        if options.subscribe {
            tool_router.merge(Self::subscribe_router());
        }
        if options.tool_changes {
            tool_router.merge(Self::changes_router());
        }
        Echo {
            tool_router,
            session_only: options.session_only,
            stateless_only: options.stateless_only,
            tool_changes: options.tool_changes,
            content: options.content,
            subscribe: options.subscribe && options.content.has_resources(),
            subscribed: Default::default(),
        }
    }
}

impl Echo {
    /// The tools offered now: the router built for the session, with `late` while
    /// `toggle_late` has it added.
    fn tools(&self) -> Cow<'_, ToolRouter<Self>> {
        match self
            .tool_changes
            .then(|| crate::changes::with_late(&self.tool_router))
            .flatten()
        {
            Some(router) => Cow::Owned(router),
            None => Cow::Borrowed(&self.tool_router),
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

// `#[tool_handler]` implements `tools/list` and `tools/call` from the router (built once per
// session, in `new`); `get_info` declares the tools, and prompts and resources when configured.
#[tool_handler(router = self.tools())]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder().enable_tools().build();
        if self.content.has_prompts() {
            capabilities.prompts = Some(Default::default());
        }
        if self.content.has_resources() {
            let mut resources = rmcp::model::ResourcesCapability::default();
            if self.subscribe {
                resources.subscribe = Some(true);
            }
            capabilities.resources = Some(resources);
        }
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-echo", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Example server: echo, add, sleep and progress tools for testing MCP clients."
                    .to_string(),
            )
    }

    fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(Ok(self.content.list_prompts()))
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(self.content.get_prompt(&request).map(Into::into))
    }

    fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(Ok(self.content.list_resources()))
    }

    fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, ErrorData>> + MaybeSendFuture + '_
    {
        std::future::ready(Ok(self.content.list_templates()))
    }

    fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(self.content.read(&request).map(Into::into))
    }

    #[allow(deprecated)]
    fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(if self.subscribe {
            crate::subscribe::subscribe(&self.subscribed, &context.peer, request.uri);
            Ok(())
        } else {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found",
                None,
            ))
        })
    }

    #[allow(deprecated)]
    fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(if self.subscribe {
            crate::subscribe::unsubscribe(&self.subscribed, &request.uri);
            Ok(())
        } else {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found",
                None,
            ))
        })
    }

    fn on_initialized(
        &self,
        context: rmcp::service::NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        if self.tool_changes {
            crate::changes::session_opened(context.peer);
        }
        std::future::ready(())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if self.session_only {
            Cow::Borrowed(SESSION_VERSIONS)
        } else if self.stateless_only {
            Cow::Borrowed(STATELESS_VERSIONS)
        } else {
            Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(if self.session_only {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found",
                None,
            ))
        } else {
            Ok(DiscoverResult::from_server_info(
                self.supported_protocol_versions().into_owned(),
                self.get_info(),
            ))
        })
    }
}

/// Serves one client over stdin/stdout until stdin closes (or SIGTERM/SIGINT).
pub async fn serve_stdio() -> std::process::ExitCode {
    use rmcp::ServiceExt;
    let service = match Echo::new().serve(rmcp::transport::stdio()).await {
        Ok(service) => service,
        Err(error) => {
            eprintln!("mcp-echo: the stdio session did not start: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cancel = service.cancellation_token();
    let stop = tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        cancel.cancel();
    });
    let _ = service.waiting().await;
    stop.abort();
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

/// Serves MCP on `listener` until `shutdown` is cancelled, then drains open connections for at
/// most [`DRAIN_TIMEOUT`].
pub async fn serve(listener: TcpListener, options: Options, shutdown: CancellationToken) {
    // Session mode stays on (the default): clients of the 2025 protocol generation, including
    // the official Python and TypeScript SDKs, expect `Mcp-Session-Id`. Clients that negotiate
    // 2026-07-28 are served statelessly either way. Only loopback `Host` values are accepted
    // (rmcp's default), which blocks DNS-rebinding attacks on a server bound to 127.0.0.1.
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let mut sessions = LocalSessionManager::default();
    if let Some(idle) = options.session_idle {
        sessions.session_config.keep_alive = Some(idle);
    }
    let mcp: StreamableHttpService<Echo, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Echo::with_options(options)),
        std::sync::Arc::new(sessions),
        config,
    );

    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(idle) = options.idle_timeout {
        // hyper's header read timeout also runs while a keep-alive connection waits for its
        // next request: an idle timeout.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(idle);
    }
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Typically EMFILE: log, back off briefly, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Without TCP_NODELAY, Nagle's algorithm against the client's delayed ACK adds ~40 ms to
        // every response written in more than one segment (SSE framing always is).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let mcp = mcp.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mcp = mcp.clone();
            async move {
                if options.reflect_headers && request.uri().query() == Some("reflect-headers") {
                    Ok(reflect_headers(&request))
                } else if request.uri().path() == MCP_PATH {
                    Ok::<_, Infallible>(mcp.handle(request).await)
                } else {
                    Ok(not_found())
                }
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }

    // Stop accepting (the listener is dropped), end the MCP sessions and their open SSE streams
    // (the transport watches a child of `shutdown`), then let in-flight responses finish.
    drop(listener);
    tracing::info!("shutting down");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// `{"name": ["value", ...]}` of every request header (values not UTF-8 are lossy).
fn reflect_headers(request: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        let values = headers
            .entry(name.as_str())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = values {
            values.push(
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
    let body = serde_json::Value::Object(headers).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found() -> Response<BoxBody<Bytes, Infallible>> {
    let mut response =
        Response::new(Full::new(Bytes::from_static(b"not found; MCP is served at /mcp\n")).boxed());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
