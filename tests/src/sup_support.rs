//! Helpers for the supervision tests: a real `mcpd` in its own temp dir, ports and socket,
//! driven and read through the real `mcpctl --json`; hostile fixture scripts; and the process
//! table (`/proc`) to check what the daemon left behind.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{ChildGuard, PortBlock, TestDir, bin, lazy, port_block, wait_for_value};

/// How long a supervision test's daemon may live before its watchdog fails the test.
pub const DAEMON_WATCHDOG: Duration = Duration::from_secs(90);
/// Time for the daemon to start and answer on its socket, and for `mcpctl` to answer.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of a fixture script in tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A daemon under test: its directory (mcpd.yaml, `mcp/` server files, state, logs, socket),
/// its ports (the first for the gateway, the rest its `port_range`) and, once started, its
/// process. Dropping it kills the daemon and everything it started.
pub struct SupDaemon {
    pub dir: TestDir,
    pub ports: PortBlock,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub logs_dir: PathBuf,
    process: Option<ChildGuard>,
    /// Processes to kill when the test ends, besides the daemon's descendants.
    known: Mutex<BTreeSet<u32>>,
}

impl SupDaemon {
    /// A daemon config with `ports` ports for servers and short timings for tests: backoff
    /// 100 ms (at most 400 ms), burst 5 in 60 s, health every 200 ms with a 1 s timeout and 3
    /// failures, start timeout 5 s, stop timeout 2 s. Servers override them in their files.
    pub fn new(ports: u16) -> SupDaemon {
        let dir = TestDir::new();
        let block = port_block(ports + 1);
        let range = format!("{}-{}", block.port(1), block.last());
        let gateway = block.port(0);
        let bin_dir = bin("mcp-echo")
            .parent()
            .expect("binaries live in a directory")
            .to_path_buf();
        let yaml = format!(
            "services_dir: mcp\n\
             port_range: {range}\n\
             bin_dirs: [{bin_dir}]\n\
             state_dir: state\n\
             gateway:\n  listen: 127.0.0.1:{gateway}\n  public_url: http://127.0.0.1:{gateway}\n\
             control:\n  socket: mcpd.sock\n\
             logs:\n  dir: logs\n  rotation: never\n\
             defaults:\n\
             \x20 restart: {{policy: on-failure, backoff: 100ms, max_backoff: 400ms, reset_after: 30s, burst: 5, window: 60s}}\n\
             \x20 health: {{interval: 200ms, timeout: 1s, failures: 3, start_timeout: 5s}}\n\
             \x20 stop_timeout: 2s\n",
            bin_dir = bin_dir.display(),
        );
        let config = dir.write("mcpd.yaml", yaml);
        std::fs::create_dir_all(dir.join("mcp")).expect("create the services dir");
        SupDaemon {
            socket: dir.join("mcpd.sock"),
            state_dir: dir.join("state"),
            logs_dir: dir.join("logs"),
            config,
            ports: block,
            dir,
            process: None,
            known: Mutex::new(BTreeSet::new()),
        }
    }

    /// The first port of the server range.
    pub fn first_server_port(&self) -> u16 {
        self.ports.port(1)
    }

    /// Writes `mcp/<name>.yaml` defining server `name` with `body`: YAML keys of the server,
    /// one per line, unindented (they are indented here).
    pub fn server(&self, name: &str, body: &str) {
        let mut yaml = format!("mcp_servers:\n  {name}:\n");
        for line in body.lines() {
            let _ = writeln!(yaml, "    {line}");
        }
        self.dir.write(format!("mcp/{name}.yaml"), yaml);
    }

    /// Server `name` running the real `mcp-echo`, plus `extra` keys.
    pub fn echo(&self, name: &str, extra: &str) {
        let body = format!("binary: {}\n{extra}", bin("mcp-echo").display());
        self.server(name, &body);
    }

