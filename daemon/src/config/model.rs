//! Validated configuration: the types the rest of the daemon uses, which cannot hold an invalid value.
//!
//! `config::raw` deserializes the YAML an operator wrote; `config::validate` turns it into these
//! types or into a list of every error found. Nothing outside `config` builds these by hand
//! except tests.

use crate::authz::ToolRule;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use super::limits::*;

/// Everything the daemon runs from: its own settings plus every server file.
#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub services: Services,
}

/// The daemon file `mcpd.yaml` (or built-in defaults), with relative paths already resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// The file this came from; `None` when running on built-in defaults.
    pub source: Option<PathBuf>,
    pub services_dir: PathBuf,
    pub port_range: PortRange,
    pub bin_dirs: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub gateway: GatewayConfig,
    pub control: ControlConfig,
    pub logs: LogsConfig,
    pub auth: AuthConfig,
    pub defaults: ServerDefaults,
    /// Where server cgroups go (`cgroup`).
    pub cgroup: CgroupSetting,
}

/// An inclusive range of TCP ports, `start <= end`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..=self.end
    }

    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Base URL of advertised endpoints and OAuth metadata, without a trailing slash.
    pub public_url: String,
    /// Host (with port, if any) of `public_url`, e.g. `localhost:8080`.
    pub public_host: String,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    /// Peers whose `Forwarded`, `X-Forwarded-*` and `X-Real-IP` headers are kept.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body accepted, in bytes.
    pub max_body: u64,
    /// Timeouts and caps that protect the daemon from slow or greedy clients.
    pub limits: GatewayLimits,
    /// Serve the status page at `/` and `/ui/` (`gateway.web`).
    pub web: bool,
}

/// The gateway's connection timeouts and resource caps. A cap left `None` is derived from
/// the open-file limit at start (`gateway::limits`).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayLimits {
    /// Deadline for a new connection's first complete request head, whatever its protocol;
    /// for HTTP/1.1 also the keep-alive idle time before the next request head.
    pub header_timeout: Duration,
    /// An HTTP/2 connection with no open stream is closed after this long.
    pub idle_timeout: Duration,
    /// A request or response body that moves no byte for this long is ended.
    pub body_idle_timeout: Duration,
    /// Concurrent client connections, in total and from one peer IP address.
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    /// Concurrent HTTP/2 streams on one client connection.
    pub max_streams: u32,
    /// Upstream connections, in total and to one server.
    pub max_upstream: Option<usize>,
    pub max_upstream_per_server: Option<usize>,
    /// How long a request waits for an upstream connection under the caps (then 503).
    pub upstream_wait: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(300),
            max_connections: None,
            max_connections_per_peer: None,
            max_streams: 100,
            max_upstream: None,
            max_upstream_per_server: None,
            upstream_wait: Duration::from_secs(5),
        }
    }
}

impl GatewayConfig {
    /// True when `peer` is in `trusted_proxies`.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }
}

/// An IP network, `address/prefix` (a single address is a network of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `192.0.2.7` or `::1`; host bits must be zero.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max && prefix.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("\"{text}\": the prefix length must be 0 to {max}"))?,
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!(
                "\"{text}\" has bits set after the prefix; write the network address"
            ));
        }
        Ok(net)
    }

    fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(ip) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
            }
        }
    }

    /// True when `addr` is in this network (an IPv4-mapped IPv6 peer counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.addr.is_ipv4() && self.masked(addr) == self.addr
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// File mode of the socket, e.g. `0o660`.
    pub mode: u32,
    /// The fallback directory `$TMPDIR/mcpd-$UID` when the socket or the state dir defaults
    /// into it: created 0700 before the socket is bound, and refused when it exists as
    /// anything but a directory of mcpd's user with no access for others.
    pub private_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsConfig {
    pub dir: PathBuf,
    pub rotation: Rotation,
    /// How many rotated files to keep per server.
    pub keep: usize,
    /// Lines kept in memory per server for `mcpctl logs`.
    pub buffer_lines: usize,
    /// Write `audit.log` (one record per `tools/call`); `logs.audit: false` turns it off.
    pub audit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Minutely,
    Hourly,
    Daily,
    Never,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// If set, a token's `iss` must equal it.
    pub issuer: Option<String>,
    /// Advertised in RFC 9728 metadata.
    pub authorization_servers: Vec<String>,
    pub keys: Vec<KeySource>,
    pub leeway: Duration,
}

