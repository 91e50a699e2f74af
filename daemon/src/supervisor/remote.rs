//! The task of a remote server (`url:`): nothing to spawn, stop or restart, only probes. It
//! answers the same [`Command`]s as a process's task, so the supervisor drives both alike.
//!
//! States: `starting` until the first probe answers, then `running` while the server answers
//! and `unreachable` once it failed `health.failures` liveness probes in a row (or its first
//! readiness probe); `stopped`/`disabled` when told. Probes are the MCP client of
//! `probe_client` over the remote's own connection (TLS for `https:`), with the operator's
//! credential: readiness lists the tools, liveness pings and lists them again now and then.
//! While unreachable, readiness is tried every `health.interval`; a gateway request that
//! could not connect brings the next one forward (`ServerEntry::check_now`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use mcpd_protocol::terminal::Escaped;

use super::Shared;
use super::logs::LogHub;
use super::server::Command;
use crate::config::ServerConfig;
use crate::directory::{ServerEntry, ServerState, ServerStatus, ToolInfo};
use crate::probe_client::ProbeClient;

/// What the probe loop reports, with the generation of the loop.
enum Report {
    Ready(Vec<ToolInfo>),
    Alive(Option<Vec<ToolInfo>>),
    /// A liveness probe failed, but fewer than `health.failures` in a row.
    Missed(String),
    Unreachable(String),
}

pub struct RemoteTask {
    name: String,
    entry: Arc<ServerEntry>,
    shared: Arc<Shared>,
    logs: Arc<LogHub>,
    state: ServerState,
    since: SystemTime,
    restarts: u32,
    last_error: Option<String>,
    tools: Arc<[ToolInfo]>,
    last_probe: Option<Duration>,
    probes: Option<JoinHandle<()>>,
    generation: u64,
    reports: mpsc::UnboundedSender<(u64, Report, Duration)>,
}

