//! The registry, RFC 9728 metadata and health endpoints.

use std::sync::Arc;

use http::{Request, StatusCode};

use super::support::*;
use crate::config::AuthConfig;
use crate::directory::{ServerState, ServerStatus, ToolInfo};
use crate::gateway::GatewayOptions;

#[tokio::test]
async fn registry_lists_enabled_servers_with_live_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), AuthConfig::default());
    let mut echo = server_config(&config, "echo", "/mcp", oauth(&["user", "admin"]));
    echo.port = Some(5010);
    echo.display_in_web = false;
    let mut echo_status = status(ServerState::Running, Some(5010));
    let tool = ToolInfo::new("echo", &serde_json::json!({"type": "object"}));
    echo_status.tools = Arc::from(vec![
        tool.clone(),
        ToolInfo {
            name: "add".into(),
            ..tool
        },
    ]);
    let mut off = server_config(&config, "off", "/mcp", no_oauth());
    off.enabled = false;
    let servers = vec![
        (echo, echo_status),
        (
            server_config(&config, "plain", "/mcp", no_oauth()),
            status(ServerState::Backoff, Some(5011)),
        ),
        (off, ServerStatus::new(ServerState::Disabled)),
    ];
    let directory = directory(servers);
    let gateway = Gateway::start(directory.clone(), config, GatewayOptions::default()).await;

    let request = Request::get(gateway.url("/api/v1/mcp/registry"))
        .body(empty())
        .unwrap();
    let (status_code, headers, bytes) = send(&client(), request).await;
    assert_eq!(status_code, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let registry = json(&bytes);
    assert_eq!(
        registry["data"],
        serde_json::json!([
            {
                "name": "echo",
                "description": "echo server",
                "endpoint": "http://localhost:8080/api/v1/mcp/echo/mcp",
                "port": 5010,
                "enabled": true,
                "display_in_web": false,
                "status": "running",
                "oauth_required": true,
                "oauth_scopes": ["user", "admin"],
                "tools_count": 2
            },
            {
                "name": "plain",
                "description": "plain server",
                "endpoint": "http://localhost:8080/api/v1/mcp/plain/mcp",
                "port": 5011,
                "enabled": true,
                "display_in_web": true,
                "status": "backoff",
                "oauth_required": false,
                "oauth_scopes": [],
                "tools_count": 0
            }
        ])
    );
    let meta = registry["meta"].as_object().unwrap();
    assert_eq!(meta.len(), 2);
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = meta["timestamp"].as_str().unwrap();
    humantime::parse_rfc3339(timestamp).expect("RFC 3339 timestamp");

    // Live: a status change shows at the next request, no reload involved.
    directory
        .get("plain")
        .unwrap()
        .status
        .store(Arc::new(status(ServerState::Running, Some(5011))));
    let request = Request::get(gateway.url("/api/v1/mcp/registry"))
        .body(empty())
        .unwrap();
    let (_, _, bytes) = send(&client(), request).await;
    assert_eq!(json(&bytes)["data"][1]["status"], "running");
}

#[tokio::test]
async fn protected_resource_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthConfig {
        authorization_servers: vec!["https://auth.example.com".into()],
        ..AuthConfig::default()
    };
    let config = daemon_config(dir.path(), auth);
    let servers = vec![(
        server_config(&config, "echo", "/mcp", oauth(&["user", "admin"])),
        status(ServerState::Running, Some(5010)),
    )];
    let gateway = Gateway::start(directory(servers), config, GatewayOptions::default()).await;

    let url = gateway.url("/.well-known/oauth-protected-resource/api/v1/mcp/echo/mcp");
    let (status_code, _, bytes) = send(&client(), Request::get(url).body(empty()).unwrap()).await;
    assert_eq!(status_code, StatusCode::OK);
    assert_eq!(
        json(&bytes),
        serde_json::json!({
            "resource": "http://localhost:8080/api/v1/mcp/echo/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["user", "admin"],
            "bearer_methods_supported": ["header"]
        })
    );

    let url = gateway.url("/.well-known/oauth-protected-resource/api/v1/mcp/nope/mcp");
    let (status_code, _, bytes) = send(&client(), Request::get(url).body(empty()).unwrap()).await;
    assert_eq!(status_code, StatusCode::NOT_FOUND);
    assert_eq!(json(&bytes)["server"], "nope");

    let (status_code, _, _) = send(
        &client(),
        Request::get(gateway.url("/healthz")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(status_code, StatusCode::OK);
}
