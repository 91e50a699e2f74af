//! The task that runs one server: feeds the lifecycle machine with operator requests, child
//! exits, probe results and timers, performs its actions and publishes the status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::child::Child;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use mcpd_protocol::terminal::Escaped;

use super::Shared;
use super::lifecycle::{Action, Event, Exit, Machine, Settings};
use super::logs::LogHub;
use super::probe::{Probe, ProbeReport, liveness, readiness};
use super::runner::{Runner, runner_for};
use super::spawn::{SpawnSpec, signal_group};
use crate::config::ServerConfig;
use crate::directory::{ServerEntry, ServerState, ServerStatus, ToolInfo};
use crate::ports;

/// A request to a server's task.
pub enum Command {
    Start(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    /// New configuration (and port); `restart` when it needs a new process.
    Update {
        config: Box<ServerConfig>,
        port: Option<u16>,
        restart: bool,
        /// Told once the new configuration is in the directory.
        applied: oneshot::Sender<()>,
    },
    /// Stop for good and end the task.
    Shutdown(oneshot::Sender<()>),
}

/// What the task's own helpers (spawn, wait, probes) report; `generation` is the process generation
/// it is about, so reports about an earlier process are ignored.
enum Report {
    Spawned {
        child: Child,
        port: Option<u16>,
    },
    SpawnFailed {
        reason: String,
        retry: bool,
    },
    PortMoved(u16),
    Exited(Exit),
    /// A probe's result and how long it took.
    Probe(ProbeReport, Duration),
}

/// A report with the generation it is about. Boxed: an unbounded channel allocates its first
/// block of 32 slots up front, and slots the size of a `Report` (which holds a `Child`) would
/// cost ~6 KiB per server.
type Tagged = Box<(u64, Report)>;

pub struct ServerTask {
    name: String,
    entry: Arc<ServerEntry>,
    shared: Arc<Shared>,
    logs: Arc<LogHub>,
    /// What depends on the server's kind (pipes, probes).
    runner: Box<dyn Runner>,
    machine: Machine,
    port: Option<u16>,
    generation: u64,
    pgid: Option<u32>,
    pid: Option<u32>,
    started_at: Option<SystemTime>,
    since: SystemTime,
    last_exit: Option<String>,
    tools: Arc<[ToolInfo]>,
    /// Prompts and resources, and when the lists were read; since when probes fail.
    offers: Arc<crate::offers::Offers>,
    tools_at: Option<SystemTime>,
    probe_failing_since: Option<SystemTime>,
    last_probe: Option<Duration>,
    probes: Option<JoinHandle<()>>,
    /// The probe readiness passed, kept for liveness (same process, same connection).
    ready_probe: Option<Box<dyn Probe>>,
    start_deadline: Option<Instant>,
    stop_deadline: Option<Instant>,
    backoff_deadline: Option<Instant>,
    reports: mpsc::UnboundedSender<Tagged>,
    waiters: Vec<oneshot::Sender<()>>,
    exiting: bool,
}

impl ServerTask {
    /// Starts the task of `entry` (already in the directory), starting the server if enabled.
    pub fn spawn(
        shared: Arc<Shared>,
        entry: Arc<ServerEntry>,
        logs: Arc<LogHub>,
        port: Option<u16>,
    ) -> (mpsc::UnboundedSender<Command>, JoinHandle<()>) {
        let config = entry.config.load_full();
        let machine = Machine::new(Settings::of(&config), config.enabled, shared.jitter.clone());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (reports, report_rx) = mpsc::unbounded_channel();
        let runner = runner_for(config.kind, &entry, &shared, &logs);
        let mut task = ServerTask {
            runner,
            name: config.name.clone(),
            entry,
            shared,
            logs,
            machine,
            port,
            generation: 0,
            pgid: None,
            pid: None,
            started_at: None,
            since: SystemTime::now(),
            last_exit: None,
            tools: Arc::from(Vec::new()),
            offers: Arc::default(),
            tools_at: None,
            probe_failing_since: None,
            last_probe: None,
            probes: None,
            ready_probe: None,
            start_deadline: None,
            stop_deadline: None,
            backoff_deadline: None,
            reports,
            waiters: Vec::new(),
            exiting: false,
        };
        task.publish(task.machine.state());
        if config.enabled {
            // Synchronously, so the directory never shows an enabled server as stopped.
            task.step(Event::Start);
        }
        let handle = tokio::spawn(task.run(command_rx, report_rx));
        (commands, handle)
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::UnboundedReceiver<Tagged>,
    ) {
        let mut commands_open = true;
        loop {
            if self.exiting && self.machine.state() != ServerState::Stopping && self.pgid.is_none()
            {
                break;
            }
            let deadline = [
                self.start_deadline,
                self.stop_deadline,
                self.backoff_deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.command(command),
                    None => {
                        // Every handle is gone: stop the server and end.
                        commands_open = false;
                        self.exiting = true;
                        self.step(Event::Stop);
                    }
                },
                Some(tagged) = reports.recv() => {
                    let (generation, report) = *tagged;
                    if generation == self.generation {
                        self.report(report);
                    } else if let Report::Spawned { child, .. } = report {
                        // A process nobody wants any more (cannot happen by construction).
                        warn!(server = %self.name, "killing a stray process");
                        if let Some(pid) = child.id() {
                            signal_group(pid, Signal::SIGKILL);
                            self.shared.spawner.released(pid);
                        }
                    }
                }
                () = sleep_until(deadline) => self.timers(),
            }
        }
        self.abort_probes();
        self.shared.boxes.forget(&self.name);
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start(done) => {
                self.waiters.push(done);
                self.step(Event::Start);
            }
            Command::Stop(done) => {
                self.waiters.push(done);
                self.step(Event::Stop);
            }
            Command::Restart(done) => {
                self.waiters.push(done);
                self.step(Event::Restart);
            }
            Command::Update {
                config,
                port,
                restart,
                applied,
            } => {
                let was_enabled = self.entry.config.load().enabled;
                let enabled = config.enabled;
                self.machine.set_settings(Settings::of(&config));
                self.shared.boxes.update(&config, self.pid);
                self.entry.config.store(Arc::new(*config));
                let _ = applied.send(());
                if self.pgid.is_none() || restart {
                    self.port = port;
                }
                let event = match (was_enabled, enabled) {
                    (false, true) => Event::Enable,
                    (true, false) => Event::Disable,
                    _ => Event::ConfigChanged { restart },
                };
                self.step(event);
            }
            Command::Shutdown(done) => {
                self.waiters.push(done);
                self.exiting = true;
                self.step(Event::Stop);
            }
        }
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Spawned { mut child, port } => {
                let pid = child.id();
                self.pid = pid;
                self.pgid = pid;
                self.port = port;
                self.started_at = Some(SystemTime::now());
                self.runner.attach(&mut child, &self.logs);
                let reports = self.reports.clone();
                let generation = self.generation;
                tokio::spawn(async move {
                    let exit = match child.wait().await {
                        Ok(status) => exit_of(status),
                        Err(_) => Exit::Signal(libc::SIGKILL),
                    };
                    let _ = reports.send(Box::new((generation, Report::Exited(exit))));
                });
                info!(server = %self.name, pid = ?pid, port = ?port, "spawned");
                self.step(Event::Spawned);
            }
            Report::SpawnFailed { reason, retry } => {
                warn!(server = %self.name, reason = %Escaped(&reason), "cannot start");
                self.logs.note(format!("cannot start: {reason}"));
                self.step(Event::SpawnFailed { reason, retry });
            }
            Report::PortMoved(port) => {
                warn!(server = %self.name, port, "its port was taken by another process; moved");
                self.port = Some(port);
                self.publish(self.machine.state());
            }
            Report::Exited(exit) => {
                let text = self.shared.boxes.exit_text(&self.name, exit);
                info!(server = %self.name, pid = ?self.pid, exit = %text, "process ended");
                self.logs.note(format!("process ended: {text}"));
                self.last_exit = Some(text);
                self.pid = None;
                self.runner.detach(&format!("exited ({exit})"));
                self.step(Event::Exited(exit));
            }
            Report::Probe(ProbeReport::Ready { tools, mut probe }, took) => {
                self.last_probe = Some(took);
                self.entry.note_probe(took);
                self.tools = Arc::from(tools);
                self.offers = Arc::new(probe.take_offers().unwrap_or_default());
                self.tools_at = Some(SystemTime::now());
                self.probe_failing_since = None;
                self.ready_probe = Some(probe);
                self.step(Event::ProbeOk);
                // Liveness took it, or the machine did not go on to `running`.
                self.ready_probe = None;
            }
            Report::Probe(ProbeReport::Alive(tools, offers), took) => {
                self.last_probe = Some(took);
                self.entry.note_probe(took);
                if tools.is_some() {
                    self.tools_at = Some(SystemTime::now());
                }
                let recovered = self.probe_failing_since.take().is_some();
                let mut changed = tools.as_ref().is_some_and(|tools| *self.tools != **tools);
                if let Some(tools) = tools.filter(|_| changed) {
                    self.tools = Arc::from(tools);
                }
                if let Some(offers) = offers.filter(|offers| *offers != *self.offers) {
                    self.offers = Arc::new(offers);
                    changed = true;
                }
                self.step(Event::LivenessOk);
                if changed || recovered {
                    // Virtual servers tell their listening clients.
                    self.shared.directory.state_changed();
                }
            }
            Report::Probe(ProbeReport::NotAlive(reason), took) => {
                self.last_probe = Some(took);
                self.entry.note_probe(took);
                self.probe_failing_since.get_or_insert_with(SystemTime::now);
                // The reason can quote the server's answer.
                debug!(server = %self.name, reason = %Escaped(&reason), "liveness probe failed");
                self.step(Event::LivenessFailed { reason });
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.start_deadline.is_some_and(|at| at <= now) {
            self.start_deadline = None;
            self.step(Event::StartTimeout);
        }
        if self.stop_deadline.is_some_and(|at| at <= now) {
            self.stop_deadline = None;
            self.step(Event::StopTimeout);
        }
        if self.backoff_deadline.is_some_and(|at| at <= now) {
            self.backoff_deadline = None;
            self.step(Event::BackoffElapsed);
        }
    }

