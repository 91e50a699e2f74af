//! Helpers of the reliability tests (fault matrix and gateway abuse): a real `mcpd` started
//! on its own temp dir and port block, its status read through the real `mcpctl`, the
//! hostile fixture scripts of tests/fixtures-rel/, and process inspection through /proc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{ChildGuard, PortBlock, TestDir, bin, lazy, port_block, wait_for_sync};

/// How long a test waits for any one thing to happen.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The fast lifecycle settings every reliability test starts from: short backoff, frequent
/// probes, and a crash-loop limit high enough never to park a server during a test. Probes
/// are patient (2 s each, three failures in a row), since many tests check that a server was
/// not restarted and a loaded machine can slow a healthy one; a test that makes probes fail
/// on purpose puts [`QUICK_PROBES`] on its server.
const DEFAULTS: &str = "\
defaults:
  restart: {policy: on-failure, backoff: 100ms, max_backoff: 400ms, reset_after: 60s, burst: 100, window: 60s}
  health: {interval: 200ms, timeout: 2s, failures: 3, start_timeout: 5s}
  stop_timeout: 1s
";

/// A server entry's line for tests that make its probes fail on purpose: a failure is seen
/// after two probes of 400 ms, instead of up to three of 2 s.
pub const QUICK_PROBES: &str = "    health: {timeout: 400ms, failures: 2}\n";

/// A test's own daemon setup: temp dir, ports, and the paths of its files.
#[derive(Debug)]
pub struct Setup {
    pub dir: TestDir,
    pub ports: PortBlock,
    pub gateway_port: u16,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub services: PathBuf,
    /// `state_dir` of mcpd.yaml (default `state`, inside the temp dir).
    pub state_dir: String,
    /// Extra top-level lines of mcpd.yaml (e.g. a `logs:` block).
    pub extra: String,
    /// Keys added to the `gateway:` block after `listen` (e.g. `max_body: 1024`).
    pub gateway_keys: String,
}

impl Setup {
    /// A temp dir with `mcp/`, a block of 20 ports (the first for the gateway, the rest the
    /// servers' range) and no servers yet.
    pub fn new() -> Self {
        let dir = TestDir::new();
        let ports = port_block(20);
        let services = dir.join("mcp");
        std::fs::create_dir_all(&services).expect("services dir");
        Setup {
            config: dir.join("mcpd.yaml"),
            socket: dir.join("run/mcpd.sock"),
            gateway_port: ports.port(0),
            services,
            dir,
            ports,
            state_dir: "state".to_owned(),
            extra: String::new(),
            gateway_keys: String::new(),
        }
    }

    /// The gateway's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// Writes mcpd.yaml.
    pub fn write_config(&self) {
        let text = format!(
            "services_dir: mcp\n\
             port_range: {}-{}\n\
             state_dir: {:?}\n\
             gateway: {{listen: \"127.0.0.1:{}\"{}}}\n\
             control: {{socket: run/mcpd.sock}}\n\
             {DEFAULTS}{}",
            self.ports.port(1),
            self.ports.last(),
            self.state_dir,
            self.gateway_port,
            if self.gateway_keys.is_empty() {
                String::new()
            } else {
                format!(", {}", self.gateway_keys)
            },
            self.extra,
        );
        std::fs::write(&self.config, text).expect("write mcpd.yaml");
    }

    /// Writes `mcp/<file>.yaml` with one server running `binary` (absolute) with `env`.
    pub fn write_server(&self, file: &str, name: &str, binary: &Path, env: &[(&str, String)]) {
        self.write_server_with(file, name, binary, env, "");
    }

    /// [`Setup::write_server`], plus `extra` (indented lines of the entry).
    pub fn write_server_with(
        &self,
        file: &str,
        name: &str,
        binary: &Path,
        env: &[(&str, String)],
        extra: &str,
    ) {
        let env: Vec<String> = env
            .iter()
            .map(|(key, value)| format!("{key}: {value:?}"))
            .collect();
        let text = format!(
            "mcp_servers:\n  {name}:\n    binary: {:?}\n    env: {{{}}}\n{extra}",
            binary.display().to_string(),
            env.join(", ")
        );
        std::fs::write(self.services.join(format!("{file}.yaml")), text).expect("server file");
    }

    /// Writes `mcp/<file>.yaml` as given.
    pub fn write_server_yaml(&self, file: &str, text: &str) {
        std::fs::write(self.services.join(format!("{file}.yaml")), text).expect("server file");
    }

    /// Writes mcpd.yaml (if not written yet), starts mcpd and waits until its gateway answers
    /// /healthz and its socket answers `mcpctl status`.
    pub fn start(&self) -> Daemon {
        self.start_with(|_| {})
    }

