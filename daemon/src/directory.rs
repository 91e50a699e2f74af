//! The live view of every configured server, shared by the supervisor (the only writer), the
//! gateway, the control socket and metrics (readers).
//!
//! Readers never take a lock: the name -> entry map is swapped whole when the configuration
//! changes, and each entry's config and status are swapped individually by the supervisor.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::config::{ConfigError, ServerConfig, VirtualConfig};

/// Lifecycle states of a server (DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    Disabled,
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Failed,
    /// A remote server (`url:`) that did not answer its last probes.
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

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool a server offers, as last listed by a probe. The schema and the rest are kept as the
/// JSON text the server sent, not as trees of maps: at 1000 servers a parsed schema cost ~10
/// times its text in memory, and nothing reads inside them (virtual servers pass them on,
/// the page and `mcpctl tools --schema` print them).
#[derive(Debug, Clone)]
pub struct ToolInfo {
    pub name: String,
    pub description: Option<String>,
    /// `inputSchema`: a JSON object.
    pub input_schema: Box<RawValue>,
    /// The rest of what the server said of the tool (`title`, `annotations`, `outputSchema`,
    /// ...) as one JSON object without `name`, `description` and `inputSchema`, passed on by
    /// virtual servers; `None` when there is nothing else.
    pub extra: Option<Box<RawValue>>,
}

impl PartialEq for ToolInfo {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.description == other.description
            && self.input_schema.get() == other.input_schema.get()
            && self.extra.as_deref().map(RawValue::get) == other.extra.as_deref().map(RawValue::get)
    }
}

impl ToolInfo {
    /// A tool with no description and no other fields; `input_schema` must be an object.
    pub fn new(name: &str, input_schema: &serde_json::Value) -> Self {
        ToolInfo {
            name: name.to_owned(),
            description: None,
            input_schema: serde_json::value::to_raw_value(input_schema)
                .expect("a JSON value serializes"),
            extra: None,
        }
    }

    /// The tool as a `tools/list` entry named `name`, written as JSON text.
    pub fn listed_as(&self, name: &str, out: &mut String) {
        out.push('{');
        if let Some(extra) = &self.extra {
            // `{...}` without its braces: the other fields, then a comma.
            let inner = extra.get().trim();
            let inner = inner[1..inner.len() - 1].trim();
            if !inner.is_empty() {
                out.push_str(inner);
                out.push(',');
            }
        }
        out.push_str("\"name\":");
        push_json_string(out, name);
        if let Some(description) = &self.description {
            out.push_str(",\"description\":");
            push_json_string(out, description);
        }
        out.push_str(",\"inputSchema\":");
        out.push_str(self.input_schema.get());
        out.push('}');
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).expect("a string serializes"));
}

/// What the supervisor last published about one server.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub state: ServerState,
    pub pid: Option<u32>,
    /// The port it runs (or will run) on, once assigned.
    pub port: Option<u16>,
    /// When `state` was entered.
    pub since: SystemTime,
    /// When the current process was spawned.
    pub started_at: Option<SystemTime>,
    /// Restarts since the daemon started (operator restarts included).
    pub restarts: u32,
    /// How the last process ended, e.g. "exit code 1" or "killed by SIGKILL".
    pub last_exit: Option<String>,
    /// The last problem, e.g. "port 5010 is in use by another process".
    pub last_error: Option<String>,
    pub tools: Arc<[ToolInfo]>,
    /// When `tools` (and `offers`) were last listed.
    pub tools_at: Option<SystemTime>,
    /// Since when the probes fail (cleared by the next probe that passes): the cached lists
    /// may be stale.
    pub probe_failing_since: Option<SystemTime>,
    /// Prompts and resources, as last listed (with the tools).
    pub offers: Arc<crate::offers::Offers>,
    /// How long the last readiness or liveness probe took (failed ones included).
    pub last_probe: Option<Duration>,
}

impl ServerStatus {
    pub fn new(state: ServerState) -> Self {
        ServerStatus {
            state,
            pid: None,
            port: None,
            since: SystemTime::now(),
            started_at: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            tools: Arc::from(Vec::new()),
            tools_at: None,
            probe_failing_since: None,
            offers: Arc::default(),
            last_probe: None,
        }
    }
}

/// One server: its current config and its current status, each swapped atomically.
#[derive(Debug)]
pub struct ServerEntry {
    pub config: ArcSwap<ServerConfig>,
    pub status: ArcSwap<ServerStatus>,
    /// Woken by a reader that found the server's port refusing connections while the status
    /// said running: the server's liveness loop probes at the next grid point instead of
    /// waiting for its interval.
    pub check_now: Arc<Notify>,
    /// Set (with `check_now` woken) when the server said its lists changed: its next
    /// liveness probe lists them.
    pub relist: Arc<std::sync::atomic::AtomicBool>,
    /// Resource usage, sampled by the supervisor on its usage grid.
    pub usage: ArcSwap<ServerUsage>,
    /// How a stdio server is served (set by its supervisor task); `None` for other kinds.
    pub stdio: arc_swap::ArcSwapOption<crate::stdio::Target>,
    /// How long the last probe took, in nanoseconds plus one (0: none yet), written by the
    /// probe loop itself: a liveness probe that changes nothing publishes no new status.
    probe_took: std::sync::atomic::AtomicU64,
}

