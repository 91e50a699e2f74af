//! Shared helpers for the end-to-end tests: the real binaries, temp dirs, ports, child
//! processes and waiting.
//!
//! - [`bin`] builds `mcpd`, `mcpctl`, `mcp-echo` and `mcpd-loadgen` once per test process (a
//!   nested `cargo build` into the same target directory) and returns the path of one of them.
//! - [`TestDir`] is a temp directory removed when dropped.
//! - [`port_block`] hands each test its own range of loopback ports and [`free_port`] one
//!   port: the allocator of `mcpd-testkit`, shared with mcpd's unit tests (outside the
//!   kernel's ephemeral range, distinct across tests and test processes, checked bindable).
//!   [`hold_port`] listens on a given port, failing with the port's name when it is taken.
//! - [`ChildGuard`] spawns a process in its own process group, captures its stdout and
//!   stderr, and kills the whole group when dropped, so a failing test leaves nothing behind.
//!   A watchdog kills it after a deadline and fails the test.
//! - [`mcp_support`]: rmcp clients of both protocol generations, and an in-process server of
//!   the session-based one.
//! - [`sockets::connections_of`] copies another process's TCP connections, to read their
//!   socket options back.
//! - [`wait_for`] (async), [`wait_for_value`] and [`wait_for_sync`] poll a condition at short
//!   intervals and panic with a message on timeout. They are the only waiting tests do: no
//!   fixed sleeps.

pub mod ctl_support;
pub mod ops_support;
pub mod sup_support;

use std::fmt::Display;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub mod gw_support;
pub mod interop;
pub mod mcp_support;
pub mod rel_support;
pub mod remote_support;
pub mod sockets;
pub mod sse;
pub mod stdio_support;

/// How long a spawned process may live before its watchdog kills it and fails the test.
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Binaries

/// The path of a workspace binary (`mcpd`, `mcpctl`, `mcp-echo` or `mcpd-loadgen`), built on
/// first use.
///
/// The first call runs `cargo build --bins -p mcpd -p mcpctl -p mcp-echo -p mcpd-loadgen` with
/// the profile the tests were built with; later calls (from any test of this process) reuse the
/// result.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = match BUILT.get_or_init(build_binaries) {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "no binary {} after the build",
        path.display()
    );
    path
}

/// Builds the binaries and returns the directory they are in (target/<profile>).
fn build_binaries() -> Result<PathBuf, String> {
    let dir = profile_dir()?;
    let profile = match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => {
            return Err(format!(
                "cannot tell the cargo profile from {}",
                dir.display()
            ));
        }
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--bins",
            "-p",
            "mcpd",
            "-p",
            "mcpctl",
            "-p",
            "mcp-echo",
            "-p",
            "mcpd-loadgen",
            "--profile",
        ])
        .arg(&profile)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {cargo}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the binaries failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(dir)
}

/// target/<profile>, found from this test executable (target/<profile>/deps/<test>-<hash>).
fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    let deps = exe
        .parent()
        .ok_or("test executable has no parent directory")?;
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    Ok(dir.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// Temp directories

/// A temporary directory, removed with its contents when dropped.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mcpd-test-")
            .tempdir()
            .expect("create a temp dir");
        TestDir { dir }
    }

    /// A temporary directory under `parent` (e.g. outside `/tmp`).
    pub fn new_in(parent: impl AsRef<Path>) -> Self {
        std::fs::create_dir_all(parent.as_ref()).expect("create the parent directory");
        let dir = tempfile::Builder::new()
            .prefix("mcpd-test-")
            .tempdir_in(parent)
            .expect("create a temp dir");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `contents` to `relative`, creating parent directories; returns the full path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Ports

pub use mcpd_testkit::{PortBlock, SLOT, free_port, hold_port, port_block, require_free};

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A spawned process in its own process group. Its stdout and stderr are read continuously
/// into memory (see [`ChildGuard::stdout`]). Dropping the guard SIGKILLs the whole group and
/// reaps the process; a watchdog does the same after a deadline and then fails the test.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Pipes (stdout, stderr) read to their end: everything the process wrote is captured.
    drained: [Arc<AtomicBool>; 2],
    watchdog: Arc<Watchdog>,
}

