//! What differs between the kinds of servers mcpd runs, behind one interface the server task
//! drives: how a new process's pipes are taken, what happens when it ends, and what probes it.
//!
//! - [`HttpRunner`]: the child listens on its port; both output pipes go to the log, and the
//!   configured prober (MCP over HTTP by default) probes the port.
//! - [`StdioRunner`]: stdin and stdout belong to the server's [`Bridge`] (stderr goes to the
//!   log); probes are MCP `initialize`/`tools/list` then `ping` over the pipe. For
//!   `sessions: per-client` the supervised child serves no client (it is probed, lists the
//!   tools and takes the restarts); each session gets a child of its own from
//!   [`PerClient`], forked by the same spawner.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::child::Child;
use tracing::warn;

use mcpd_protocol::terminal::{Keep, escape};

use super::logs::{LogHub, capture};
use super::probe::{Probe, ProbeFuture};
use super::spawn::SpawnSpec;
use super::{LogLine, LogStream, Shared};
use crate::config::{ServerConfig, ServerKind, StdioSessions};
use crate::directory::{ServerEntry, ToolInfo};
use crate::stdio::{Bridge, Launcher, Limits, OutputSink, PerClient, Target};

/// The kind-specific part of running one server.
pub(super) trait Runner: Send {
    fn kind(&self) -> ServerKind;
    /// A process was spawned: take its pipes.
    fn attach(&mut self, child: &mut Child, logs: &Arc<LogHub>);
    /// The process ended (`why`, e.g. "exited: exit code 1").
    fn detach(&mut self, why: &str);
    /// The probe of the current process; `None` when it cannot be probed yet (no port).
    fn probe(
        &self,
        shared: &Shared,
        port: Option<u16>,
        config: &ServerConfig,
    ) -> Option<Box<dyn Probe>>;
    /// The server stopped (stopped, disabled, failed): what it runs besides its process goes.
    fn stopped(&mut self) {}
}

/// The runner of `kind` for `entry`.
pub(super) fn runner_for(
    kind: ServerKind,
    entry: &Arc<ServerEntry>,
    shared: &Arc<Shared>,
    logs: &Arc<LogHub>,
) -> Box<dyn Runner> {
    let name = entry.config.load().name.clone();
    match kind {
        // A remote server never gets here: it has a task of its own (`remote.rs`).
        ServerKind::Http | ServerKind::Remote => {
            entry.stdio.store(None);
            Box::new(HttpRunner)
        }
        ServerKind::Stdio(StdioSessions::Shared) => {
            let bridge = Bridge::new(&name);
            entry
                .stdio
                .store(Some(Arc::new(Target::Shared(bridge.clone()))));
            Box::new(StdioRunner {
                kind,
                bridge,
                pool: None,
                entry: entry.clone(),
                generation: None,
            })
        }
        ServerKind::Stdio(StdioSessions::PerClient { .. }) => {
            let launcher = Arc::new(SessionLauncher {
                shared: shared.clone(),
                entry: entry.clone(),
                logs: logs.clone(),
            });
            let bridge = Bridge::new(&name);
            let pool = PerClient::new(&name, bridge.clone(), launcher, output_sink(logs));
            entry
                .stdio
                .store(Some(Arc::new(Target::PerClient(pool.clone()))));
            // The supervised process is a child no client uses: it proves the command
            // starts and answers, lists the tools, and is what restarts act on.
            Box::new(StdioRunner {
                kind,
                bridge,
                pool: Some(pool),
                entry: entry.clone(),
                generation: None,
            })
        }
    }
}

/// Where a stdio server's non-message stdout lines go: its log, as output, escaped.
fn output_sink(logs: &Arc<LogHub>) -> OutputSink {
    let hub = logs.clone();
    Arc::new(move |text: String| {
        let text = escape(&text, Keep::Nothing).into_owned();
        hub.push(LogLine {
            at: SystemTime::now(),
            stream: LogStream::Stdout,
            text,
        });
    })
}

fn capture_pipe(
    pipe: Option<std::io::Result<std::os::fd::OwnedFd>>,
    stream: LogStream,
    logs: &Arc<LogHub>,
) {
    match pipe {
        Some(Ok(pipe)) => {
            tokio::spawn(capture(pipe, stream, logs.clone()));
        }
        Some(Err(err)) => warn!(error = %err, "cannot capture the output"),
        None => {}
    }
}

struct HttpRunner;

impl Runner for HttpRunner {
    fn kind(&self) -> ServerKind {
        ServerKind::Http
    }

