//! Helpers of the stdio-server tests: raw JSON-RPC over the gateway (sessions by hand), the
//! hostile stdio fixture as a server entry, and a server's log through `mcpctl logs`.

use std::time::Duration;

use crate::gw_support::GwDaemon;
use crate::sup_support::fixture;
use crate::{lazy, wait_for};

/// A raw JSON-RPC POST to `url`, with a session if given: status, `Mcp-Session-Id`, body.
pub async fn post(url: &str, session: Option<&str>, body: &str) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().expect("ASCII session id").to_owned());
    (status, session, response.text().await.expect("body"))
}

/// Opens a session by hand with `initialize`; returns its id.
pub async fn open_session(url: &str) -> String {
    let (status, session, body) = post(
        url,
        None,
        r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    session.expect("a session id")
}

/// A `tools/call` of `tool` with `arguments` and request id `id` (raw JSON).
pub fn tool_call(id: &str, tool: &str, arguments: serde_json::Value) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
}

/// A server file with `name` running `tests/fixtures/stdio_fault.py MODE` over stdio, plus
/// `extra` (indented lines of the entry).
pub fn fault_server(name: &str, mode: &str, extra: &str) -> String {
    format!(
        "mcp_servers:
  {name}:
    binary: python3
    args: [{script}, {mode}]
    transport: stdio
{extra}",
        script = fixture("stdio_fault.py").display()
    )
}

/// The last lines of `name`'s log (`mcpctl logs`).
pub fn logs(daemon: &GwDaemon, name: &str) -> String {
    let output = daemon.mcpctl(&["logs", name, "-n", "1000"]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `name`'s log contains `needle`.
pub async fn wait_log(daemon: &GwDaemon, name: &str, needle: &str) {
    wait_for(
        Duration::from_secs(20),
        lazy(|| format!("{needle:?} in the log of {name}: {}", logs(daemon, name))),
        || async { logs(daemon, name).contains(needle) },
    )
    .await;
}

/// The `mcpctl --json status` entry of `name`.
pub fn status_of(daemon: &GwDaemon, name: &str) -> serde_json::Value {
    crate::server_entry(&daemon.status(), name)
        .cloned()
        .unwrap_or_default()
}
