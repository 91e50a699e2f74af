//! The MCP server: the `ServerHandler` that exposes the tools, and the HTTP loop that serves it
//! with rmcp's streamable HTTP transport on hyper.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool_handler};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// How long in-flight requests may run after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's state. The tools themselves live in `tools.rs`; `tool_router` is the table of
/// them that `#[tool_router]` generates there.
#[derive(Debug, Clone)]
pub struct Echo {
    tool_router: ToolRouter<Self>,
}

impl Echo {
    pub fn new() -> Self {
        Echo {
            tool_router: Self::tool_router(),
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

// `#[tool_handler]` implements `tools/list` and `tools/call` from the router (built once per
// session, in `new`) and `get_info` with this name, the crate's version and the tools capability.
#[tool_handler(
    router = self.tool_router,
    name = "mcp-echo",
    instructions = "Example server: echo, add, sleep and progress tools for testing MCP clients."
)]
impl ServerHandler for Echo {}

/// Serves MCP on `listener` until `shutdown` is cancelled, then drains open connections for at
/// most [`DRAIN_TIMEOUT`].
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    // Session mode stays on (the default): clients of the 2025 protocol generation, including
    // the official Python and TypeScript SDKs, expect `Mcp-Session-Id`. Clients that negotiate
    // 2026-07-28 are served statelessly either way. Only loopback `Host` values are accepted
    // (rmcp's default), which blocks DNS-rebinding attacks on a server bound to 127.0.0.1.
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let mcp: StreamableHttpService<Echo, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(Echo::new()), Default::default(), config);

    let builder = auto::Builder::new(TokioExecutor::new());
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
                if request.uri().path() == MCP_PATH {
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

fn not_found() -> Response<BoxBody<Bytes, Infallible>> {
    let mut response =
        Response::new(Full::new(Bytes::from_static(b"not found; MCP is served at /mcp\n")).boxed());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