/// Where a verification key comes from. Files are read when the gateway loads keys.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// A file holding the raw HS256 secret (trailing newline trimmed).
    Hs256SecretFile(PathBuf),
    /// A PEM public key used with one algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    PublicKeyFile {
        path: PathBuf,
        algorithm: jsonwebtoken::Algorithm,
    },
    /// A JSON Web Key Set; a token's `kid` selects the key.
    JwksFile(PathBuf),
}

/// Restart, health and stop settings every server gets unless it overrides them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDefaults {
    pub restart: RestartConfig,
    pub health: HealthConfig,
    pub stop_timeout: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart after a crash, a non-zero exit or failed probes (the default).
    OnFailure,
    /// Also restart after a clean exit.
    Always,
    /// Never restart on its own.
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    pub policy: RestartPolicy,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub reset_after: Duration,
    /// Failures within `window` that park the server in `failed`.
    pub burst: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Liveness failures in a row that trigger a restart.
    pub failures: u32,
    pub start_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    pub required: bool,
    /// A token passes with any one of these; `admin` passes every server.
    pub scopes: Vec<String>,
    pub audience: String,
    pub client_id: Option<String>,
    /// Per-tool rules (`oauth.tools`), in order: the first whose pattern matches decides.
    pub tools: Vec<ToolRule>,
}

impl OAuthConfig {
    /// `required` with no `scopes`: any valid token for the audience passes. Allowed, but
    /// said out loud (`mcpd check`, the daemon log, `mcpctl show`).
    pub fn admits_any_scope(&self) -> bool {
        self.required && self.scopes.is_empty()
    }
}

/// The warning for a server whose `oauth` admits any valid token, if it does.
pub fn oauth_warning(name: &str, oauth: &OAuthConfig) -> Option<String> {
    oauth.admits_any_scope().then(|| {
        format!(
            "server {name}: oauth.required with no oauth.scopes admits any valid token for audience {}",
            oauth.audience
        )
    })
}

/// How mcpd reaches a server it runs (`transport:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerKind {
    /// A child that listens on HTTP at the port mcpd gives it (the default).
    #[default]
    Http,
    /// A child speaking newline-delimited JSON-RPC on stdin/stdout; mcpd is its only client
    /// and bridges it to streamable HTTP (`crate::stdio`). No port.
    Stdio(StdioSessions),
    /// A server mcpd does not run, reached at `url:` (`ServerConfig::remote`): probed and
    /// proxied, never spawned.
    Remote,
}

/// How the callers of a stdio server share its processes (`sessions:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioSessions {
    /// One child for every caller (the default).
    #[default]
    Shared,
    /// One child per client session, at most `max_sessions` at once, stopped after
    /// `idle_timeout` without a request.
    PerClient {
        max_sessions: usize,
        idle_timeout: Duration,
    },
}

/// Defaults of `max_sessions` and `idle_timeout`.
pub const DEFAULT_MAX_SESSIONS: usize = 32;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

impl ServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Http => "http",
            ServerKind::Stdio(_) => "stdio",
            ServerKind::Remote => "remote",
        }
    }

    /// True when the server listens on a port mcpd assigns.
    pub fn uses_port(self) -> bool {
        self == ServerKind::Http
    }

    /// The same kind of runner (a change of `sessions` limits is not a new kind).
    pub fn same_runner(self, other: ServerKind) -> bool {
        use StdioSessions::{PerClient, Shared};
        matches!(
            (self, other),
            (ServerKind::Http, ServerKind::Http)
                | (ServerKind::Remote, ServerKind::Remote)
                | (ServerKind::Stdio(Shared), ServerKind::Stdio(Shared))
                | (
                    ServerKind::Stdio(PerClient { .. }),
                    ServerKind::Stdio(PerClient { .. })
                )
        )
    }
}

/// One MCP server from a server file.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `[a-z0-9][a-z0-9_-]{0,62}`.
    pub name: String,
    pub kind: ServerKind,
    /// The file that defines it.
    pub file: PathBuf,
    /// `binary` as written.
    pub binary_name: String,
    /// `binary` resolved against `bin_dirs` then PATH, absolute.
    pub binary: PathBuf,
    pub package: Option<String>,
    /// Explicit port (inside the range, unique); `None` = allocated.
    pub port: Option<u16>,
    /// Public endpoint: `endpoint` as written, else `public_url + /api/v1/mcp/<name>/mcp`.
    pub endpoint: String,
    pub enabled: bool,
    pub display_in_web: bool,
    pub description: String,
    pub oauth: OAuthConfig,
    /// `audit.arguments`: audit records of this server's calls keep the arguments.
    pub audit_arguments: bool,
    /// As written; `{port}` and `{name}` expand at spawn.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub env_passthrough: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// The server's own MCP path, starting with `/` (default `/mcp`).
    pub path: String,
    pub restart: RestartConfig,
    pub health: HealthConfig,
    pub stop_timeout: Duration,
    /// Resource limits (the server's own, else `defaults.limits`).
    pub limits: Limits,
    /// The user the process runs as; `None`: mcpd's own.
    pub run_as: Option<RunAs>,
    /// What the process may not see or change (`sandbox:`).
    pub sandbox: Sandbox,
    /// `url`, `tls` and `upstream_auth` of a remote server (`kind` is `Remote`); else `None`.
    pub remote: Option<std::sync::Arc<crate::remote::RemoteTarget>>,
}