/// How long a wait for an exit also waits for the captured pipes to reach their end (a
/// process that forked may leave a child holding them open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Watchdog {
    done: Mutex<bool>,
    wake: Condvar,
    fired: AtomicBool,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed, stdout and stderr captured, in a new process group,
    /// under the [`DEFAULT_WATCHDOG`].
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Self {
        Self::spawn_with_watchdog(name, command, DEFAULT_WATCHDOG)
    }

    pub fn spawn_with_watchdog(
        name: impl Into<String>,
        command: &mut Command,
        deadline: Duration,
    ) -> Self {
        let name = name.into();
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot spawn {name}: {error}"));
        let pid = child.id();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let drained = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        if let Some(pipe) = child.stdout.take() {
            drain(pipe, stdout.clone(), drained[0].clone());
        }
        if let Some(pipe) = child.stderr.take() {
            drain(pipe, stderr.clone(), drained[1].clone());
        }
        let watchdog = Arc::new(Watchdog::default());
        {
            let watchdog = watchdog.clone();
            let name = name.clone();
            thread::spawn(move || {
                let done = watchdog
                    .done
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                let (done, _) = watchdog
                    .wake
                    .wait_timeout_while(done, deadline, |done| !*done)
                    .unwrap_or_else(|poison| poison.into_inner());
                if !*done {
                    watchdog.fired.store(true, Ordering::SeqCst);
                    eprintln!("watchdog: killing {name} (pid {pid}) after {deadline:?}");
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            });
        }
        ChildGuard {
            name,
            pid,
            child: Mutex::new(child),
            status: Mutex::new(None),
            stdout,
            stderr,
            drained,
            watchdog,
        }
    }

    /// True once stdout and stderr were both read to their end.
    fn drained(&self) -> bool {
        self.drained.iter().all(|done| done.load(Ordering::SeqCst))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal)
            .unwrap_or_else(|error| panic!("cannot signal {}: {error}", self.name));
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if status.is_none() {
            let mut child = self
                .child
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            *status = child
                .try_wait()
                .unwrap_or_else(|error| panic!("wait for {}: {error}", self.name));
        }
        *status
    }

    /// Waits until the process exits; panics (showing its stderr) after `timeout`. Then waits
    /// (at most [`OUTPUT_GRACE`]) until its output is captured to the end, so
    /// [`ChildGuard::stderr`] holds its last words.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let status = wait_for_value(timeout, self.exit_awaited(), || {
            std::future::ready(self.try_status())
        })
        .await;
        let grace = Instant::now() + OUTPUT_GRACE;
        while !self.drained() && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        status
    }

    /// Blocking form of [`ChildGuard::wait_exit`].
    pub fn wait_exit_sync(&self, timeout: Duration) -> ExitStatus {
        let mut found = None;
        wait_for_sync(timeout, self.exit_awaited(), || {
            found = self.try_status();
            found.is_some()
        });
        let grace = Instant::now() + OUTPUT_GRACE;
        while !self.drained() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(5));
        }
        found.expect("the condition held")
    }

    /// What a wait for the exit says when it times out: the process and its stderr then.
    fn exit_awaited(&self) -> impl Display + '_ {
        lazy(|| {
            format!(
                "{} (pid {}) to exit; stderr: {}",
                self.name,
                self.pid,
                self.stderr()
            )
        })
    }

    /// Waits until stdout contains `needle`; returns the first line that does.
    pub async fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> String {
        let what = lazy(|| {
            format!(
                "{} to print {needle:?}; stdout so far: {:?}",
                self.name,
                self.stdout()
            )
        });
        wait_for_value(timeout, what, || {
            std::future::ready(
                self.stdout()
                    .lines()
                    .find(|line| line.contains(needle))
                    .map(str::to_owned),
            )
        })
        .await
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        {
            let mut done = self
                .watchdog
                .done
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            *done = true;
            self.watchdog.wake.notify_all();
        }
        // The group outlives the leader if it forked; kill it even when the leader is gone.
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        if let Ok(mut child) = self.child.lock() {
            let _ = child.wait();
        }
        if self.watchdog.fired.load(Ordering::SeqCst) && !thread::panicking() {
            panic!(
                "the watchdog killed {}; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }
}

/// Describes how a process ended, e.g. "exit code 0" or "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// Reads `pipe` line by line into `into` on a thread, until EOF.
fn drain(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>, done: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            into.lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
        done.store(true, Ordering::SeqCst);
    });
}

