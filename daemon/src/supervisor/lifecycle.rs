//! The lifecycle state machine of one server (DESIGN.md section 4): `next(event, now)`
//! returns the actions to perform and does no I/O.
//!
//! The async shell (`server.rs`) turns child exits, probe results, timers and operator
//! requests into [`Event`]s and performs the [`Action`]s. Time comes in as `now`; jitter
//! comes from an injected source, so every decision here is deterministic under test.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{RestartConfig, RestartPolicy, ServerConfig};
use crate::directory::ServerState;

/// Returns a value in `[0, 1)`; scaled to 0-20% of a backoff delay.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Random jitter from the thread RNG.
pub fn random_jitter() -> Jitter {
    Arc::new(rand::random::<f64>)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn is_clean(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(signal) => write!(f, "killed by signal {}", signal.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// Something that happened to a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Operator `start` (also the initial start of an enabled server).
    Start,
    /// Operator `stop`.
    Stop,
    /// Operator `restart`.
    Restart,
    /// The configuration now enables the server.
    Enable,
    /// The configuration now disables the server.
    Disable,
    /// The configuration changed; `restart` when the change needs a new process.
    ConfigChanged {
        restart: bool,
    },
    /// The process asked for by `Action::Spawn` exists.
    Spawned,
    /// `Action::Spawn` could not produce a process; `retry` false parks the server in `failed`.
    SpawnFailed {
        reason: String,
        retry: bool,
    },
    /// The main process ended.
    Exited(Exit),
    /// The readiness probe passed.
    ProbeOk,
    /// `start_timeout` elapsed without a passing readiness probe.
    StartTimeout,
    LivenessOk,
    LivenessFailed {
        reason: String,
    },
    /// `stop_timeout` elapsed after `Action::Terminate` and the process is still there.
    StopTimeout,
    BackoffElapsed,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Assign/check the port and start a process; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// Probe readiness until it passes; send `StartTimeout` after `timeout`.
    StartReadiness {
        timeout: Duration,
    },
    /// Probe liveness every interval.
    StartLiveness,
    /// Cancel readiness and liveness probes and the start timer.
    StopProbes,
    /// SIGTERM to the process group; send `StopTimeout` after `timeout`.
    Terminate {
        timeout: Duration,
    },
    /// SIGKILL to the process group now (the process is still there).
    Kill,
    /// The main process is gone: SIGKILL whatever is left of its group and cancel the stop timer.
    KillGroup,
    /// Send `BackoffElapsed` after this delay.
    ScheduleBackoff(Duration),
    CancelBackoff,
}

/// Where a server goes once its process is gone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AfterStop {
    Stopped,
    Disabled,
    Failed,
    Respawn,
    Backoff(Duration),
}

/// The parts of a server's configuration the machine decides with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub restart: RestartConfig,
    pub health_failures: u32,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
}

impl Settings {
    pub fn of(config: &ServerConfig) -> Self {
        Settings {
            restart: config.restart.clone(),
            health_failures: config.health.failures,
            start_timeout: config.health.start_timeout,
            stop_timeout: config.stop_timeout,
        }
    }
}

/// The lifecycle of one server.
pub struct Machine {
    state: ServerState,
    settings: Settings,
    after_stop: AfterStop,
    /// `n` of the next automatic restart, minus one.
    attempt: u32,
    /// When recent failures happened, for `burst` within `window`.
    failures: VecDeque<Instant>,
    running_since: Option<Instant>,
    liveness_failures: u32,
    spawned_before: bool,
    restarts: u32,
    last_error: Option<String>,
    jitter: Jitter,
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("state", &self.state)
            .field("after_stop", &self.after_stop)
            .field("attempt", &self.attempt)
            .field("failures", &self.failures.len())
            .field("restarts", &self.restarts)
            .field("last_error", &self.last_error)
            .finish()
    }
}

