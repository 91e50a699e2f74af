//! The daemon's top level: wires the supervisor, gateway, control socket, reloads, metrics
//! and systemd notifications together, and shuts them down in order.
//!
//! The caller loads the configuration and binds the sockets (`Listeners::bind`), so a test
//! can run a whole daemon in-process on `127.0.0.1:0` and a temp socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use mcpd_protocol::RESTART_NOTICE;

use crate::audit::{self, AuditLog};
use crate::config::{self, Config, ConfigError, DaemonConfig};
use crate::control::{self, ControlContext, ControlListener, ReloadOutcome, Reloader};
use crate::gateway::{self, Authenticator, GatewayContext, GatewayOptions};
use crate::mcp_client::McpClient;
use crate::metrics::Metrics;
use crate::supervisor::{PlanAction, Supervisor};
use crate::systemd::Notifier;
use crate::watch;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} for the gateway: {source}")]
    Gateway {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] control::BindError),
    #[error("cannot load the auth keys: {0}")]
    Keys(#[from] gateway::KeyError),
    #[error("cannot start the supervisor: {0}")]
    Supervisor(#[from] crate::supervisor::SupervisorError),
    #[error(transparent)]
    Kernel(#[from] crate::supervisor::kernel::Unsupported),
}

/// The sockets the daemon serves, bound before anything starts.
pub struct Listeners {
    pub gateway: TcpListener,
    pub control: ControlListener,
}

impl Listeners {
    /// Binds `gateway.listen` and `control.socket` as configured.
    pub async fn bind(daemon: &DaemonConfig) -> Result<Listeners, RunError> {
        let addr = daemon.gateway.listen;
        let gateway =
            gateway::bind_listener(addr).map_err(|source| RunError::Gateway { addr, source })?;
        let control = ControlListener::bind(&daemon.control)?;
        Ok(Listeners { gateway, control })
    }
}

/// Logs what is allowed but worth a second look in the server files (see `mcpd check`).
fn warn_about(services: &config::Services) {
    for server in services.servers.values() {
        if let Some(warning) = config::oauth_warning(&server.name, &server.oauth) {
            tracing::warn!("{warning}");
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled, then stops every server and returns.
///
/// Reloads come from changes in `services_dir`, SIGHUP and `mcpctl reload`; they all take the
/// same path (`DaemonReloader`).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let notifier = Notifier;
    let Config { daemon, services } = config;
    warn_about(&services);
    crate::supervisor::kernel::check()?;
    let supervisor = Supervisor::start(&daemon, services)?;
    let directory = supervisor.directory().clone();
    let metrics = Arc::new(Metrics::new(directory.clone()));
    let auth = Authenticator::load(&daemon.auth)?;
    // One audit log for the gateway and `mcpctl call` (none with `logs.audit: false`); `logs`
    // needs a restart, and so does it.
    let audit = daemon.logs.audit.then(|| {
        AuditLog::with_options(
            &daemon.logs,
            metrics.audit_counters(),
            audit::Options::default(),
        )
    });
    let gateway_ctx = GatewayContext::from_parts(
        directory.clone(),
        daemon.clone(),
        auth,
        GatewayOptions::default(),
        Some(metrics.clone()),
    );
    let gateway_ctx = match &audit {
        Some(audit) => gateway_ctx.with_audit(audit.clone()),
        None => gateway_ctx,
    };
    let shared_config = Arc::new(ArcSwap::from_pointee(daemon.clone()));
    let reloader = Arc::new(DaemonReloader {
        config_path: daemon.source.clone(),
        supervisor: supervisor.clone(),
        config: shared_config.clone(),
        gateway: gateway_ctx.clone(),
        metrics: metrics.clone(),
        notifier,
        serial: tokio::sync::Mutex::new(()),
    });

    let gateway_stop = CancellationToken::new();
    let gateway_task = tokio::spawn(gateway::serve_workers(
        listeners.gateway,
        gateway_ctx,
        gateway_stop.clone(),
        gateway_workers(),
    ));

    let mut control_ctx =
        ControlContext::new(supervisor.clone(), shared_config.clone(), McpClient::new());
    control_ctx.reloader = reloader.clone();
    control_ctx.audit = audit.clone();
    let control_stop = CancellationToken::new();
    let control_task = tokio::spawn(control::serve(
        listeners.control,
        control_ctx,
        control_stop.clone(),
    ));

    // File changes and SIGHUP ask for a reload; the channel holds one pending request.
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(1);
    let _watch = match watch::watch_services(&daemon.services_dir, reload_tx.clone()) {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(%error, "live reload on file changes is off; use SIGHUP or `mcpctl reload`");
            None
        }
    };
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);

    notifier.ready(&status_line(&supervisor));
    // STATUS= follows the servers' states from here on (the reload path sends its own too).
    let status_task = tokio::spawn(crate::systemd::follow_status(
        directory.clone(),
        crate::systemd::STATUS_INTERVAL,
        move |line| notifier.status(line),
    ));
    tracing::info!(
        gateway = %daemon.gateway.listen,
        socket = %daemon.control.socket.display(),
        servers = directory.all().len(),
        "mcpd ready"
    );

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = reload_rx.recv() => {
                if let Err(error) = reloader.reload_now(false).await {
                    tracing::error!(%error, "reload failed");
                }
            }
            Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading");
                let _ = reload_tx.try_send(());
            }
            _ = async { match watchdog.as_mut() { Some(w) => w.tick().await, None => std::future::pending().await } } => {
                notifier.watchdog();
            }
        }
    }

    status_task.abort();
    notifier.stopping();
    tracing::info!("shutting down: stopping servers");
    gateway_stop.cancel();
    supervisor.shutdown().await;
    control_stop.cancel();
    let drain = Duration::from_secs(12);
    if tokio::time::timeout(drain, async {
        let _ = gateway_task.await;
        let _ = control_task.await;
    })
    .await
    .is_err()
    {
        tracing::warn!("gateway or control socket did not finish draining in time");
    }
    if let Some(audit) = &audit {
        // Returns as soon as the writer is done; the bound is for a starved or stuck disk.
        audit.close(Duration::from_secs(10)).await;
    }
    tracing::info!("mcpd stopped");
    Ok(())
}

