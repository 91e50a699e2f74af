//! What `mcpctl` asks: one struct per command, wrapped by [`Request`].

use serde::{Deserialize, Serialize};

/// A request frame. **Append-only**: the variant index is the wire tag, so new commands are
/// added at the end and existing variants are never reordered, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Must be the first frame of a connection. Frozen forever.
    Hello(Hello),
    List(ListRequest),
    Status(StatusRequest),
    Show(ShowRequest),
    Tools(ToolsRequest),
    Call(CallRequest),
    Test(TestRequest),
    Validate(ValidateRequest),
    Logs(LogsRequest),
    ListPackages(ListPackagesRequest),
    Start(StartRequest),
    Stop(StopRequest),
    Restart(RestartRequest),
    Reload(ReloadRequest),
    Token(TokenRequest),
    Audit(AuditRequest),
}

impl Request {
    /// The command name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello(_) => "hello",
            Request::List(_) => "list",
            Request::Status(_) => "status",
            Request::Show(_) => "show",
            Request::Tools(_) => "tools",
            Request::Call(_) => "call",
            Request::Test(_) => "test",
            Request::Validate(_) => "validate",
            Request::Logs(_) => "logs",
            Request::ListPackages(_) => "list-packages",
            Request::Start(_) => "start",
            Request::Stop(_) => "stop",
            Request::Restart(_) => "restart",
            Request::Reload(_) => "reload",
            Request::Token(_) => "token",
            Request::Audit(_) => "audit",
        }
    }

    /// True for requests that change the daemon's state or mint credentials; the daemon
    /// logs the peer's credentials with each of them.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Request::Start(_)
                | Request::Stop(_)
                | Request::Restart(_)
                | Request::Reload(_)
                | Request::Token(_)
        )
    }
}

/// Opens a connection. Frozen forever: a single field, so every version can decode it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
}

/// Every configured server, briefly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {}

/// The status of one server, or of all when `name` is `None`, plus the config errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub name: Option<String>,
}

/// Everything known about one server: its configuration, status and tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowRequest {
    pub name: String,
}

/// The cached tool lists of one server, or of all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolsRequest {
    pub name: Option<String>,
    /// Include each tool's input schema (JSON text).
    pub schema: bool,
    /// Say, per tool, whether a token with these scopes may call it.
    pub as_scopes: Option<Vec<String>>,
}

/// Calls a tool through the daemon's MCP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// `None`: the daemon picks the one server whose cached tool list has `tool`.
    pub server: Option<String>,
    pub tool: String,
    /// A JSON object, as text.
    pub arguments_json: String,
    /// How long to wait for the result.
    pub timeout_ms: u64,
}

/// An MCP handshake with one server, reporting latency and tool count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRequest {
    pub name: String,
}

/// Re-reads the configuration from disk and reports every error, plus a handshake per
/// running server (only `name`'s file and handshake when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateRequest {
    pub name: Option<String>,
}

/// The last `lines` lines a server printed; with `follow`, then every new line as it comes
/// until the client disconnects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub name: String,
    pub lines: u32,
    pub follow: bool,
}

/// The `package` field of every server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPackagesRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub name: String,
}

/// Which servers a restart applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartTarget {
    One(String),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRequest {
    pub target: RestartTarget,
}

/// Re-reads the server files and applies them (or only plans, with `dry_run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRequest {
    pub dry_run: bool,
}

/// Mints a JWT signed with the daemon's HS256 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    /// `None`: "mcp".
    pub audience: Option<String>,
    pub ttl_secs: u64,
    /// `None`: "mcpctl".
    pub subject: Option<String>,
}

/// Audit records from `<logs.dir>/audit*.log`, newest last; with `follow`,
/// [`crate::Response::AuditRecord`] frames follow as calls happen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRequest {
    pub server: Option<String>,
    pub tool: Option<String>,
    /// Only records at or after this time (Unix milliseconds).
    pub since_unix_ms: Option<u64>,
    /// At most this many records of the backlog (the newest).
    pub lines: u32,
    pub follow: bool,
}