impl Machine {
    /// A machine in `disabled` or `stopped`; send `Start` to bring an enabled server up.
    pub fn new(settings: Settings, enabled: bool, jitter: Jitter) -> Self {
        Machine {
            state: if enabled {
                ServerState::Stopped
            } else {
                ServerState::Disabled
            },
            settings,
            after_stop: AfterStop::Stopped,
            attempt: 0,
            failures: VecDeque::new(),
            running_since: None,
            liveness_failures: 0,
            spawned_before: false,
            restarts: 0,
            last_error: None,
            jitter,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Processes started after the first one.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Replaces the settings (a config update that needs no restart).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The delay before automatic restart `n` (1-based), with jitter fraction `j` in `[0, 1)`:
    /// `min(backoff * 2^(n-1), max_backoff)` plus `j * 20%` of that.
    pub fn backoff_delay(restart: &RestartConfig, n: u32, j: f64) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        let base = restart
            .backoff
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(restart.max_backoff);
        base + base.mul_f64(0.2 * j.clamp(0.0, 1.0))
    }

    /// Applies `event` at `now` and returns what to do.
    pub fn next(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Event as E;
        use ServerState as S;
        match (self.state, event) {
            (S::Stopped | S::Failed, E::Start | E::Restart) => self.fresh_spawn(vec![]),
            (S::Backoff, E::Start | E::Restart) => self.fresh_spawn(vec![Action::CancelBackoff]),
            (S::Stopping, E::Start | E::Restart) => {
                self.reset_counters();
                self.after_stop = AfterStop::Respawn;
                vec![]
            }
            (S::Starting | S::Running, E::Restart) => {
                self.reset_counters();
                self.stop_then(AfterStop::Respawn)
            }

            (S::Starting | S::Running, E::Stop) => self.stop_then(AfterStop::Stopped),
            (S::Starting | S::Running, E::Disable) => self.stop_then(AfterStop::Disabled),
            (S::Stopping, E::Stop) => {
                self.after_stop = AfterStop::Stopped;
                vec![]
            }
            (S::Stopping, E::Disable) => {
                self.after_stop = AfterStop::Disabled;
                vec![]
            }
            (S::Backoff, E::Stop) => self.enter(S::Stopped, vec![Action::CancelBackoff]),
            (S::Backoff, E::Disable) => self.enter(S::Disabled, vec![Action::CancelBackoff]),
            (S::Failed, E::Stop) => self.enter(S::Stopped, vec![]),
            (S::Stopped | S::Failed, E::Disable) => self.enter(S::Disabled, vec![]),
            (S::Disabled, E::Enable) => self.fresh_spawn(vec![]),

            (S::Failed, E::ConfigChanged { .. }) => self.fresh_spawn(vec![]),
            (S::Backoff, E::ConfigChanged { restart: true }) => {
                self.fresh_spawn(vec![Action::CancelBackoff])
            }
            (S::Starting | S::Running, E::ConfigChanged { restart: true }) => {
                self.stop_then(AfterStop::Respawn)
            }
            (S::Stopping, E::ConfigChanged { restart: true })
                if matches!(self.after_stop, AfterStop::Backoff(_) | AfterStop::Failed) =>
            {
                self.reset_counters();
                self.after_stop = AfterStop::Respawn;
                vec![]
            }

            (S::Starting, E::Spawned) => vec![Action::StartReadiness {
                timeout: self.settings.start_timeout,
            }],
            (S::Stopping, E::Spawned) => vec![Action::Terminate {
                timeout: self.settings.stop_timeout,
            }],
            (
                S::Starting,
                E::SpawnFailed {
                    reason,
                    retry: false,
                },
            ) => {
                self.last_error = Some(reason);
                self.enter(S::Failed, vec![Action::StopProbes])
            }
            (
                S::Starting,
                E::SpawnFailed {
                    reason,
                    retry: true,
                },
            ) => self.failure(now, Some(reason), false, vec![Action::StopProbes]),
            (S::Stopping, E::SpawnFailed { .. }) => self.finish_stop(vec![]),

            (S::Starting, E::ProbeOk) => {
                self.running_since = Some(now);
                self.liveness_failures = 0;
                self.enter(S::Running, vec![Action::StartLiveness])
            }
            (S::Starting, E::StartTimeout) => {
                let reason = format!(
                    "not ready within {}",
                    humantime::format_duration(self.settings.start_timeout)
                );
                self.failure(now, Some(reason), true, vec![Action::StopProbes])
            }
            (S::Running, E::LivenessOk) => {
                self.liveness_failures = 0;
                vec![]
            }
            (S::Running, E::LivenessFailed { reason }) => {
                self.liveness_failures += 1;
                if self.liveness_failures < self.settings.health_failures.max(1) {
                    return vec![];
                }
                let reason = format!(
                    "{} liveness probes failed in a row: {reason}",
                    self.liveness_failures
                );
                self.failure(now, Some(reason), true, vec![Action::StopProbes])
            }

            (S::Starting, E::Exited(exit)) => {
                let reason = format!("exited during start ({exit})");
                let first = vec![Action::StopProbes, Action::KillGroup];
                self.failure(now, Some(reason), false, first)
            }
            (S::Running, E::Exited(exit)) => {
                let first = vec![Action::StopProbes, Action::KillGroup];
                if !exit.is_clean() {
                    let reason = format!("exited unexpectedly ({exit})");
                    self.failure(now, Some(reason), false, first)
                } else if self.settings.restart.policy == RestartPolicy::Always {
                    self.failure(now, None, false, first)
                } else {
                    self.running_since = None;
                    self.enter(S::Stopped, first)
                }
            }
            (S::Stopping, E::Exited(_)) => self.finish_stop(vec![Action::KillGroup]),
            (S::Stopping, E::StopTimeout) => vec![Action::Kill],
            (S::Backoff, E::BackoffElapsed) => self.spawn(vec![]),

            // Everything else does not apply in this state (stale timers, a start while
            // running, a start of a disabled server, which the shell refuses).
            _ => vec![],
        }
    }

    fn enter(&mut self, state: ServerState, actions: Vec<Action>) -> Vec<Action> {
        self.state = state;
        actions
    }

    fn reset_counters(&mut self) {
        self.attempt = 0;
        self.failures.clear();
        self.liveness_failures = 0;
    }

    fn fresh_spawn(&mut self, first: Vec<Action>) -> Vec<Action> {
        self.reset_counters();
        self.spawn(first)
    }

    fn spawn(&mut self, mut actions: Vec<Action>) -> Vec<Action> {
        if self.spawned_before {
            self.restarts += 1;
        }
        self.spawned_before = true;
        self.running_since = None;
        actions.push(Action::Spawn);
        self.enter(ServerState::Starting, actions)
    }

    fn stop_then(&mut self, after: AfterStop) -> Vec<Action> {
        self.after_stop = after;
        self.running_since = None;
        self.enter(
            ServerState::Stopping,
            vec![
                Action::StopProbes,
                Action::Terminate {
                    timeout: self.settings.stop_timeout,
                },
            ],
        )
    }

    fn finish_stop(&mut self, actions: Vec<Action>) -> Vec<Action> {
        self.running_since = None;
        match self.after_stop {
            AfterStop::Stopped => self.enter(ServerState::Stopped, actions),
            AfterStop::Disabled => self.enter(ServerState::Disabled, actions),
            AfterStop::Failed => self.enter(ServerState::Failed, actions),
            AfterStop::Respawn => self.spawn(actions),
            AfterStop::Backoff(delay) => {
                let mut actions = actions;
                actions.push(Action::ScheduleBackoff(delay));
                self.enter(ServerState::Backoff, actions)
            }
        }
    }

    /// A crash, a failed start or failed liveness probes (`reason` set), or a clean exit under
    /// `always` (`reason` None). `alive`: the process is still there and must be stopped first.
    fn failure(
        &mut self,
        now: Instant,
        reason: Option<String>,
        alive: bool,
        first: Vec<Action>,
    ) -> Vec<Action> {
        let restart = &self.settings.restart;
        let after = if restart.policy == RestartPolicy::Never {
            AfterStop::Failed
        } else {
            if self
                .running_since
                .is_some_and(|since| now.duration_since(since) >= restart.reset_after)
            {
                self.attempt = 0;
            }
            self.failures.push_back(now);
            while self
                .failures
                .front()
                .is_some_and(|at| now.duration_since(*at) >= restart.window)
            {
                self.failures.pop_front();
            }
            if restart.burst > 0 && self.failures.len() >= restart.burst as usize {
                let last = reason.as_deref().unwrap_or("clean exit");
                let window = humantime::format_duration(restart.window);
                self.last_error = Some(format!(
                    "crash loop: {} failures within {window} (last: {last}); parked until start, \
                     restart or a config change",
                    self.failures.len()
                ));
                self.running_since = None;
                return self.park(alive, first);
            }
            self.attempt += 1;
            AfterStop::Backoff(Self::backoff_delay(restart, self.attempt, (self.jitter)()))
        };
        if let Some(reason) = reason {
            self.last_error = Some(reason);
        }
        self.running_since = None;
        if alive {
            merge(first, self.stop_then(after))
        } else {
            self.after_stop = after;
            self.finish_stop(first)
        }
    }

    fn park(&mut self, alive: bool, first: Vec<Action>) -> Vec<Action> {
        if alive {
            merge(first, self.stop_then(AfterStop::Failed))
        } else {
            self.enter(ServerState::Failed, first)
        }
    }
}

/// `first` followed by the actions of `then` it does not already hold.
fn merge(mut first: Vec<Action>, then: Vec<Action>) -> Vec<Action> {
    for action in then {
        if !first.contains(&action) {
            first.push(action);
        }
    }
    first
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