/// `sandbox:` of a server, done with a mount namespace of its own (no container runtime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// An empty tmpfs on `/tmp`, seen by the server alone.
    pub private_tmp: bool,
    /// Existing absolute paths, bind-mounted read-only.
    pub read_only_paths: Vec<PathBuf>,
}

impl Sandbox {
    pub fn is_empty(&self) -> bool {
        !self.private_tmp && self.read_only_paths.is_empty()
    }
}

impl ServerConfig {
    /// True when `other` differs in anything that changes how the process is spawned,
    /// so applying it needs a restart rather than an update in place.
    pub fn needs_restart_for(&self, other: &ServerConfig) -> bool {
        self.binary != other.binary
            || !self.kind.same_runner(other.kind)
            || self.args != other.args
            || self.env != other.env
            || self.env_passthrough != other.env_passthrough
            || self.working_dir != other.working_dir
            || self.path != other.path
            || self.port != other.port
            || self.run_as != other.run_as
            || self.sandbox != other.sandbox
            || self.remote.as_ref().map(|r| &r.url) != other.remote.as_ref().map(|r| &r.url)
    }
}

/// The servers of `services_dir`, and the errors of files that did not load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Services {
    pub servers: BTreeMap<String, ServerConfig>,
    /// Virtual servers (`aggregate:` entries): no process, served by mcpd itself.
    pub virtuals: BTreeMap<String, VirtualConfig>,
    /// Errors of the last load; a file listed here kept its previous servers (if any).
    pub errors: Vec<super::ConfigError>,
}

/// Where a virtual server's member names come from: one `aggregate` entry as written, with
/// its position (members are resolved once every file is read).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSelector {
    /// A server name, or a glob (`*`, `db-*`) over the names of enabled servers.
    pub pattern: crate::authz::ToolPattern,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl MemberSelector {
    /// True for a glob (matches many servers); false for one server's name.
    pub fn is_glob(&self) -> bool {
        self.pattern.as_str().contains(['*', '?'])
    }
}

/// One entry of a virtual server's `tools` filter: `pattern` or `!pattern`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolFilter {
    pub pattern: crate::authz::ToolPattern,
    pub negated: bool,
}

/// Whether a virtual server prefixes its members' tool names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMode {
    /// `<member><separator><tool>` (the default).
    Always,
    /// The member's own names; only with exactly one member.
    Never,
}

/// A virtual server: one MCP endpoint served by mcpd, offering the tools of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualConfig {
    pub name: String,
    pub file: PathBuf,
    pub endpoint: String,
    pub enabled: bool,
    pub display_in_web: bool,
    pub description: String,
    pub oauth: OAuthConfig,
    pub audit_arguments: bool,
    /// `aggregate` as written.
    pub aggregate: Vec<MemberSelector>,
    /// `exclude`: server names or globs left out.
    pub exclude: Vec<crate::authz::ToolPattern>,
    /// `tools`: a filter on exposed names (empty: every tool).
    pub tools: Vec<ToolFilter>,
    pub separator: String,
    pub prefix: PrefixMode,
    /// Line and column of `prefix`, for the check that needs the members.
    pub prefix_at: (Option<usize>, Option<usize>),
    /// The member servers, resolved from `aggregate` and `exclude` when the files were read.
    pub members: Vec<String>,
    /// Most requests one caller may have in flight at members (`max_calls_per_caller`).
    pub max_calls_per_caller: u32,
}

impl VirtualConfig {
    /// True when the exposed name passes the `tools` filter.
    pub fn exposes(&self, exposed: &str) -> bool {
        let mut positive = false;
        let mut matched = false;
        for filter in &self.tools {
            if filter.negated {
                if filter.pattern.matches(exposed) {
                    return false;
                }
            } else {
                positive = true;
                matched |= filter.pattern.matches(exposed);
            }
        }
        !positive || matched
    }
}
