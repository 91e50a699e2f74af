//! The daemon's `McpClient` against a server of the older protocol generation only
//! (`initialize` and sessions, no `server/discover`), as most servers in the wild still are.
//! The server runs in-process so the test can count its open sessions.

use mcpd::mcp_client::McpClient;
use mcpd_tests::mcp_support::{CALL, serve_session_only};
use mcpd_tests::{free_port, mcp_url, wait_for};
use rmcp::model::ProtocolVersion;
use serde_json::{Map, json};

#[tokio::test]
async fn mcp_client_falls_back_to_initialize_and_deletes_its_sessions() {
    let port = free_port();
    let server = serve_session_only(
        port,
        &[ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18],
    )
    .await;
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
    assert_eq!(server.open_sessions().await, 1);
    held.cancel().await.expect("close");
    // ...and every exchange ended with a DELETE of its session, so none are left open.
    wait_for(CALL, "the server to have no open sessions", || async {
        server.open_sessions().await == 0
    })
    .await;
    server.shutdown.cancel();
}