    fn attach(&mut self, child: &mut Child, logs: &Arc<LogHub>) {
        capture_pipe(child.stdout.take().map(Ok), LogStream::Stdout, logs);
        capture_pipe(child.stderr.take().map(Ok), LogStream::Stderr, logs);
    }

    fn detach(&mut self, _why: &str) {}

    fn probe(
        &self,
        shared: &Shared,
        port: Option<u16>,
        config: &ServerConfig,
    ) -> Option<Box<dyn Probe>> {
        Some(shared.prober.probe(port?, &config.path))
    }
}

struct StdioRunner {
    kind: ServerKind,
    /// The supervised child's bridge: every caller's for `shared`, probes only for
    /// `per-client`.
    bridge: Arc<Bridge>,
    pool: Option<Arc<PerClient>>,
    entry: Arc<ServerEntry>,
    generation: Option<u64>,
}

impl Runner for StdioRunner {
    fn kind(&self) -> ServerKind {
        self.kind
    }

    fn attach(&mut self, child: &mut Child, logs: &Arc<LogHub>) {
        let stderr = child.stderr.take().map(Ok);
        capture_pipe(stderr, LogStream::Stderr, logs);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            warn!(server = %self.bridge.name(), "a stdio server was spawned without pipes");
            return;
        };
        let (stdin, stdout) = match crate::stdio::pipes(stdin, stdout) {
            Ok(pipes) => pipes,
            Err(err) => {
                warn!(server = %self.bridge.name(), error = %err, "cannot use the stdio server's pipes");
                return;
            }
        };
        self.bridge.attach(stdin, stdout, output_sink(logs));
        self.generation = self.bridge.generation();
    }

    fn detach(&mut self, why: &str) {
        if let Some(generation) = self.generation.take() {
            self.bridge.detach(generation, why);
        }
    }

    fn probe(&self, _: &Shared, _: Option<u16>, _: &ServerConfig) -> Option<Box<dyn Probe>> {
        Some(Box::new(StdioProbe {
            bridge: self.bridge.clone(),
        }))
    }

    fn stopped(&mut self) {
        if let Some(pool) = &self.pool {
            pool.stop_all();
        }
    }
}

impl Drop for StdioRunner {
    fn drop(&mut self) {
        self.detach("was stopped");
        self.stopped();
        self.entry.stdio.store(None);
    }
}

/// Forks the children of a per-client server through the supervisor's spawner.
struct SessionLauncher {
    shared: Arc<Shared>,
    entry: Arc<ServerEntry>,
    logs: Arc<LogHub>,
}

impl Launcher for SessionLauncher {
    fn spawn(&self) -> Pin<Box<dyn Future<Output = std::io::Result<Child>> + Send>> {
        let config = self.entry.config.load_full();
        let shared = self.shared.clone();
        let logs = self.logs.clone();
        Box::pin(async move {
            let spec = SpawnSpec::new(&config, None, |key| std::env::var(key).ok());
            let mut child = shared.spawner.spawn(spec).await?;
            let stderr = child.stderr.take().map(Ok);
            capture_pipe(stderr, LogStream::Stderr, &logs);
            Ok(child)
        })
    }

    fn released(&self, pgid: u32) {
        self.shared.spawner.released(pgid);
    }

    fn limits(&self) -> Limits {
        let config = self.entry.config.load();
        let (max_sessions, idle_timeout) = match config.kind {
            ServerKind::Stdio(StdioSessions::PerClient {
                max_sessions,
                idle_timeout,
            }) => (max_sessions, idle_timeout),
            _ => (0, Duration::MAX),
        };
        Limits {
            max_sessions,
            idle_timeout,
            stop_timeout: config.stop_timeout,
            start_timeout: config.health.start_timeout,
        }
    }
}

/// Probes a stdio server over its pipe: readiness initializes it (once per process) and
/// lists its tools; liveness is an MCP `ping`.
#[derive(Debug)]
struct StdioProbe {
    bridge: Arc<Bridge>,
}

impl Probe for StdioProbe {
    fn ready(&mut self, timeout: Duration) -> ProbeFuture<'_, Vec<ToolInfo>> {
        Box::pin(async move {
            if self.bridge.init_info().is_none() {
                self.bridge.initialize(timeout).await?;
            }
            let result = self.bridge.request("tools/list", "{}", timeout).await?;
            Ok(crate::probe_client::tools_of(result.get()))
        })
    }

    fn alive(&mut self, timeout: Duration) -> ProbeFuture<'_, Option<Vec<ToolInfo>>> {
        Box::pin(async move {
            self.bridge
                .request("ping", "{}", timeout)
                .await
                .map(|_| None)
        })
    }
}