    /// Feeds one event to the machine, performs its actions, publishes and answers waiters.
    fn step(&mut self, event: Event) {
        let before = self.machine.state();
        let actions = self.machine.next(event, Instant::now());
        for action in actions {
            self.perform(action);
        }
        let after = self.machine.state();
        if before != after {
            info!(server = %self.name, from = %before, to = %after, "state changed");
            if matches!(
                after,
                ServerState::Stopped | ServerState::Disabled | ServerState::Failed
            ) {
                self.runner.stopped();
            }
            if matches!(after, ServerState::Backoff | ServerState::Failed)
                && let Some(error) = self.machine.last_error()
            {
                self.logs.note(format!("{after}: {error}"));
            }
        }
        self.publish(before);
        if after != ServerState::Stopping && !(self.exiting && self.pgid.is_some()) {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn perform(&mut self, action: Action) {
        let now = Instant::now();
        match action {
            Action::Spawn => self.start_spawn(),
            Action::StartReadiness { timeout } => {
                self.start_deadline = Some(now + timeout);
                let config = self.entry.config.load();
                let Some(probe) = self.runner.probe(&self.shared, self.port, &config) else {
                    return;
                };
                let reports = self.reports.clone();
                let generation = self.generation;
                self.abort_probes();
                self.probes = Some(tokio::spawn(readiness(
                    probe,
                    config.health.timeout,
                    self.shared.options.probe_retry,
                    move |r, took| {
                        reports
                            .send(Box::new((generation, Report::Probe(r, took))))
                            .is_ok()
                    },
                )));
            }
            Action::StartLiveness => {
                // Ready: the start timeout no longer applies (and would wake the task for nothing).
                self.start_deadline = None;
                let config = self.entry.config.load();
                let interval = config.health.interval;
                let first = interval.mul_f64(rand::random::<f64>());
                let reports = self.reports.clone();
                let generation = self.generation;
                self.abort_probes();
                let Some(probe) = self
                    .ready_probe
                    .take()
                    .or_else(|| self.runner.probe(&self.shared, self.port, &config))
                else {
                    return;
                };
                let probe = Box::new(super::probe::Relisting {
                    inner: probe,
                    relist: self.entry.relist.clone(),
                });
                // A liveness probe that passes after one that passed, and lists nothing,
                // changes nothing the task knows: only its duration is noted, and the task
                // is not woken (at 1000 servers, 100 probes a second).
                let entry = self.entry.clone();
                let passing = std::sync::atomic::AtomicBool::new(false);
                self.probes = Some(tokio::spawn(liveness(
                    probe,
                    interval,
                    config.health.timeout,
                    first,
                    self.entry.check_now.clone(),
                    move |r, took| {
                        let routine = matches!(r, ProbeReport::Alive(None, None));
                        if passing.swap(routine, std::sync::atomic::Ordering::Relaxed) && routine {
                            entry.note_probe(took);
                            return !reports.is_closed();
                        }
                        reports
                            .send(Box::new((generation, Report::Probe(r, took))))
                            .is_ok()
                    },
                )));
            }
            Action::StopProbes => {
                self.abort_probes();
                self.start_deadline = None;
            }
            Action::Terminate { timeout } => {
                if let Some(pgid) = self.pgid {
                    signal_group(pgid, Signal::SIGTERM);
                    // A stopped (SIGSTOP, hung in a debugger) process only acts on the
                    // SIGTERM once continued; systemd does the same.
                    signal_group(pgid, Signal::SIGCONT);
                }
                self.stop_deadline = Some(now + timeout);
            }
            Action::Kill => {
                if let Some(pgid) = self.pgid {
                    warn!(server = %self.name, "did not stop in time; killing its process group");
                    signal_group(pgid, Signal::SIGKILL);
                }
            }
            Action::KillGroup => {
                if let Some(pgid) = self.pgid.take() {
                    signal_group(pgid, Signal::SIGKILL);
                    self.shared.spawner.released(pgid);
                }
                self.shared.boxes.kill_all(&self.name);
                self.stop_deadline = None;
            }
            Action::ScheduleBackoff(delay) => {
                info!(server = %self.name, delay = ?delay, "restarting after backoff");
                self.backoff_deadline = Some(now + delay);
            }
            Action::CancelBackoff => self.backoff_deadline = None,
        }
    }

    fn abort_probes(&mut self) {
        if let Some(probes) = self.probes.take() {
            probes.abort();
        }
    }

    /// Starts a process in the background: waits for the port to be free (bounded), moves an
    /// allocated port off a foreign listener, then forks on the spawner thread.
    fn start_spawn(&mut self) {
        self.generation += 1;
        self.tools = Arc::from(Vec::new());
        self.offers = Arc::default();
        self.tools_at = None;
        self.probe_failing_since = None;
        let generation = self.generation;
        let reports = self.reports.clone();
        let shared = self.shared.clone();
        let config = self.entry.config.load_full();
        if !self.runner.kind().same_runner(config.kind) {
            // A reload changed `transport` or `sessions` (which restarts): the old process
            // is gone.
            self.runner = runner_for(config.kind, &self.entry, &self.shared, &self.logs);
        }
        let port = self.port;
        let range = shared.range;
        tokio::spawn(async move {
            let send = |report| {
                let _ = reports.send(Box::new((generation, report)));
            };
            if !config.kind.uses_port() {
                return send(spawn_boxed(&shared, &config, None).await);
            }
            let Some(mut port) = port else {
                send(Report::SpawnFailed {
                    reason: format!("no free port left in {range}"),
                    retry: false,
                });
                return;
            };
            let free = match wait_port_free(port, shared.options.port_wait).await {
                Ok(free) => free,
                Err(err) => {
                    // Out of descriptors (or buffers, or memory) says nothing about the port:
                    // reported as what it is, never as "in use", and the server is not moved.
                    send(Report::SpawnFailed {
                        reason: format!("cannot check whether port {port} is free: {err}"),
                        retry: true,
                    });
                    return;
                }
            };
            if !free {
                if config.port.is_some() {
                    send(Report::SpawnFailed {
                        reason: format!("port {port} is in use by another process"),
                        retry: false,
                    });
                    return;
                }
                let moved = {
                    let mut allocator = shared.ports.lock().unwrap_or_else(|e| e.into_inner());
                    let moved = allocator.reassign(&config.name, port);
                    if matches!(moved, Ok(Some(_))) {
                        allocator.persist();
                    }
                    moved
                };
                match moved {
                    Ok(Some(new)) => {
                        port = new;
                        send(Report::PortMoved(new));
                    }
                    Err(err) => {
                        send(Report::SpawnFailed {
                            reason: format!(
                                "port {port} is in use by another process, and looking for \
                                 another one failed: {err}"
                            ),
                            retry: true,
                        });
                        return;
                    }
                    Ok(None) => {
                        send(Report::SpawnFailed {
                            reason: format!(
                                "port {port} is in use by another process and no other port \
                                 is free in {range}"
                            ),
                            retry: true,
                        });
                        return;
                    }
                }
            }
            send(spawn_boxed(&shared, &config, Some(port)).await);
        });
    }

    /// Publishes the current status; `before` is the state before the last event.
    fn publish(&mut self, before: ServerState) {
        let state = self.machine.state();
        if state != before {
            self.since = SystemTime::now();
        }
        let status = ServerStatus {
            state,
            pid: self.pid,
            port: self.port,
            since: self.since,
            started_at: self.pid.and(self.started_at),
            restarts: self.machine.restarts(),
            last_exit: self.last_exit.clone(),
            last_error: self.machine.last_error().map(str::to_owned),
            tools: self.tools.clone(),
            tools_at: self.tools_at,
            probe_failing_since: self.probe_failing_since,
            offers: self.offers.clone(),
            last_probe: self.last_probe,
        };
        self.entry.status.store(Arc::new(status));
        if state != before {
            self.shared.directory.state_changed();
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// Waits up to `bound` for `127.0.0.1:port` to be free: `Ok(true)` when it is, `Ok(false)`
/// when another process still holds it, and the error of the last check when the check itself
/// failed (see [`ports::port_free`]).
async fn wait_port_free(port: u16, bound: Duration) -> std::io::Result<bool> {
    let until = Instant::now() + bound;
    loop {
        let free = ports::port_free(port);
        if matches!(free, Ok(true)) || Instant::now() >= until {
            return free;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Forks `config`'s process (on `port`, if it listens on one) inside its box: cgroup, limits,
/// user and sandbox (`boxes.rs`).
async fn spawn_boxed(shared: &Shared, config: &ServerConfig, port: Option<u16>) -> Report {
    let mut spec = SpawnSpec::new(config, port, |key| std::env::var(key).ok());
    spec.confine = match shared.boxes.prepare(config) {
        Ok(confine) => confine,
        Err(reason) => {
            return Report::SpawnFailed {
                reason,
                retry: true,
            };
        }
    };
    match shared.spawner.spawn(spec).await {
        Ok(child) => Report::Spawned { child, port },
        Err(err) => Report::SpawnFailed {
            reason: format!("cannot run {}: {err}", config.binary.display()),
            retry: true,
        },
    }
}