impl RemoteTask {
    /// Starts the task of `entry` (already in the directory), probing it if enabled.
    pub fn spawn(
        shared: Arc<Shared>,
        entry: Arc<ServerEntry>,
        logs: Arc<LogHub>,
    ) -> (mpsc::UnboundedSender<Command>, JoinHandle<()>) {
        let config = entry.config.load_full();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (reports, report_rx) = mpsc::unbounded_channel();
        let mut task = RemoteTask {
            name: config.name.clone(),
            entry,
            shared,
            logs,
            state: if config.enabled {
                ServerState::Stopped
            } else {
                ServerState::Disabled
            },
            since: SystemTime::now(),
            restarts: 0,
            last_error: None,
            tools: Arc::from(Vec::new()),
            last_probe: None,
            probes: None,
            generation: 0,
            reports,
        };
        if config.enabled {
            task.start();
        } else {
            task.publish();
        }
        (commands, tokio::spawn(task.run(command_rx, report_rx)))
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::UnboundedReceiver<(u64, Report, Duration)>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.stop(ServerState::Stopped);
                        let _ = done.send(());
                        break;
                    }
                    Some(command) => self.command(command),
                    None => break,
                },
                Some((generation, report, took)) = reports.recv() => {
                    if generation == self.generation && self.probes.is_some() {
                        self.report(report, took);
                    }
                }
            }
        }
        self.stop_probes();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start(done) => {
                if self.probes.is_none() {
                    self.start();
                }
                let _ = done.send(());
            }
            Command::Stop(done) => {
                self.stop(ServerState::Stopped);
                let _ = done.send(());
            }
            Command::Restart(done) => {
                self.restarts += 1;
                self.start();
                let _ = done.send(());
            }
            Command::Update {
                config, applied, ..
            } => {
                let enabled = config.enabled;
                let changed = **self.entry.config.load() != *config;
                self.entry.config.store(Arc::new(*config));
                let _ = applied.send(());
                match (enabled, self.state) {
                    (false, _) => self.stop(ServerState::Disabled),
                    (true, ServerState::Disabled) => self.start(),
                    // New URL, CA or credential: probe with them from now on.
                    (true, _) if changed && self.probes.is_some() => self.reprobe(),
                    (true, _) => {}
                }
            }
            Command::Shutdown(_) => unreachable!("handled by run"),
        }
    }

    /// Starts probing afresh: `starting` until the first answer.
    fn start(&mut self) {
        self.set_state(ServerState::Starting);
        self.reprobe();
    }

    /// A new probe loop on the current configuration, keeping the state.
    fn reprobe(&mut self) {
        self.stop_probes();
        self.generation += 1;
        let config = self.entry.config.load_full();
        let Some(target) = config.remote.clone() else {
            warn!(server = %self.name, "a remote server without a url");
            return;
        };
        let reports = self.reports.clone();
        let generation = self.generation;
        self.probes = Some(tokio::spawn(probe_loop(
            ProbeClient::remote(target).with_capabilities(super::probe::PROBE_CAPABILITIES),
            config,
            self.entry.check_now.clone(),
            move |report, took| reports.send((generation, report, took)).is_ok(),
        )));
    }

    fn stop(&mut self, state: ServerState) {
        self.stop_probes();
        self.tools = Arc::from(Vec::new());
        self.set_state(state);
    }

    fn stop_probes(&mut self) {
        if let Some(probes) = self.probes.take() {
            probes.abort();
        }
    }

    fn report(&mut self, report: Report, took: Duration) {
        self.last_probe = Some(took);
        match report {
            Report::Ready(tools) => {
                self.tools = Arc::from(tools);
                self.last_error = None;
                self.set_state(ServerState::Running);
                self.shared.directory.state_changed();
            }
            Report::Alive(tools) => {
                let changed = tools.as_ref().is_some_and(|tools| *self.tools != **tools);
                if let Some(tools) = tools.filter(|_| changed) {
                    self.tools = Arc::from(tools);
                }
                self.set_state(ServerState::Running);
                if changed {
                    self.shared.directory.state_changed();
                }
            }
            Report::Missed(reason) => {
                tracing::debug!(server = %self.name, reason = %Escaped(&reason), "liveness probe failed");
                self.publish();
            }
            Report::Unreachable(reason) => {
                if self.state != ServerState::Unreachable
                    || self.last_error.as_deref() != Some(reason.as_str())
                {
                    warn!(server = %self.name, reason = %Escaped(&reason), "remote server unreachable");
                    self.logs.note(format!("unreachable: {reason}"));
                }
                self.last_error = Some(reason);
                self.set_state(ServerState::Unreachable);
            }
        }
    }

    fn set_state(&mut self, state: ServerState) {
        let before = self.state;
        if before != state {
            info!(server = %self.name, from = %before, to = %state, "state changed");
            if state == ServerState::Running {
                self.logs.note("reachable".to_owned());
            }
            self.state = state;
            self.since = SystemTime::now();
        }
        self.publish();
        if before != state {
            self.shared.directory.state_changed();
        }
    }

    fn publish(&self) {
        let mut status = ServerStatus::new(self.state);
        status.since = self.since;
        status.restarts = self.restarts;
        status.last_error = self.last_error.clone();
        status.tools = self.tools.clone();
        status.last_probe = self.last_probe;
        self.entry.status.store(Arc::new(status));
    }
}

/// Probes for as long as the task wants: readiness until it answers, then liveness every
/// `health.interval`; `health.failures` failed liveness probes in a row make the server
/// unreachable and readiness starts again.
async fn probe_loop(
    mut client: ProbeClient,
    config: Arc<ServerConfig>,
    check_now: Arc<tokio::sync::Notify>,
    report: impl Fn(Report, Duration) -> bool + Send,
) {
    let health = &config.health;
    let mut ready = false;
    let mut missed = 0;
    loop {
        let began = Instant::now();
        let result = if ready {
            match client.alive(health.timeout).await {
                Ok(tools) => {
                    missed = 0;
                    Report::Alive(tools)
                }
                Err(error) => {
                    missed += 1;
                    if missed >= health.failures.max(1) {
                        ready = false;
                        Report::Unreachable(error.to_string())
                    } else {
                        Report::Missed(error.to_string())
                    }
                }
            }
        } else {
            match client.ready(health.timeout).await {
                Ok(tools) => {
                    ready = true;
                    missed = 0;
                    Report::Ready(tools)
                }
                Err(error) => Report::Unreachable(error.to_string()),
            }
        };
        if !report(result, began.elapsed()) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(began + health.interval) => {}
            () = check_now.notified() => {}
        }
    }
}
