//! Supervision: keeps every enabled server running, probes it, restarts it with backoff,
//! stops it, and keeps its logs.
//!
//! This file is the public handle the rest of the daemon uses. The pieces behind it: the pure
//! lifecycle state machine, spawning, probes, backoff and log capture.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::config::{DaemonConfig, Services};
use crate::directory::Directory;

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

/// Handle to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    directory: Arc<Directory>,
}

impl Supervisor {
    /// Starts supervising every enabled server of `services`.
    pub fn start(daemon: &DaemonConfig, services: Services) -> Result<Supervisor, SupervisorError> {
        let _ = (daemon, services);
        Ok(Supervisor {
            directory: Arc::new(Directory::new()),
        })
    }

    /// The live view the gateway and control socket read.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Starts a stopped, failed or disabled-by-operator server; returns once it is `starting`.
    pub async fn start_server(&self, name: &str) -> Result<(), SupervisorError> {
        Err(SupervisorError::UnknownServer(name.to_owned()))
    }

    /// Stops a server and keeps it down until started again; returns once it is `stopped`.
    pub async fn stop_server(&self, name: &str) -> Result<(), SupervisorError> {
        Err(SupervisorError::UnknownServer(name.to_owned()))
    }

    /// Stops then starts a server (also revives a `failed` one); returns once it is `starting`.
    pub async fn restart_server(&self, name: &str) -> Result<(), SupervisorError> {
        Err(SupervisorError::UnknownServer(name.to_owned()))
    }

    /// The last `lines` lines the server printed, oldest first.
    pub fn logs(&self, name: &str, lines: usize) -> Result<Vec<LogLine>, SupervisorError> {
        let _ = lines;
        Err(SupervisorError::UnknownServer(name.to_owned()))
    }

    /// Every line the server prints from now on.
    pub fn follow_logs(&self, name: &str) -> Result<broadcast::Receiver<LogLine>, SupervisorError> {
        Err(SupervisorError::UnknownServer(name.to_owned()))
    }

    /// What `apply(services)` would do, without doing it.
    pub fn plan(&self, services: &Services) -> ReloadPlan {
        let _ = services;
        ReloadPlan::default()
    }

    /// Applies a new set of servers: start, stop, restart or update each as `plan` says.
    pub async fn apply(&self, services: Services) -> ReloadPlan {
        self.plan(&services)
    }

    /// Stops every server in parallel and returns when all are gone.
    pub async fn shutdown(&self) {}
}
