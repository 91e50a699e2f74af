//! What `mcpd` answers: one struct per reply, wrapped by [`Response`].
//!
//! Times are Unix milliseconds (`*_unix_ms`) and durations carry their unit in the field name,
//! so the `--json` output of `mcpctl` (which prints these structs) is self-describing.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// A response frame. **Append-only**: the variant index is the wire tag, so new replies are
/// added at the end and existing variants are never reordered, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The daemon accepts the client's protocol. Frozen forever.
    Welcome(Welcome),
    /// The daemon speaks another protocol version; it closes the connection. Frozen forever.
    Incompatible(Incompatible),
    /// The request failed.
    Error(ErrorReply),
    /// `list` and `status`.
    Status(StatusReply),
    Show(Box<ShowReply>),
    Tools(ToolsReply),
    Call(CallReply),
    Test(TestReply),
    Validate(ValidateReply),
    /// The backlog of `logs`; with `follow`, [`Response::LogLine`] frames follow.
    Logs(LogsReply),
    /// One new line of `logs --follow`.
    LogLine(LogLine),
    /// `logs --follow` fell behind and `skipped` lines were dropped.
    LogGap(LogGap),
    Packages(PackagesReply),
    /// `start`, `stop` and `restart`: one outcome per server acted on.
    Actions(ActionsReply),
    Reload(ReloadReply),
    Token(TokenReply),
    /// The backlog of `audit`, JSON lines (see [`crate::AuditRecord`]), oldest first.
    Audit(AuditReply),
    /// One new record of `audit --follow`, as JSON text.
    AuditRecord(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReply {
    pub records: Vec<String>,
    /// Records dropped since the daemon started: the queue was full, or the file did not take
    /// them.
    pub dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The daemon's package version, e.g. "0.1.0".
    pub daemon_version: String,
    pub protocol: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incompatible {
    /// The daemon's protocol version.
    pub daemon: u32,
    /// The protocol version the client sent.
    pub client: u32,
    pub daemon_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    /// What failed and what to do about it.
    pub message: String,
}

/// Lifecycle states of a server. Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Disabled,
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Failed,
    /// A remote server (`url:`) that does not answer its probes.
    Unreachable,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Disabled => "disabled",
            ServerState::Stopped => "stopped",
            ServerState::Starting => "starting",
            ServerState::Running => "running",
            ServerState::Backoff => "backoff",
            ServerState::Stopping => "stopping",
            ServerState::Failed => "failed",
            ServerState::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server's status, as in `mcpctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    pub state: ServerState,
    pub enabled: bool,
    pub description: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// When the server entered `state`.
    pub since_unix_ms: u64,
    /// How long the current process has run, when there is one.
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    pub tools_count: u32,
    /// How the last process ended, e.g. "exit code 1".
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    /// Resource usage at the daemon's last sample (protocol 3).
    pub usage: Option<ServerUsage>,
    /// The pids of the children serving client sessions (a `sessions: per-client` stdio
    /// server), in order; empty for other servers.
    pub session_pids: Vec<u32>,
    /// A virtual server's members and their states (`None` for a server with a process).
    pub members: Option<Vec<MemberInfo>>,
}

/// What a server's processes use, from its cgroup or else summed over its process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub memory_bytes: u64,
    /// Highest memory use since the process started (cgroup only).
    pub memory_peak_bytes: Option<u64>,
    pub cpu_time_ms: u64,
    /// Share of one CPU over the last sample interval, in hundredths of a percent
    /// (1234 is 12.34%).
    pub cpu_percent_hundredths: Option<u32>,
    /// Processes and threads.
    pub tasks: u64,
    /// Processes the OOM killer killed since the daemon started.
    pub oom_kills: u64,
    /// True when read from the server's cgroup, false when summed from /proc.
    pub from_cgroup: bool,
}

/// A server's configured resource limits and user (protocol 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsInfo {
    pub memory_bytes: Option<u64>,
    /// Thousandths of a CPU (500 is half a CPU).
    pub cpu_millis: Option<u64>,
    pub tasks: Option<u64>,
    pub open_files: Option<u64>,
    /// `user` as written, when the server runs as its own user.
    pub user: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One member of a virtual server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub state: ServerState,
    /// When the member's probe last listed its tools (ms since the epoch).
    pub tools_cached_unix_ms: Option<u64>,
    /// Its cached tools may be out of date: it is not running, or its probes fail.
    pub stale: bool,
}

/// One configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrorInfo {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    pub hint: Option<String>,
}