/// Gateway worker threads: one per CPU the daemon may run on (its affinity and cgroup quota
/// count), at most 16.
fn gateway_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get().min(16))
}

fn status_line(supervisor: &Supervisor) -> String {
    crate::systemd::directory_status(supervisor.directory())
}

/// The one reload path: re-reads `mcpd.yaml` and every server file, applies what can change
/// live, and reports what needs a daemon restart.
pub struct DaemonReloader {
    config_path: Option<PathBuf>,
    supervisor: Supervisor,
    config: Arc<ArcSwap<DaemonConfig>>,
    gateway: GatewayContext,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// One reload at a time.
    serial: tokio::sync::Mutex<()>,
}

impl DaemonReloader {
    async fn reload_now(&self, dry_run: bool) -> Result<ReloadOutcome, String> {
        let _serial = self.serial.lock().await;
        if !dry_run {
            self.notifier.reloading();
        }
        let outcome = self.reload_locked(dry_run).await;
        if !dry_run {
            self.notifier.ready(&status_line(&self.supervisor));
            self.metrics.reloads.inc();
            let failed = match &outcome {
                Ok(outcome) => outcome.config_errors.iter().any(|e| !is_restart_notice(e)),
                Err(_) => true,
            };
            if failed {
                self.metrics.reload_failures.inc();
            }
        }
        outcome
    }

