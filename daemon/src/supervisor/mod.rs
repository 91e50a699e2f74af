//! Supervision: keeps every enabled server running, probes it, restarts it with backoff,
//! stops it, and keeps its logs.
//!
//! This file is the public handle the rest of the daemon uses. The pieces behind it: the pure
//! lifecycle state machine, spawning, probes, backoff and log capture.

mod boxes;
mod cgroup;
pub(crate) mod child;
mod confine;
mod fd_slots;
pub(crate) mod kernel;
mod lifecycle;
mod log_files;
mod log_mode;
pub(crate) mod logs;
mod plan;
mod probe;
mod proc_usage;
pub mod reaper;
mod remote;
mod runner;
mod server;
mod spawn;
#[cfg(test)]
mod tests;
mod vfork;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use lifecycle::{Action, Event, Exit, Jitter, Machine, Settings, random_jitter};
pub use logs::LogFiles;
pub use probe::{McpProber, Probe, ProbeFuture, Prober, TcpProber};
pub use spawn::SpawnSpec;

use crate::config::{DaemonConfig, PortRange, ServerConfig, ServerKind, Services};
use crate::directory::{Directory, ServerEntry, ServerState, ServerStatus};
use crate::ports::PortAllocator;
use logs::LogHub;
use server::{Command, ServerTask};
use spawn::Spawner;

/// How long a reload waits for server tasks to take their new configuration.
const UPDATE_APPLIED_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no server named {0:?}")]
    UnknownServer(String),
    #[error("server {name:?} is disabled in {file}; set enabled: true to start it")]
    Disabled { name: String, file: String },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Other(String),
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// The daemon's own note about the server: a flag of the line, not text a server could
    /// print.
    Daemon,
}

/// One line a server printed.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: SystemTime,
    pub stream: LogStream,
    pub text: String,
}

/// What applying a configuration does to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAction {
    Start,
    Stop,
    Restart,
    Update,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub server: String,
    pub action: PlanAction,
    /// Why, e.g. "args changed" or "new in echo.yaml".
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    pub changes: Vec<PlannedChange>,
}

/// How the supervisor probes and paces itself; `Default` is what the daemon uses.
#[derive(Clone)]
pub struct SupervisorOptions {
    /// Readiness and liveness probe (default: the light MCP client of `probe_client`).
    pub prober: Arc<dyn Prober>,
    /// Backoff jitter source, values in `[0, 1)` (default: random).
    pub jitter: Jitter,
    /// How long a spawn waits for the server's port to be free before calling it taken.
    pub port_wait: Duration,
    /// First retry interval of the readiness probe (it doubles up to 100 ms). Short: most
    /// servers listen within a few milliseconds of starting, and a refused connection costs
    /// the daemon microseconds.
    pub probe_retry: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            prober: Arc::new(McpProber),
            jitter: random_jitter(),
            port_wait: Duration::from_secs(2),
            probe_retry: Duration::from_millis(10),
        }
    }
}

/// What every server task shares.
pub(crate) struct Shared {
    spawner: Spawner,
    boxes: Arc<boxes::Boxes>,
    /// The same as `Inner::directory`: a server task says there when its state changes.
    directory: Arc<Directory>,
    ports: Mutex<PortAllocator>,
    prober: Arc<dyn Prober>,
    jitter: Jitter,
    options: SupervisorOptions,
    range: PortRange,
}

struct ServerHandle {
    commands: mpsc::UnboundedSender<Command>,
    logs: Arc<LogHub>,
    task: JoinHandle<()>,
}

struct Inner {
    directory: Arc<Directory>,
    shared: Arc<Shared>,
    servers: Mutex<BTreeMap<String, ServerHandle>>,
    log_files: Option<LogFiles>,
    buffer_lines: usize,
    /// Serializes `apply` and `shutdown`.
    reconfigure: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
}