    /// Server `name` running fixture `script`, with `MCP_ECHO` (the path of `mcp-echo`) and
    /// `env` in its environment, plus `extra` keys.
    pub fn fixture_server(&self, name: &str, script: &str, env: &[(&str, &str)], extra: &str) {
        let mut body = format!(
            "binary: {}\nenv:\n  MCP_ECHO: {}\n",
            fixture(script).display(),
            bin("mcp-echo").display()
        );
        for (key, value) in env {
            let _ = writeln!(body, "  {key}: {value}");
        }
        body.push_str(extra);
        self.server(name, &body);
    }

    /// Starts `mcpd --config mcpd.yaml` and waits until `mcpctl status` answers.
    pub async fn start(&mut self) -> &ChildGuard {
        assert!(self.process.is_none(), "the daemon is already running");
        let mut command = Command::new(bin("mcpd"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,rmcp=off")
            .env_remove("MCPD_SOCKET");
        let process = ChildGuard::spawn_with_watchdog("mcpd", &mut command, DAEMON_WATCHDOG);
        self.process = Some(process);
        let what = lazy(|| {
            format!(
                "mcpd to answer on {}; its stderr: {}",
                self.socket.display(),
                self.daemon().stderr()
            )
        });
        wait_for_value(CTL_TIMEOUT, what, || async {
            if let Some(status) = self.daemon().try_status() {
                panic!(
                    "mcpd exited at start ({status}); stderr: {}",
                    self.daemon().stderr()
                );
            }
            let (code, _) = self.ctl(&["status"]).await;
            (code == Some(0)).then_some(())
        })
        .await;
        self.daemon()
    }

    /// The daemon process; panics when it was not started.
    pub fn daemon(&self) -> &ChildGuard {
        self.process.as_ref().expect("the daemon was started")
    }

    pub fn pid(&self) -> u32 {
        self.daemon().pid()
    }

    /// Hands the daemon process over (to wait for its exit); `start` may run again after.
    pub fn take_daemon(&mut self) -> ChildGuard {
        self.process.take().expect("the daemon was started")
    }

    /// Runs `mcpctl --socket SOCKET --json ARGS...`; returns its exit code and stdout.
    pub async fn ctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut command = tokio::process::Command::new(bin("mcpctl"));
        command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("mcpctl {args:?} did not finish in {CTL_TIMEOUT:?}"))
            .unwrap_or_else(|error| panic!("cannot run mcpctl: {error}"));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Runs an `mcpctl` command that must succeed and print one JSON document.
    pub async fn ctl_json(&self, args: &[&str]) -> Value {
        let (code, stdout) = self.ctl(args).await;
        assert_eq!(code, Some(0), "mcpctl {args:?} failed: {stdout}");
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|error| panic!("mcpctl {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// The server objects of `mcpctl status --json`.
    pub async fn statuses(&self) -> Vec<Value> {
        let status = self.ctl_json(&["status"]).await;
        status["servers"]
            .as_array()
            .unwrap_or_else(|| panic!("no servers in {status}"))
            .clone()
    }

    /// The server object of `name` in `mcpctl status NAME --json`.
    pub async fn status(&self, name: &str) -> Value {
        let status = self.ctl_json(&["status", name]).await;
        crate::server_entry(&status, name)
            .cloned()
            .unwrap_or_else(|| panic!("no server {name} in {status}"))
    }

    /// Polls `mcpctl status NAME` until `condition` holds; returns that status.
    pub async fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let last = std::sync::Mutex::new(Value::Null);
        let description = lazy(|| {
            format!(
                "{name}: {what}; last status: {}; mcpd stderr:\n{}",
                last.lock().unwrap_or_else(|e| e.into_inner()),
                self.daemon().stderr()
            )
        });
        wait_for_value(timeout, description, || async {
            let status = self.status(name).await;
            let ok = condition(&status);
            *last.lock().unwrap_or_else(|e| e.into_inner()) = status.clone();
            ok.then_some(status)
        })
        .await
    }

    /// Waits until server `name` is in `state`.
    pub async fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        self.wait_status(name, timeout, &format!("state {state}"), |s| {
            s["state"] == state
        })
        .await
    }

    /// The log file of server `name` under `logs.dir` (`<name>.log`, or a rotated
    /// `<name>.<date>.log`), if there is one.
    pub fn log_file(&self, name: &str) -> Option<PathBuf> {
        let entries = std::fs::read_dir(&self.logs_dir).ok()?;
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|file| file.to_str())
                    .is_some_and(|file| {
                        file == format!("{name}.log")
                            || (file.starts_with(&format!("{name}.")) && file.ends_with(".log"))
                    })
            })
    }
}

