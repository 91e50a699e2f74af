//! What the request handlers work with: the supervisor, the current daemon configuration, the
//! MCP client, the reload hook, the audit log and the connection limits.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use crate::audit::AuditLog;
use crate::config::{self, ConfigError, DaemonConfig};
use crate::mcp_client::McpClient;
use crate::supervisor::{ReloadPlan, Supervisor};

/// What a reload did (or would do, on a dry run).
#[derive(Debug, Clone, Default)]
pub struct ReloadOutcome {
    pub plan: ReloadPlan,
    /// Errors of the files read; those files keep their previous servers.
    pub config_errors: Vec<ConfigError>,
}

/// The hook `mcpctl reload` calls. The daemon's reloader implements it so a reload from the
/// socket, from SIGHUP and from a file change all take the same path.
pub trait Reloader: Send + Sync {
    /// Re-reads the server files and applies them, or only plans when `dry_run`.
    fn reload(&self, dry_run: bool) -> BoxFuture<'_, Result<ReloadOutcome, String>>;
}

/// A reloader that re-reads `services_dir` and hands the result to the supervisor.
pub struct ConfigReloader {
    pub supervisor: Supervisor,
    pub config: Arc<ArcSwap<DaemonConfig>>,
}

impl Reloader for ConfigReloader {
    fn reload(&self, dry_run: bool) -> BoxFuture<'_, Result<ReloadOutcome, String>> {
        Box::pin(async move {
            let daemon = self.config.load_full();
            let previous = self.supervisor.current_services();
            let services = tokio::task::spawn_blocking(move || {
                config::load_services(&daemon, Some(&previous))
            })
            .await
            .map_err(|e| format!("reading the server files failed: {e}"))?;
            let config_errors = services.errors.clone();
            let plan = if dry_run {
                self.supervisor.plan(&services)
            } else {
                self.supervisor.apply(services).await
            };
            Ok(ReloadOutcome {
                plan,
                config_errors,
            })
        })
    }
}

/// Timeouts and limits of the control server.
#[derive(Debug, Clone)]
pub struct ControlLimits {
    /// How long a new connection may take to send `Hello`.
    pub handshake_timeout: Duration,
    /// How long a connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// How long writing one reply may take before the client is considered stuck.
    pub write_timeout: Duration,
    /// Connections served at once; more are answered `Busy` and closed.
    pub max_connections: usize,
    /// How long shutdown waits for open connections to finish.
    pub drain_timeout: Duration,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            max_connections: 512,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything request handlers need. Cheap to clone.
#[derive(Clone)]
pub struct ControlContext {
    pub supervisor: Supervisor,
    /// The daemon configuration; the reloader swaps it.
    pub config: Arc<ArcSwap<DaemonConfig>>,
    pub mcp: McpClient,
    pub reloader: Arc<dyn Reloader>,
    /// Reported in `Welcome`.
    pub daemon_version: String,
    pub limits: ControlLimits,
    /// The daemon's one audit log: `mcpctl call` records into it, `mcpctl audit` reads it
    /// (`None`: calls are not recorded and `audit` is refused).
    pub audit: Option<Arc<AuditLog>>,
}

impl ControlContext {
    /// A context whose reload re-reads the server files with [`ConfigReloader`].
    pub fn new(supervisor: Supervisor, config: Arc<ArcSwap<DaemonConfig>>, mcp: McpClient) -> Self {
        let reloader = Arc::new(ConfigReloader {
            supervisor: supervisor.clone(),
            config: config.clone(),
        });
        ControlContext {
            supervisor,
            config,
            mcp,
            reloader,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            limits: ControlLimits::default(),
            audit: None,
        }
    }
}