/// Handle to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Starts supervising every enabled server of `services`. Must be called inside a tokio
    /// runtime.
    pub fn start(daemon: &DaemonConfig, services: Services) -> Result<Supervisor, SupervisorError> {
        Self::start_with(daemon, services, SupervisorOptions::default())
    }

    /// Like [`Supervisor::start`], with explicit options.
    pub fn start_with(
        daemon: &DaemonConfig,
        services: Services,
        options: SupervisorOptions,
    ) -> Result<Supervisor, SupervisorError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            SupervisorError::Other("the supervisor must start inside a tokio runtime".into())
        })?;
        // Before the spawner: mcpd may move itself (and so the reaper it forks) into a leaf.
        let boxes = Arc::new(boxes::Boxes::new(&daemon.cgroup));
        boxes.warn_unenforced(services.servers.values());
        let spawner = Spawner::new(runtime).map_err(|err| {
            SupervisorError::Other(format!("cannot start the spawner thread: {err}"))
        })?;
        let log_files = match LogFiles::new(&daemon.logs) {
            Ok(files) => Some(files),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the log writer; server logs are kept in memory only");
                None
            }
        };
        let mut ports = PortAllocator::load(&daemon.state_dir, daemon.port_range);
        for name in ports.assign(&services.servers) {
            tracing::error!(server = %name, range = %daemon.port_range, "no free port left for the server");
        }
        ports.persist();
        let directory = Arc::new(Directory::new());
        tokio::spawn(boxes::sample_loop(
            Arc::downgrade(&boxes),
            Arc::downgrade(&directory),
        ));
        let shared = Arc::new(Shared {
            spawner,
            boxes,
            directory: directory.clone(),
            ports: Mutex::new(ports),
            prober: options.prober.clone(),
            jitter: options.jitter.clone(),
            options,
            range: daemon.port_range,
        });
        let supervisor = Supervisor {
            inner: Arc::new(Inner {
                directory,
                shared,
                servers: Mutex::new(BTreeMap::new()),
                log_files,
                buffer_lines: daemon.logs.buffer_lines,
                reconfigure: tokio::sync::Mutex::new(()),
                shutting_down: AtomicBool::new(false),
            }),
        };
        supervisor
            .inner
            .directory
            .set_config_errors(services.errors.clone());
        let mut entries = BTreeMap::new();
        let mut servers = supervisor.lock_servers();
        for (name, config) in services.servers {
            let (entry, handle) = supervisor.launch(config);
            entries.insert(name.clone(), entry);
            servers.insert(name, handle);
        }
        drop(servers);
        supervisor.inner.directory.replace(entries);
        // Virtual servers run nothing: published for the gateway, never supervised.
        supervisor
            .inner
            .directory
            .replace_virtuals(&services.virtuals);
        Ok(supervisor)
    }

    fn lock_servers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServerHandle>> {
        self.inner.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn port_of(&self, name: &str) -> Option<u16> {
        let ports = self
            .inner
            .shared
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        ports.port(name)
    }

    /// Creates the entry and task of a new server.
    fn launch(&self, config: ServerConfig) -> (Arc<ServerEntry>, ServerHandle) {
        let port = self.port_of(&config.name);
        let state = if config.enabled {
            ServerState::Stopped
        } else {
            ServerState::Disabled
        };
        let mut status = ServerStatus::new(state);
        status.port = port;
        let logs = Arc::new(LogHub::new(
            &config.name,
            self.inner.buffer_lines,
            self.inner.log_files.clone(),
        ));
        let entry = Arc::new(ServerEntry::new(config, status));
        let shared = self.inner.shared.clone();
        let (commands, task) = if entry.config.load().kind == ServerKind::Remote {
            remote::RemoteTask::spawn(shared, entry.clone(), logs.clone())
        } else {
            ServerTask::spawn(shared, entry.clone(), logs.clone(), port)
        };
        (
            entry,
            ServerHandle {
                commands,
                logs,
                task,
            },
        )
    }

    /// The live view the gateway and control socket read.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.inner.directory
    }

    /// The servers supervised now, with the errors of the last load: the `previous` a reload
    /// passes to `config::load_services` so a failing file keeps its servers.
    pub fn current_services(&self) -> Services {
        let directory = &self.inner.directory;
        Services {
            servers: directory
                .all()
                .iter()
                .map(|(name, entry)| (name.clone(), entry.config.load().as_ref().clone()))
                .collect(),
            virtuals: directory
                .virtuals()
                .iter()
                .map(|(name, config)| (name.clone(), config.as_ref().clone()))
                .collect(),
            errors: directory.config_errors().as_ref().clone(),
        }
    }

    /// Sends a request that answers when done, and waits for the answer.
    async fn request(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<()>) -> Command,
        refuse_disabled: bool,
    ) -> Result<(), SupervisorError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(SupervisorError::ShuttingDown);
        }
        let entry = self
            .inner
            .directory
            .get(name)
            .ok_or_else(|| SupervisorError::UnknownServer(name.to_owned()))?;
        if refuse_disabled {
            let config = entry.config.load();
            if !config.enabled {
                return Err(SupervisorError::Disabled {
                    name: name.to_owned(),
                    file: config.file.display().to_string(),
                });
            }
        }
        let (done, answer) = oneshot::channel();
        let sent = match self.lock_servers().get(name) {
            Some(handle) => handle.commands.send(make(done)).is_ok(),
            None => return Err(SupervisorError::UnknownServer(name.to_owned())),
        };
        if !sent || answer.await.is_err() {
            return Err(SupervisorError::ShuttingDown);
        }
        Ok(())
    }

    /// Starts a stopped, failed or disabled-by-operator server; returns once it is `starting`.
    pub async fn start_server(&self, name: &str) -> Result<(), SupervisorError> {
        self.request(name, Command::Start, true).await
    }

    /// Stops a server and keeps it down until started again; returns once it is `stopped`.
    pub async fn stop_server(&self, name: &str) -> Result<(), SupervisorError> {
        self.request(name, Command::Stop, false).await
    }

    /// Stops then starts a server (also revives a `failed` one); returns once it is `starting`.
    pub async fn restart_server(&self, name: &str) -> Result<(), SupervisorError> {
        self.request(name, Command::Restart, true).await
    }

    fn hub(&self, name: &str) -> Result<Arc<LogHub>, SupervisorError> {
        self.lock_servers()
            .get(name)
            .map(|h| h.logs.clone())
            .ok_or_else(|| SupervisorError::UnknownServer(name.to_owned()))
    }

    /// The last `lines` lines the server printed, oldest first.
    pub fn logs(&self, name: &str, lines: usize) -> Result<Vec<LogLine>, SupervisorError> {
        Ok(self.hub(name)?.tail(lines))
    }

    /// Every line the server prints from now on.
    pub fn follow_logs(&self, name: &str) -> Result<broadcast::Receiver<LogLine>, SupervisorError> {
        Ok(self.hub(name)?.subscribe())
    }

    /// What `apply(services)` would do, without doing it.
    pub fn plan(&self, services: &Services) -> ReloadPlan {
        let mut ports = self
            .inner
            .shared
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        ports.assign(&services.servers);
        self.plan_with(services, &ports.assignments())
    }

    fn plan_with(&self, services: &Services, new_ports: &BTreeMap<String, u16>) -> ReloadPlan {
        let current = self
            .inner
            .directory
            .all()
            .iter()
            .map(|(name, entry)| {
                let status = entry.status.load();
                let current = plan::Current {
                    config: (**entry.config.load()).clone(),
                    state: status.state,
                    port: status.port,
                };
                (name.clone(), current)
            })
            .collect();
        plan::plan(&current, &services.servers, new_ports)
    }

    /// Applies a new set of servers: start, stop, restart or update each as `plan` says.
    pub async fn apply(&self, services: Services) -> ReloadPlan {
        let _serial = self.inner.reconfigure.lock().await;
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return ReloadPlan::default();
        }
        let new_ports = {
            let mut ports = self
                .inner
                .shared
                .ports
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for name in ports.assign(&services.servers) {
                tracing::error!(server = %name, "no free port left for the server");
            }
            ports.persist();
            ports.assignments()
        };
        let plan = self.plan_with(&services, &new_ports);
        self.inner
            .directory
            .set_config_errors(services.errors.clone());
        let mut entries = (*self.inner.directory.all()).clone();
        let mut removed = Vec::new();
        let mut updated = Vec::new();
        {
            let mut servers = self.lock_servers();
            for change in &plan.changes {
                let name = &change.server;
                tracing::info!(server = %name, action = ?change.action, reason = %change.reason, "applying configuration");
                let Some(config) = services.servers.get(name) else {
                    entries.remove(name);
                    if let Some(handle) = servers.remove(name) {
                        removed.push(handle);
                    }
                    continue;
                };
                let remote =
                    |entry: &Arc<ServerEntry>| entry.config.load().kind == ServerKind::Remote;
                if entries
                    .get(name)
                    .is_some_and(|entry| remote(entry) != (config.kind == ServerKind::Remote))
                    && let Some(handle) = servers.remove(name)
                {
                    // Between a process and a URL: a task of the other kind.
                    removed.push(handle);
                }
                match (change.action, servers.get(name)) {
                    (PlanAction::Unchanged, _) => {}
                    (_, Some(handle)) => {
                        let (applied, done) = oneshot::channel();
                        let _ = handle.commands.send(Command::Update {
                            config: Box::new(config.clone()),
                            port: new_ports.get(name).copied(),
                            restart: change.action == PlanAction::Restart,
                            applied,
                        });
                        updated.push(done);
                    }
                    (_, None) => {
                        let (entry, handle) = self.launch(config.clone());
                        entries.insert(name.clone(), entry);
                        servers.insert(name.clone(), handle);
                    }
                }
            }
        }
        self.inner.directory.replace(entries);
        self.inner.directory.replace_virtuals(&services.virtuals);
        // A reload answers once what it changed can be read back (`mcpctl list` right after
        // `mcpctl reload`); a server task handles its commands at once, so this is short.
        let _ =
            tokio::time::timeout(UPDATE_APPLIED_WITHIN, futures::future::join_all(updated)).await;
        futures::future::join_all(removed.into_iter().map(stop_for_good)).await;
        plan
    }

    /// Stops every server in parallel and returns when all are gone.
    pub async fn shutdown(&self) {
        let _serial = self.inner.reconfigure.lock().await;
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<ServerHandle> = std::mem::take(&mut *self.lock_servers())
            .into_values()
            .collect();
        futures::future::join_all(handles.into_iter().map(stop_for_good)).await;
        if let Some(files) = &self.inner.log_files {
            files.flush(Duration::from_secs(2)).await;
        }
    }
}

/// Stops a server's process and ends its task.
async fn stop_for_good(handle: ServerHandle) {
    let (done, answer) = oneshot::channel();
    if handle.commands.send(Command::Shutdown(done)).is_ok() {
        let _ = answer.await;
    }
    let _ = handle.task.await;
}
