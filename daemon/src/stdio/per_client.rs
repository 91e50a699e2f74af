//! `sessions: per-client`: one child per client session, for servers that keep per-client
//! state. A session opens with `initialize` (a new child, initialized by mcpd, then the
//! client's `initialize` answered from its answer) and ends with `DELETE`, with
//! `idle_timeout` without a request (a request in flight counts as activity), or when the
//! server stops; the child's process group is then stopped (SIGTERM, SIGKILL after
//! `stop_timeout`) and reaped. At `max_sessions` live children a new session gets 503 with
//! `Retry-After`, unless one of them is already stopping: then it waits for that slot (at
//! most `stop_timeout` and a second, and no longer than `gateway.upstream_wait`), so a
//! client that ends a session and opens the next one is not refused for the child it just
//! let go.
//!
//! Children are forked by the supervisor's spawner (own process group, `PR_SET_PDEATHSIG`,
//! known to the reaper), so none outlives mcpd. Their tasks run on the supervisor's runtime,
//! which reaps them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::supervisor::child::Child;
use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::Options;
use super::body::BridgeBody;
use super::bridge::{Bridge, OutputSink};
use super::http::{SESSION_HEADER, plain, serve};

/// What the supervisor lends the pool: forking a child of the server (stderr already
/// captured), and saying when its process group is gone.
pub trait Launcher: Send + Sync {
    fn spawn(&self) -> Pin<Box<dyn Future<Output = std::io::Result<Child>> + Send>>;
    fn released(&self, pgid: u32);
    /// The limits now (read at each use, so a reload applies to the next session).
    fn limits(&self) -> Limits;
}

/// Limits of a per-client server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub stop_timeout: Duration,
    /// How long a new child may take to answer mcpd's `initialize`.
    pub start_timeout: Duration,
}

/// One session's child.
#[derive(Debug)]
pub struct SessionChild {
    pub bridge: Arc<Bridge>,
    pub pid: u32,
    last_used: Mutex<Instant>,
    stop: Notify,
    /// Its session has ended (counted once in the pool's `stopping`).
    ended: AtomicBool,
}

impl SessionChild {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The children of one per-client server.
pub struct PerClient {
    name: Arc<str>,
    /// The supervised child's bridge (serves no session; for `mcpctl call` and `test`).
    canary: Arc<Bridge>,
    launcher: Arc<dyn Launcher>,
    runtime: tokio::runtime::Handle,
    output: OutputSink,
    by_session: Mutex<HashMap<Arc<str>, Arc<SessionChild>>>,
    /// Children starting or running (the cap counts both).
    live: AtomicUsize,
    /// Of those, children whose session has ended and which are being stopped.
    stopping: AtomicUsize,
    /// Told whenever a child is reaped and its slot is free.
    slot_freed: Notify,
}

impl std::fmt::Debug for PerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerClient")
            .field("name", &self.name)
            .field("live", &self.live)
            .finish()
    }
}

enum OpenError {
    Full(usize),
    Failed(String),
}

impl PerClient {
    /// A pool for server `name`; its tasks run on the current runtime.
    pub fn new(
        name: &str,
        canary: Arc<Bridge>,
        launcher: Arc<dyn Launcher>,
        output: OutputSink,
    ) -> Arc<PerClient> {
        Arc::new(PerClient {
            name: Arc::from(name),
            canary,
            launcher,
            runtime: tokio::runtime::Handle::current(),
            output,
            by_session: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            stopping: AtomicUsize::new(0),
            slot_freed: Notify::new(),
        })
    }

