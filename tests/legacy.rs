//! The daemon's `McpClient` against a server of the older protocol generation only
//! (`initialize` and sessions, no `server/discover`), as most servers in the wild still are.
//! The server runs in-process so the test can count its open sessions.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mcpd::mcp_client::McpClient;
use mcpd_tests::{free_port, mcp_url, wait_for};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{DiscoverResult, ErrorCode, ErrorData, ProtocolVersion};
use rmcp::service::{MaybeSendFuture, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

const CALL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Legacy {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Legacy {
    #[tool(description = "Answers pong")]
    async fn pong(&self) -> String {
        "pong".to_owned()
    }
}

#[tool_handler(router = self.tool_router, name = "legacy", version = "1.2.3")]
impl ServerHandler for Legacy {
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(vec![
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2025_06_18,
        ])
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

/// Serves `Legacy` on `port` until the returned token is cancelled; also returns its sessions.
async fn serve_legacy(port: u16) -> (CancellationToken, Arc<LocalSessionManager>) {
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(LocalSessionManager::default());
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let service: StreamableHttpService<Legacy, LocalSessionManager> = StreamableHttpService::new(
        || {
            Ok(Legacy {
                tool_router: Legacy::tool_router(),
            })
        },
        sessions.clone(),
        config,
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.expect("accept").0,
                () = stop.cancelled() => return,
            };
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
    (shutdown, sessions)
}

async fn open_sessions(sessions: &LocalSessionManager) -> usize {
    sessions.sessions.read().await.len()
}

#[tokio::test]
async fn mcp_client_falls_back_to_initialize_and_deletes_its_sessions() {
    let port = free_port();
    let (shutdown, sessions) = serve_legacy(port).await;
    let client = McpClient::new();

    for _ in 0..3 {
        let handshake = client
            .handshake(&mcp_url(port), CALL)
            .await
            .expect("handshake");
        assert_eq!(handshake.protocol_version, "2025-11-25");
        assert_eq!(
            (
                handshake.server_name.as_str(),
                handshake.server_version.as_str()
            ),
            ("legacy", "1.2.3")
        );
        let names: Vec<&str> = handshake
            .tools
            .iter()
            .map(|tool| tool.name.as_str())
            .collect();
        assert_eq!(names, ["pong"]);
    }
    let result = client
        .call_tool(&mcp_url(port), "pong", Map::new(), CALL)
        .await
        .expect("call pong");
    assert_eq!(result["content"][0]["text"], json!("pong"));

    // The count does see sessions: one held open by a plain client shows up...
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(mcp_url(port));
    let held = rmcp::ServiceExt::serve(rmcp::model::ClientConfig::default(), transport)
        .await
        .expect("connect");
    assert_eq!(open_sessions(&sessions).await, 1);
    held.cancel().await.expect("close");
    // ...and every exchange ended with a DELETE of its session, so none are left open.
    wait_for(CALL, "the server to have no open sessions", || async {
        open_sessions(&sessions).await == 0
    })
    .await;
    shutdown.cancel();
}