impl SupDaemon {
    /// Remembers processes of this test (e.g. the daemon's grandchildren) to kill at its end
    /// if they still run, even once the daemon is gone.
    pub fn remember(&self, pids: impl IntoIterator<Item = u32>) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(pids);
    }
}

impl Drop for SupDaemon {
    fn drop(&mut self) {
        // A failed test must not leave the daemon's children or grandchildren behind.
        let mut pids = std::mem::take(&mut *self.known.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(process) = &self.process {
            pids.extend(descendants(process.pid()));
        }
        for pid in pids {
            if !is_dead(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        self.process = None;
    }
}

// ---------------------------------------------------------------------------------------------
// The process table

/// State letter and parent of a process, from `/proc/<pid>/stat`; `None` when it is gone.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every process, with its state and parent.
pub fn processes() -> Vec<(u32, char, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| proc_stat(pid).map(|(state, ppid)| (pid, state, ppid)))
        .collect()
}

/// The direct children of `pid` with their states.
pub fn children(pid: u32) -> Vec<(u32, char)> {
    processes()
        .into_iter()
        .filter(|(_, _, ppid)| *ppid == pid)
        .map(|(child, state, _)| (child, state))
        .collect()
}

/// Every descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found = BTreeSet::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _, ppid) in &all {
            if *ppid == parent && found.insert(*child) {
                frontier.push(*child);
            }
        }
    }
    found
}

/// True when `pid` no longer runs: gone, or a zombie (dead, waiting to be reaped).
pub fn is_dead(pid: u32) -> bool {
    proc_stat(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Reads a file of whitespace-separated pids (written by a fixture), once it exists.
pub fn read_pids(path: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(path).ok()?;
    let pids: Vec<u32> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (!pids.is_empty()).then_some(pids)
}

impl SupDaemon {
    /// The `mcpd_server_probe_seconds` value of `server`, as the gateway's `/metrics` prints it.
    pub async fn probe_gauge(&self, server: &str) -> Option<String> {
        let gateway = self.ports.port(0);
        let text = reqwest::get(format!("http://127.0.0.1:{gateway}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let label = format!("server=\"{server}\"");
        text.lines()
            .find(|line| line.contains("server_probe_seconds{") && line.contains(&label))
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    }

    /// Waits until each of `servers` has been probed `probes` more times (distinct gauge
    /// values), calling `check` before every look.
    pub async fn wait_probes(&self, servers: &[&str], probes: usize, mut check: impl FnMut()) {
        let seen = std::sync::Arc::new(Mutex::new(vec![BTreeSet::<String>::new(); servers.len()]));
        let what = lazy(|| {
            let counts: Vec<usize> = seen.lock().unwrap().iter().map(BTreeSet::len).collect();
            format!("{probes} probes of each of {servers:?}; seen {counts:?}")
        });
        wait_for_value(Duration::from_secs(30), what, || {
            check();
            let seen = seen.clone();
            async move {
                let mut values = Vec::new();
                for server in servers {
                    values.push(self.probe_gauge(server).await);
                }
                let mut seen = seen.lock().unwrap();
                for (set, value) in seen.iter_mut().zip(values) {
                    set.extend(value);
                }
                seen.iter().all(|set| set.len() > probes).then_some(())
            }
        })
        .await;
    }
}