/// How the message of a restart notice starts: a configuration entry that is not an error but
/// says settings of the daemon file wait for a restart. A reload with only notices succeeded.
pub const RESTART_NOTICE: &str = "changed in the daemon file but not applied until mcpd restarts";

impl ConfigErrorInfo {
    /// True for a restart notice (see [`RESTART_NOTICE`]), false for a real error.
    pub fn is_restart_notice(&self) -> bool {
        self.message.starts_with(RESTART_NOTICE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub servers: Vec<ServerInfo>,
    /// Errors of the last configuration load.
    pub config_errors: Vec<ConfigErrorInfo>,
    /// Tools virtual servers leave out (two members produce one name, or a name breaks the
    /// rules), one line each naming every source.
    pub conflicts: Vec<String>,
}

/// A tool a server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolEntry {
    pub server: String,
    pub name: String,
    pub description: Option<String>,
    /// The input schema as JSON text, when asked for.
    pub input_schema_json: Option<String>,
    /// With `tools --as-scopes`: whether those scopes may call the tool, and if not, the
    /// scopes that would.
    pub access: Option<ToolAccess>,
}

/// What a set of scopes may do with one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolAccess {
    pub may_call: bool,
    /// The per-tool rule that decided (`None`: the built-in meanings).
    pub rule: Option<String>,
    /// When refused: any one of these scopes would allow the call.
    pub allowing: Vec<String>,
}

/// One per-tool rule of a server: tools matching `pattern` may be called with `admin` or one
/// of `scopes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRuleInfo {
    pub pattern: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowReply {
    pub status: ServerInfo,
    /// The file that defines the server.
    pub file: String,
    /// `binary` as written, and as resolved.
    pub binary_name: String,
    pub binary: String,
    pub package: Option<String>,
    pub endpoint: String,
    /// The server's own MCP URL, once it has a port.
    pub upstream_url: Option<String>,
    pub display_in_web: bool,
    pub oauth_required: bool,
    pub oauth_scopes: Vec<String>,
    pub oauth_audience: String,
    pub oauth_client_id: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_passthrough: Vec<String>,
    pub working_dir: Option<String>,
    pub path: String,
    /// "on-failure", "always" or "never".
    pub restart_policy: String,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    pub stop_timeout_ms: u64,
    pub tools: Vec<ToolEntry>,
    /// `oauth.tools`, in order (first match wins).
    pub tool_rules: Vec<ToolRuleInfo>,
    /// `audit.arguments`.
    pub audit_arguments: bool,
    pub limits: LimitsInfo,
    /// A virtual server's `tools` filter as written, and its conflicts.
    pub tool_filter: Vec<String>,
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolsReply {
    pub tools: Vec<ToolEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReply {
    /// The server that ran the tool (resolved when the request named none).
    pub server: String,
    pub tool: String,
    /// The MCP `CallToolResult` as JSON text.
    pub result_json: String,
}

/// The outcome of one MCP handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReply {
    pub server: String,
    pub ok: bool,
    pub url: Option<String>,
    pub latency_ms: Option<u64>,
    pub protocol_version: Option<String>,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub tools_count: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateReply {
    /// Every error in the configuration files as they are on disk now.
    pub config_errors: Vec<ConfigErrorInfo>,
    /// One handshake per server checked.
    pub handshakes: Vec<TestReply>,
    /// Warnings about the configuration (e.g. per-tool rules that never apply).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A note of the daemon's own about the server (why it restarted, how it ended). Marked
    /// by this stream, never by text a server could print itself.
    Daemon,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_unix_ms: u64,
    pub stream: LogStream,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    pub server: String,
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGap {
    pub skipped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageEntry {
    pub server: String,
    pub package: Option<String>,
    pub binary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagesReply {
    pub packages: Vec<PackageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub server: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionsReply {
    /// "start", "stop" or "restart".
    pub action: String,
    pub outcomes: Vec<ActionOutcome>,
}

/// What a reload does to one server. Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    Start,
    Stop,
    Restart,
    Update,
    Unchanged,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Start => "start",
            PlanAction::Stop => "stop",
            PlanAction::Restart => "restart",
            PlanAction::Update => "update",
            PlanAction::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub server: String,
    pub action: PlanAction,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub dry_run: bool,
    pub changes: Vec<PlannedChange>,
    /// Errors of the files read; those files keep their previous servers.
    pub config_errors: Vec<ConfigErrorInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    pub token: String,
    pub expires_at_unix: u64,
}
