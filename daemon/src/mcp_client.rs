//! The daemon's MCP client (rmcp): handshakes, tool lists and tool calls against a server's own
//! port, for the operator commands (`mcpctl test`, `tools`, `call`, `validate`). Health probes
//! use the lighter `probe_client` instead.
//!
//! Every operation opens a short MCP connection, does its work and closes it again (a DELETE
//! of the session, for servers that keep sessions), all within the caller's timeout. Both
//! protocol generations are spoken: the client first asks `server/discover` (2026-07-28,
//! stateless) and falls back to `initialize` (2025-11-25 and earlier, session-based) when the
//! server does not know it. Servers found to be of the older generation are remembered per URL
//! and spoken to with `initialize` directly, so a command costs them no extra round trip.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, Tool,
};
use rmcp::service::{ClientInitializeError, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};

use crate::directory::ToolInfo;

/// Connections idle longer than this are closed. The requests of one command share a
/// connection; idle ones are closed soon after, so the daemon does not keep connections (and
/// their buffers) to every server an operator once looked at.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("MCP error from {url}: {reason}")]
    Protocol { url: String, reason: String },
    /// The server answered with a JSON-RPC error.
    #[error("MCP error from {url}: {message} (code {code})")]
    Rpc {
        url: String,
        code: i64,
        message: String,
    },
}

impl McpError {
    /// The JSON-RPC error code the server answered, if it answered with an error.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            McpError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
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
#[derive(Debug, Clone)]
pub struct McpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One connection pool for every server: keep-alive connections to 127.0.0.1 ports.
    http: reqwest::Client,
    /// URLs whose server answered only the older, `initialize`-based protocol.
    legacy: Mutex<HashSet<String>>,
}

/// How to start an MCP connection.
#[derive(Debug, Clone, Copy)]
enum Generation {
    /// `server/discover` (2026-07-28), falling back to `initialize` for servers that do not
    /// know it.
    Auto,
    /// `initialize` and a session (2025-11-25 and earlier).
    Initialize,
}

/// An open MCP connection.
type Connection = RunningService<RoleClient, ClientConfig>;

impl Default for McpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl McpClient {
    pub fn new() -> Self {
        // Plain HTTP to loopback only: no TLS, no proxies, no redirects. TCP_NODELAY avoids the
        // ~40 ms Nagle/delayed-ACK stall on requests written in more than one segment.
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .expect("an HTTP client without TLS always builds");
        McpClient {
            inner: Arc::new(Inner {
                http,
                legacy: Mutex::default(),
            }),
        }
    }

    /// Connects to `url` (e.g. `http://127.0.0.1:5000/mcp`) and lists its tools, within `timeout`.
    /// Works with session-based and stateless servers.
    pub async fn list_tools(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<ToolInfo>, McpError> {
        Ok(self.handshake(url, timeout).await?.tools)
    }

    /// Like `list_tools`, also reporting the server's identity, protocol version and latency.
    pub async fn handshake(&self, url: &str, timeout: Duration) -> Result<Handshake, McpError> {
        let started = Instant::now();
        let work = async {
            let connection = self.connect(url).await?;
            let listed = connection.list_all_tools().await;
            let latency = started.elapsed();
            let info = connection.peer_info();
            self.close(connection, started, timeout).await;
            let tools = listed.map_err(|error| service_error(url, &error))?;
            let (protocol_version, server_name, server_version) = match info {
                Some(info) => {
                    let implementation = info.server_info.clone().unwrap_or_else(unnamed);
                    (
                        info.protocol_version.to_string(),
                        implementation.name,
                        implementation.version,
                    )
                }
                None => (String::new(), String::new(), String::new()),
            };
            Ok(Handshake {
                protocol_version,
                server_name,
                server_version,
                tools: tools.into_iter().map(tool_info).collect(),
                latency,
            })
        };
        within(url, timeout, work).await
    }

    /// Calls `tool` with `arguments` and returns the `CallToolResult` as JSON.
    pub async fn call_tool(
        &self,
        url: &str,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, McpError> {
        let started = Instant::now();
        let work = async {
            let connection = self.connect(url).await?;
            let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
            let called = connection.call_tool(params).await;
            self.close(connection, started, timeout).await;
            let result = called.map_err(|error| service_error(url, &error))?;
            serde_json::to_value(&result).map_err(|error| McpError::Protocol {
                url: url.to_owned(),
                reason: format!("cannot encode the tool result: {error}"),
            })
        };
        within(url, timeout, work).await
    }

    /// Opens an MCP connection, picking the protocol generation this URL answered last time.
    async fn connect(&self, url: &str) -> Result<Connection, McpError> {
        if self.is_legacy(url) {
            let opened = self.open(url, Generation::Initialize).await;
            // On failure the server may have been replaced by one of the newer generation:
            // the next attempt asks `server/discover` again.
            if matches!(opened, Err(McpError::Protocol { .. })) {
                self.remember(url, false);
            }
            return opened;
        }
        match self.open(url, Generation::Auto).await {
            Ok(connection) => {
                let legacy = connection
                    .peer_info()
                    .is_some_and(|info| info.protocol_version.has_initialize());
                self.remember(url, legacy);
                Ok(connection)
            }
            // rmcp falls back to `initialize` only when `server/discover` is unknown to the
            // server; a server that knows it but supports only older versions (it answers with
            // the versions it has) needs the fallback here.
            Err(McpError::Protocol {
                reason: discover, ..
            }) => match self.open(url, Generation::Initialize).await {
                Ok(connection) => {
                    self.remember(url, true);
                    Ok(connection)
                }
                Err(McpError::Protocol { url, reason }) => Err(McpError::Protocol {
                    url,
                    reason: format!("{reason} (and server/discover failed: {discover})"),
                }),
                Err(other) => Err(other),
            },
            Err(other) => Err(other),
        }
    }

    /// Opens an MCP connection with one lifecycle.
    async fn open(&self, url: &str, generation: Generation) -> Result<Connection, McpError> {
        let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            // A probe must see a restarted server as it is, not paper over it.
            .reinit_on_expired_session(false);
        let transport = StreamableHttpClientTransport::with_client(self.inner.http.clone(), config);
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpd", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        let lifecycle = match generation {
            Generation::Initialize => ClientLifecycleMode::Initialize,
            Generation::Auto => ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::LATEST],
                legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
            },
        };
        client
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .map_err(|error| initialize_error(url, &error))
    }

    /// Ends the connection (deleting its session), bounded by what is left of the caller's
    /// timeout. The result is already in hand, so a slow close is not an error.
    async fn close(&self, connection: Connection, started: Instant, timeout: Duration) {
        let left = timeout.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, connection.cancel())
            .await
            .is_err()
        {
            tracing::debug!(
                "closing an MCP connection took too long; left to finish in the background"
            );
        }
    }

    fn is_legacy(&self, url: &str) -> bool {
        self.inner
            .legacy
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(url)
    }

    fn remember(&self, url: &str, legacy: bool) {
        let mut known = self
            .inner
            .legacy
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if legacy {
            known.insert(url.to_owned());
        } else {
            known.remove(url);
        }
    }
}