    fn limits(&self) -> Limits {
        self.launcher.limits()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<SessionChild>>> {
        self.by_session.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn canary(&self) -> &Arc<Bridge> {
        &self.canary
    }

    /// Children starting or running.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The pids of the sessions' children.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.sessions().values().map(|c| c.pid).collect();
        pids.sort_unstable();
        pids
    }

    /// Ends `child`'s session: the child counts as stopping from now until it is reaped.
    fn mark_ended(&self, child: &SessionChild) {
        if !child.ended.swap(true, Ordering::SeqCst) {
            self.stopping.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ends `child`'s session and stops the child (its task signals the group and reaps it).
    fn end(&self, child: &SessionChild) {
        self.mark_ended(child);
        child.stop.notify_one();
    }

    /// Stops every child (the server stops, or mcpd does).
    pub fn stop_all(&self) {
        let children: Vec<Arc<SessionChild>> = self.sessions().drain().map(|(_, c)| c).collect();
        for child in children {
            // Signalled here and now, so a daemon on its way out does not depend on the
            // child's task running again.
            signal_group(child.pid, nix::sys::signal::Signal::SIGTERM);
            signal_group(child.pid, nix::sys::signal::Signal::SIGCONT);
            self.end(&child);
        }
    }

    /// Answers one request: to the session's child, or `initialize` with a new child.
    pub async fn serve(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        body: Bytes,
        options: &Options,
    ) -> Response<BridgeBody> {
        if let Some(id) = parts.headers.get(SESSION_HEADER) {
            let child = id
                .to_str()
                .ok()
                .and_then(|id| self.sessions().get(id).cloned());
            let Some(child) = child else {
                return plain(
                    StatusCode::NOT_FOUND,
                    "unknown or expired session; initialize again",
                );
            };
            child.touch();
            let response = serve(&child.bridge, parts, body, options).await;
            child.touch();
            if parts.method == Method::DELETE && response.status().is_success() {
                if let Ok(id) = id.to_str() {
                    self.sessions().remove(id);
                }
                self.end(&child);
            }
            return response;
        }
        if parts.method != Method::POST || !is_initialize(&body) {
            return plain(
                StatusCode::BAD_REQUEST,
                "this server runs one process per session: send initialize first, then Mcp-Session-Id",
            );
        }
        let child = match self.open(options.slot_wait).await {
            Ok(child) => child,
            Err(OpenError::Full(max)) => {
                let mut response = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "server \"{}\" is at max_sessions ({max} open); retry later",
                        self.name
                    ),
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(options.retry_after_secs));
                return response;
            }
            Err(OpenError::Failed(why)) => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("server \"{}\" could not start a session: {why}", self.name),
                );
            }
        };
        let response = serve(&child.bridge, parts, body, options).await;
        match response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|id| id.to_str().ok())
        {
            Some(id) => {
                // Idle from the client's `initialize` answered, not from the child's start.
                child.touch();
                self.sessions().insert(Arc::from(id), child);
            }
            None => self.end(&child),
        }
        response
    }

    /// Starts and initializes a child for a new session, within `max_sessions`.
    async fn open(self: &Arc<Self>, slot_wait: Duration) -> Result<Arc<SessionChild>, OpenError> {
        let limits = self.limits();
        self.reserve(limits, slot_wait).await?;
        let (started, answer) = oneshot::channel();
        self.runtime.spawn(self.clone().run_child(limits, started));
        answer
            .await
            .unwrap_or_else(|_| Err("the child's task ended".to_owned()))
            .map_err(OpenError::Failed)
    }

    /// Takes a slot under `max_sessions`, waiting for one that a stopping child holds.
    async fn reserve(&self, limits: Limits, slot_wait: Duration) -> Result<(), OpenError> {
        let longest = (limits.stop_timeout + Duration::from_secs(1)).min(slot_wait);
        let deadline = Instant::now() + longest;
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if self.take_slot(limits.max_sessions) {
                return Ok(());
            }
            if self.stopping.load(Ordering::SeqCst) == 0 {
                // A child reaped since the first try lowered `live` before `stopping`.
                return match self.take_slot(limits.max_sessions) {
                    true => Ok(()),
                    false => Err(OpenError::Full(limits.max_sessions)),
                };
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(OpenError::Full(limits.max_sessions));
            }
        }
    }

    fn take_slot(&self, max_sessions: usize) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| {
                (live < max_sessions).then_some(live + 1)
            })
            .is_ok()
    }

    /// Runs one child from spawn to reaping; says on `started` when it is initialized.
    async fn run_child(
        self: Arc<Self>,
        limits: Limits,
        started: oneshot::Sender<Result<Arc<SessionChild>, String>>,
    ) {
        let child = match self.launcher.spawn().await {
            Ok(child) => child,
            Err(err) => {
                self.free_slot(false);
                let _ = started.send(Err(format!("cannot run it: {err}")));
                return;
            }
        };
        let ended = self.supervise(child, limits, started).await;
        self.free_slot(ended);
    }

    /// A child is reaped: its slot is free (and, if its session had ended, it no longer
    /// counts as stopping).
    fn free_slot(&self, ended: bool) {
        // `live` first: a waiter that then sees `stopping` at 0 also sees the slot.
        self.live.fetch_sub(1, Ordering::SeqCst);
        if ended {
            self.stopping.fetch_sub(1, Ordering::SeqCst);
        }
        self.slot_freed.notify_waiters();
    }

    async fn supervise(
        &self,
        mut child: Child,
        limits: Limits,
        started: oneshot::Sender<Result<Arc<SessionChild>, String>>,
    ) -> bool {
        let pid = child.id().unwrap_or_default();
        let bridge = Bridge::new(&self.name);
        let pipes = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => {
                super::pipes(stdin, stdout).map_err(|err| format!("cannot use its pipes: {err}"))
            }
            _ => Err("spawned without pipes".to_owned()),
        };
        let (stdin, stdout) = match pipes {
            Ok(pipes) => pipes,
            Err(why) => {
                let _ = started.send(Err(why));
                self.kill_and_reap(&mut child, pid).await;
                return false;
            }
        };
        bridge.attach(stdin, stdout, self.output.clone());
        let generation = bridge.generation().unwrap_or_default();
        let session = Arc::new(SessionChild {
            bridge: bridge.clone(),
            pid,
            last_used: Mutex::new(Instant::now()),
            stop: Notify::new(),
            ended: AtomicBool::new(false),
        });
        tokio::select! {
            initialized = bridge.initialize(limits.start_timeout) => match initialized {
                Ok(()) => {
                    if started.send(Ok(session.clone())).is_err() {
                        // The caller went away before its session existed.
                        self.end(&session);
                    }
                }
                Err(why) => {
                    let _ = started.send(Err(why));
                    self.kill_and_reap(&mut child, pid).await;
                    bridge.detach(generation, "did not initialize");
                    return false;
                }
            },
            exit = child.wait() => {
                let why = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
                let _ = started.send(Err(format!("exited during initialize ({why})")));
                self.launcher.released(pid);
                bridge.detach(generation, "exited");
                return false;
            }
        }
        let why = loop {
            let limits = self.limits();
            let idle_at = session.last_used() + limits.idle_timeout;
            tokio::select! {
                exit = child.wait() => {
                    self.launcher.released(pid);
                    break format!("exited ({})", exit.map_or_else(|e| e.to_string(), |s| s.to_string()));
                }
                () = session.stop.notified() => {
                    self.stop_and_reap(&mut child, pid, limits.stop_timeout).await;
                    break "was stopped: its session ended".to_owned();
                }
                () = tokio::time::sleep_until(idle_at) => {
                    let idle = session.last_used() + limits.idle_timeout <= Instant::now()
                        && bridge.pending() == 0;
                    if idle {
                        self.mark_ended(&session);
                        self.stop_and_reap(&mut child, pid, limits.stop_timeout).await;
                        break "was stopped: its session was idle".to_owned();
                    }
                    if bridge.pending() > 0 {
                        // A request in flight is activity.
                        session.touch();
                    }
                }
            }
        };
        self.sessions().retain(|_, c| !Arc::ptr_eq(c, &session));
        bridge.detach(generation, &why);
        session.ended.load(Ordering::SeqCst)
    }

    async fn stop_and_reap(&self, child: &mut Child, pid: u32, stop_timeout: Duration) {
        signal_group(pid, nix::sys::signal::Signal::SIGTERM);
        signal_group(pid, nix::sys::signal::Signal::SIGCONT);
        if tokio::time::timeout(stop_timeout, child.wait())
            .await
            .is_err()
        {
            self.kill_and_reap(child, pid).await;
            return;
        }
        // The leader is gone; what it forked goes with the group.
        signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        self.launcher.released(pid);
    }

    async fn kill_and_reap(&self, child: &mut Child, pid: u32) {
        signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
        self.launcher.released(pid);
    }
}

/// True when `body` is an `initialize` request.
fn is_initialize(body: &[u8]) -> bool {
    super::envelope::Envelope::parse(body)
        .is_ok_and(|message| message.method.as_deref() == Some("initialize"))
}

/// Sends `signal` to the process group `pgid`; a group that is already gone is fine.
fn signal_group(pgid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}