// ---------------------------------------------------------------------------------------------
// mcp-echo

/// Starts `mcp-echo` on `port` and waits until it accepts connections.
pub async fn start_echo(port: u16) -> ChildGuard {
    let echo = ChildGuard::spawn(
        format!("mcp-echo on port {port}"),
        Command::new(bin("mcp-echo"))
            .env("MCP_PORT", port.to_string())
            .env("RUST_LOG", "info"),
    );
    echo.wait_for_stdout("listening on", Duration::from_secs(20))
        .await;
    echo
}

/// `http://127.0.0.1:<port><path>`.
pub fn local_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A daemon handle whose port block starts with the gateway's port: the gateway's URLs, once
/// for every such handle (`GwDaemon`, `OpsDaemon`). Bring it into scope to call them.
pub trait GatewayUrls {
    /// The daemon's port block; its first port is the gateway's.
    fn ports(&self) -> &PortBlock;

    fn gateway_port(&self) -> u16 {
        self.ports().port(0)
    }

    /// `http://127.0.0.1:<gateway><path>`.
    fn url(&self, path: &str) -> String {
        local_url(self.gateway_port(), path)
    }

    /// The gateway URL of server `name`.
    fn mcp_url(&self, name: &str) -> String {
        self.url(&format!("/api/v1/mcp/{name}/mcp"))
    }
}

/// The entry of server `name` in the JSON of `mcpctl --json status`, if it has one; panics
/// when the JSON has no `servers` array at all.
pub fn server_entry<'a>(
    status: &'a serde_json::Value,
    name: &str,
) -> Option<&'a serde_json::Value> {
    status["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no servers array in {status}"))
        .iter()
        .find(|server| server["name"] == name)
}

/// The MCP URL of a server on `port`.
pub fn mcp_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp")
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// First poll interval; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(5);
const MAX_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `condition` until it returns true; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: impl Display, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value(timeout, what, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await;
}

/// Polls `condition` until it returns `Some`, and returns the value; panics with `what` after
/// `timeout`.
pub async fn wait_for_value<T, F, Fut>(timeout: Duration, what: impl Display, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// Blocking form of [`wait_for`], for tests without a runtime.
pub fn wait_for_sync(timeout: Duration, what: impl Display, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(interval);
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// A message computed only when shown, so a timeout reports the state at the time it fired.
pub fn lazy<F: Fn() -> String>(message: F) -> impl Display {
    struct Lazy<F>(F);
    impl<F: Fn() -> String> Display for Lazy<F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&(self.0)())
        }
    }
    Lazy(message)
}

/// The `port` of a server in `mcpctl --json status` output.
pub fn port_of(status: &serde_json::Value) -> u16 {
    let port = status["port"]
        .as_u64()
        .unwrap_or_else(|| panic!("no port in {status}"));
    u16::try_from(port).expect("a port fits in u16")
}

/// The `pid` of a server in `mcpctl --json status` output.
pub fn pid_of(status: &serde_json::Value) -> u32 {
    let pid = status["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in {status}"));
    u32::try_from(pid).expect("a pid fits in u32")
}