    async fn reload_locked(&self, dry_run: bool) -> Result<ReloadOutcome, String> {
        let old = self.config.load_full();
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut daemon = old.as_ref().clone();
        if let Some(path) = self.config_path.clone() {
            let loaded = tokio::task::spawn_blocking(move || config::load_daemon(Some(&path)))
                .await
                .map_err(|e| format!("reading the daemon file failed: {e}"))?;
            match loaded {
                Ok(new) => {
                    let (live, pending) = apply_live_settings(&old, new);
                    daemon = live;
                    errors.extend(restart_notice(&daemon, &pending));
                }
                Err(daemon_errors) => errors.extend(daemon_errors),
            }
        }
        let previous = self.supervisor.current_services();
        let for_load = daemon.clone();
        let services =
            tokio::task::spawn_blocking(move || config::load_services(&for_load, Some(&previous)))
                .await
                .map_err(|e| format!("reading the server files failed: {e}"))?;
        errors.extend(services.errors.iter().cloned());
        if !dry_run {
            warn_about(&services);
        }
        for error in errors.iter().filter(|e| !is_restart_notice(e)) {
            // Quotes keys and values from files that packages may install.
            let error = mcpd_protocol::terminal::Escaped(&error.to_string()).to_string();
            tracing::error!("configuration error (previous settings kept): {error}");
        }

        if dry_run {
            let plan = self.supervisor.plan(&services);
            return Ok(ReloadOutcome {
                plan,
                config_errors: errors,
            });
        }
        // The gateway reloads every time, not only when the daemon file changed: a key file
        // rotated in place (same path, new secret) must take effect too.
        if let Err(error) = self.gateway.reload(daemon.clone()) {
            let message = format!("auth keys not reloaded, previous keys kept: {error}");
            tracing::error!("{message}");
            errors.push(ConfigError {
                file: daemon.source.clone().unwrap_or_default(),
                line: None,
                column: None,
                message,
                hint: Some("fix the key files named under auth.keys, then reload again".into()),
            });
        }
        if daemon != *old {
            self.config.store(Arc::new(daemon));
        }
        let plan = self.supervisor.apply(services).await;
        self.supervisor
            .directory()
            .set_config_errors(errors.clone());
        for change in plan
            .changes
            .iter()
            .filter(|c| c.action != PlanAction::Unchanged)
        {
            tracing::info!(server = %change.server, action = ?change.action, reason = %change.reason, "reload");
        }
        Ok(ReloadOutcome {
            plan,
            config_errors: errors,
        })
    }
}

impl Reloader for DaemonReloader {
    fn reload(&self, dry_run: bool) -> BoxFuture<'_, Result<ReloadOutcome, String>> {
        Box::pin(self.reload_now(dry_run))
    }
}

/// `new` with the settings that cannot change while running taken from `old`, and the names
/// of those that differ (they take effect at the next start of the daemon).
fn apply_live_settings(
    old: &DaemonConfig,
    mut new: DaemonConfig,
) -> (DaemonConfig, Vec<&'static str>) {
    let mut restart_needed = Vec::new();
    if new.gateway.listen != old.gateway.listen {
        restart_needed.push("gateway.listen");
        new.gateway.listen = old.gateway.listen;
    }
    if new.gateway.limits != old.gateway.limits {
        restart_needed.push("gateway timeouts and caps");
        new.gateway.limits = old.gateway.limits.clone();
    }
    if new.control != old.control {
        restart_needed.push("control");
        new.control = old.control.clone();
    }
    if new.state_dir != old.state_dir {
        restart_needed.push("state_dir");
        new.state_dir = old.state_dir.clone();
    }
    if new.logs != old.logs {
        restart_needed.push("logs");
        new.logs = old.logs.clone();
    }
    if new.port_range != old.port_range {
        restart_needed.push("port_range");
        new.port_range = old.port_range;
    }
    if new.cgroup != old.cgroup {
        restart_needed.push("cgroup");
        new.cgroup = old.cgroup.clone();
    }
    if new.services_dir != old.services_dir {
        restart_needed.push("services_dir");
        new.services_dir = old.services_dir.clone();
    }
    (new, restart_needed)
}

/// The start of the message of a [`restart_notice`].
/// A notice, shown like a configuration error (`mcpctl reload`, `mcpctl status`, the log),
/// that settings in the daemon file differ from the running ones until the daemon restarts.
fn restart_notice(daemon: &DaemonConfig, pending: &[&str]) -> Option<ConfigError> {
    if pending.is_empty() {
        return None;
    }
    let settings = pending.join(", ");
    tracing::warn!(settings = %settings, "{RESTART_NOTICE}; the running values are kept");
    Some(ConfigError {
        file: daemon.source.clone().unwrap_or_default(),
        line: None,
        column: None,
        message: format!("{RESTART_NOTICE}: {settings} (the running values are kept)"),
        hint: Some("run `systemctl restart mcpd` to apply them, or revert the change".into()),
    })
}

fn is_restart_notice(error: &ConfigError) -> bool {
    error.message.starts_with(RESTART_NOTICE)
}