    /// [`Setup::start`], with a last say on the command (e.g. resource limits).
    pub fn start_with(&self, adjust: impl FnOnce(&mut Command)) -> Daemon {
        if !self.config.exists() {
            self.write_config();
        }
        let mut command = Command::new(bin("mcpd"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,rmcp=off")
            .env_remove("MCPD_CONFIG")
            .env_remove("NOTIFY_SOCKET");
        adjust(&mut command);
        let daemon = ChildGuard::spawn("mcpd", &mut command);
        wait_for_sync(
            PATIENCE,
            lazy(|| format!("mcpd to serve; its log:\n{}", daemon.stderr())),
            || {
                assert!(
                    daemon.try_status().is_none(),
                    "mcpd exited: {}",
                    daemon.stderr()
                );
                healthz(self.gateway_port) && self.try_status().is_some()
            },
        );
        let state_dir = self.dir.path().join(&self.state_dir);
        Daemon {
            child: Some(daemon),
            groups_dir: state_dir.join("groups"),
        }
    }

    /// `mcpctl ARGS` against this daemon: (exit code, stdout, stderr).
    pub fn mcpctl(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(bin("mcpctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run mcpctl");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `mcpctl --json status`, or `None` when the daemon does not answer.
    pub fn try_status(&self) -> Option<Value> {
        let (code, out, _) = self.mcpctl(&["--json", "status"]);
        (code == 0)
            .then(|| serde_json::from_str(&out).ok())
            .flatten()
    }

    /// One server's entry of `mcpctl --json status`.
    pub fn server(&self, name: &str) -> Option<Value> {
        crate::server_entry(&self.try_status()?, name).cloned()
    }

    /// Waits until `name`'s status satisfies `check`, and returns that status.
    pub fn wait_server(
        &self,
        name: &str,
        what: &str,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        let last = std::cell::RefCell::new(None::<Value>);
        wait_for_sync(
            PATIENCE,
            lazy(|| format!("server {name}: {what}; last status: {:?}", last.borrow())),
            || {
                let status = self.server(name);
                let ok = status.as_ref().is_some_and(&mut check);
                *last.borrow_mut() = status;
                ok
            },
        );
        last.into_inner().expect("a status")
    }

    /// Waits until `name` runs and returns its (pid, port).
    pub fn wait_running(&self, name: &str) -> (u32, u16) {
        let status = self.wait_server(name, "running", |s| s["state"] == "running");
        pid_port(&status)
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// A running mcpd. Dropping it stops it with SIGTERM (so it stops its servers), then kills
/// whatever is left in the server process groups it recorded, so no fixture outlives a test.
#[derive(Debug)]
pub struct Daemon {
    child: Option<ChildGuard>,
    groups_dir: PathBuf,
}

impl std::ops::Deref for Daemon {
    type Target = ChildGuard;

    fn deref(&self) -> &ChildGuard {
        self.child.as_ref().expect("the daemon guard")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let groups: Vec<u32> = std::fs::read_dir(&self.groups_dir)
            .map(|dir| {
                dir.flatten()
                    .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
                    .filter_map(|text| text.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(child) = self.child.take() {
            if child.try_status().is_none() {
                child.signal(nix::sys::signal::Signal::SIGTERM);
                let deadline = std::time::Instant::now() + PATIENCE;
                while child.try_status().is_none() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            drop(child);
        }
        for group in groups {
            if group > 1 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The pid and port of a server status.
pub fn pid_port(status: &Value) -> (u32, u16) {
    let pid = status["pid"].as_u64().expect("pid") as u32;
    let port = status["port"].as_u64().expect("port") as u16;
    (pid, port)
}

/// A fixture script of tests/fixtures-rel/.
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures-rel")
        .join(name);
    assert!(path.is_file(), "no fixture {}", path.display());
    path
}

/// True when GET /healthz answers 200.
pub fn healthz(port: u16) -> bool {
    raw_request(
        port,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
}

/// Sends `request` as is over a new connection and reads the answer until the server closes
/// (or 5 s pass); `None` when nothing could be sent or read.
pub fn raw_request(port: u16, request: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// The status code of a raw HTTP/1.1 answer.
pub fn status_code(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields[0] != "Z")
}

/// Every live (non-zombie) process whose process group is one of `groups`.
pub fn processes_in_groups(groups: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|fields| {
                fields[0] != "Z"
                    && fields[2]
                        .parse::<u32>()
                        .is_ok_and(|group| groups.contains(&group))
            })
        })
        .collect()
}

/// Live children of `parent` that lead their own process group and are not in `except`:
/// for mcpd, its reaper process.
pub fn group_leading_children(parent: u32, except: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !except.contains(pid))
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|fields| {
                fields[0] != "Z"
                    && fields[1].parse::<u32>() == Ok(parent)
                    && fields[2].parse::<u32>() == Ok(pid)
            })
        })
        .collect()
}

/// Reads until the gateway closes `stream` (EOF or reset) and returns what it sent before;
/// panics if it is still open after twice [`PATIENCE`].
pub fn wait_closed(stream: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::{ErrorKind, Read as _};
    let limit = std::time::Instant::now() + PATIENCE * 2;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "{what}: still open");
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return seen,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => panic!("{what}: {err}"),
        }
    }
}

/// A started daemon with the one server `echo` (mcp-echo) running, `gateway_keys` added to its
/// `gateway:` block.
pub fn echo_daemon(gateway_keys: &str) -> (Setup, Daemon) {
    let mut setup = Setup::new();
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    setup.gateway_keys = gateway_keys.to_owned();
    setup.write_config();
    let daemon = setup.start();
    setup.wait_running("echo");
    (setup, daemon)
}