/// Runs `work`, turning an expired `timeout` into `McpError::Timeout`.
async fn within<T>(
    url: &str,
    timeout: Duration,
    work: impl Future<Output = Result<T, McpError>>,
) -> Result<T, McpError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(McpError::Timeout {
                url: url.to_owned(),
                timeout,
            })
        })
}

fn unnamed() -> Implementation {
    Implementation::new("", "")
}

fn tool_info(tool: Tool) -> ToolInfo {
    ToolInfo {
        name: tool.name.into_owned(),
        description: tool.description.map(|text| text.into_owned()),
        input_schema: serde_json::value::to_raw_value(&*tool.input_schema)
            .expect("a JSON object serializes"),
        extra: None,
    }
}

fn initialize_error(url: &str, error: &ClientInitializeError) -> McpError {
    match error {
        ClientInitializeError::TransportError { error, context } => {
            classify(url, error, &format!("{context}: "))
        }
        ClientInitializeError::LegacyFallbackFailed { discover, fallback } => {
            // Both attempts failed; the fallback's reason is the one that says most.
            match initialize_error(url, fallback) {
                McpError::Protocol { reason, .. } => McpError::Protocol {
                    url: url.to_owned(),
                    reason: format!("{reason} (server/discover also failed: {discover})"),
                },
                other => other,
            }
        }
        other => McpError::Protocol {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn service_error(url: &str, error: &ServiceError) -> McpError {
    match error {
        ServiceError::TransportSend(error) => classify(url, error, ""),
        ServiceError::McpError(data) => McpError::Rpc {
            url: url.to_owned(),
            code: i64::from(data.code.0),
            message: data.message.to_string(),
        },
        other => McpError::Protocol {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Sorts a transport failure into "cannot connect" or "the server misbehaved", with the
/// underlying reason (e.g. "Connection refused (os error 111)").
fn classify(url: &str, error: &(dyn StdError + 'static), prefix: &str) -> McpError {
    let mut current = Some(error);
    while let Some(error) = current {
        let http = error.downcast_ref::<reqwest::Error>().or_else(|| {
            match error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
                Some(StreamableHttpError::Client(inner)) => Some(inner),
                _ => None,
            }
        });
        if let Some(http) = http
            && (http.is_connect() || http.is_request() && root_cause(http).is::<std::io::Error>())
        {
            return McpError::Connect {
                url: url.to_owned(),
                reason: root_cause(http).to_string(),
            };
        }
        current = error.source();
    }
    McpError::Protocol {
        url: url.to_owned(),
        reason: format!("{prefix}{}", chain(error)),
    }
}

fn root_cause<'a>(error: &'a (dyn StdError + 'static)) -> &'a (dyn StdError + 'static) {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error
}

/// "outer: inner: innermost", skipping repeats (many errors print their source too).
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(error) = current {
        let part = error.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_skips_repeated_messages() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = StreamableHttpError::<reqwest::Error>::Io(inner);
        assert_eq!(chain(&outer), "Io error: refused");
    }

    #[test]
    fn tool_conversion_keeps_name_description_and_schema() {
        let schema =
            serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let serde_json::Value::Object(schema) = schema else {
            unreachable!()
        };
        let tool = Tool::new("echo", "Returns the text", Arc::new(schema.clone()));
        let info = tool_info(tool);
        assert_eq!(info.name, "echo");
        assert_eq!(info.description.as_deref(), Some("Returns the text"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(info.input_schema.get()).unwrap(),
            serde_json::Value::Object(schema)
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        // A test port of our own, outside the ephemeral range: nothing listens there.
        let port = mcpd_testkit::free_port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let error = McpClient::new()
            .handshake(&url, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, McpError::Connect { .. }), "{error}");
    }
}