/// A server's resource usage at the last sample: from its cgroup, else summed over its
/// process group from /proc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerUsage {
    pub memory_bytes: u64,
    /// Highest memory use of the current cgroup (none without a cgroup).
    pub memory_peak_bytes: Option<u64>,
    pub cpu_seconds: f64,
    /// Share of one CPU between the last two samples, in percent.
    pub cpu_percent: Option<f64>,
    pub tasks: u64,
    /// Processes the kernel's OOM killer killed, since the daemon started.
    pub oom_kills: u64,
    /// True when read from a cgroup.
    pub from_cgroup: bool,
}

impl ServerEntry {
    /// Notes how long the last probe took.
    pub fn note_probe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        self.probe_took
            .store(nanos + 1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long the last probe took: as noted, else as published (a remote server's).
    pub fn last_probe(&self) -> Option<Duration> {
        match self.probe_took.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.status.load().last_probe,
            nanos => Some(Duration::from_nanos(nanos - 1)),
        }
    }

    pub fn new(config: ServerConfig, status: ServerStatus) -> Self {
        ServerEntry {
            config: ArcSwap::from_pointee(config),
            status: ArcSwap::from_pointee(status),
            check_now: Arc::default(),
            relist: Arc::default(),
            usage: ArcSwap::default(),
            probe_took: std::sync::atomic::AtomicU64::new(0),
            stdio: arc_swap::ArcSwapOption::empty(),
        }
    }
}

/// Every configured server by name, plus the errors of the last configuration load.
#[derive(Debug)]
pub struct Directory {
    servers: ArcSwap<BTreeMap<String, Arc<ServerEntry>>>,
    config_errors: ArcSwap<Vec<ConfigError>>,
    /// Virtual servers by name: no process, no status of their own (see [`Directory::virtual_state`]).
    virtuals: ArcSwap<BTreeMap<String, Arc<VirtualConfig>>>,
    /// Marked on every change of a server's state, of the set of servers, or of the errors:
    /// what the counts of [`Directory::subscribe`]rs (systemd's `STATUS=`) follow.
    changes: tokio::sync::watch::Sender<()>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            servers: ArcSwap::default(),
            config_errors: ArcSwap::default(),
            virtuals: ArcSwap::default(),
            changes: tokio::sync::watch::Sender::new(()),
        }
    }
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Says that a server changed state (supervisor only).
    pub fn state_changed(&self) {
        self.changes.send_replace(());
    }

    /// A receiver woken after each change of a state, of the set of servers or of the errors.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// The entry of `name`, if configured. Lock-free; called on every gateway request.
    pub fn get(&self, name: &str) -> Option<Arc<ServerEntry>> {
        self.servers.load().get(name).cloned()
    }

    /// A consistent snapshot of all entries, ordered by name.
    pub fn all(&self) -> Arc<BTreeMap<String, Arc<ServerEntry>>> {
        self.servers.load_full()
    }

    /// Replaces the whole map (supervisor only, on configuration changes).
    pub fn replace(&self, servers: BTreeMap<String, Arc<ServerEntry>>) {
        self.servers.store(Arc::new(servers));
        self.state_changed();
    }

    pub fn config_errors(&self) -> Arc<Vec<ConfigError>> {
        self.config_errors.load_full()
    }

    pub fn set_config_errors(&self, errors: Vec<ConfigError>) {
        self.config_errors.store(Arc::new(errors));
        self.state_changed();
    }

    /// The virtual server `name`, if configured. Lock-free.
    pub fn get_virtual(&self, name: &str) -> Option<Arc<VirtualConfig>> {
        self.virtuals.load().get(name).cloned()
    }

    /// Every virtual server, ordered by name.
    pub fn virtuals(&self) -> Arc<BTreeMap<String, Arc<VirtualConfig>>> {
        self.virtuals.load_full()
    }

    /// Replaces the virtual servers (supervisor only, with the servers they aggregate).
    pub fn replace_virtuals(&self, virtuals: &BTreeMap<String, VirtualConfig>) {
        let unchanged = {
            let current = self.virtuals.load();
            current.len() == virtuals.len()
                && current
                    .iter()
                    .zip(virtuals)
                    .all(|((_, a), (_, b))| a.as_ref() == b)
        };
        if unchanged {
            return;
        }
        let map = virtuals
            .iter()
            .map(|(name, config)| (name.clone(), Arc::new(config.clone())))
            .collect();
        self.virtuals.store(Arc::new(map));
        self.state_changed();
    }

    /// A virtual server's state, derived from its members: `disabled` when it is, `running`
    /// while at least one member runs, else `starting` while one starts, else `stopped`.
    pub fn virtual_state(&self, config: &VirtualConfig) -> ServerState {
        if !config.enabled {
            return ServerState::Disabled;
        }
        let servers = self.servers.load();
        let states: Vec<ServerState> = config
            .members
            .iter()
            .filter_map(|member| servers.get(member))
            .map(|entry| entry.status.load().state)
            .collect();
        if states.contains(&ServerState::Running) {
            ServerState::Running
        } else if states
            .iter()
            .any(|s| matches!(s, ServerState::Starting | ServerState::Backoff))
        {
            ServerState::Starting
        } else {
            ServerState::Stopped
        }
    }
}
