//! A real `mcpd` process for the operations tests: its own temp dir, ports, socket, HS256
//! key and short probe and backoff intervals; plus `mcpctl`, the gateway and `/metrics` as the
//! operator sees them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{ChildGuard, GatewayUrls, PortBlock, TestDir, bin, lazy, port_block, wait_for_value};

/// How long a server may take to be running, or a reload to show.
pub const SETTLE: Duration = Duration::from_secs(15);

/// The secret `mcpctl token` signs with and the gateway verifies against.
const SECRET: &str = "ops-test-secret-0123456789abcdef0123456789abcdef";

/// A running `mcpd` with its files in a temp dir. Dropping it kills its process group.
pub struct OpsDaemon {
    pub dir: TestDir,
    pub ports: PortBlock,
    pub process: ChildGuard,
    http: reqwest::Client,
}

/// What to start the daemon with beyond its files.
#[derive(Default)]
pub struct Launch {
    /// Extra environment for mcpd.
    pub env: Vec<(String, String)>,
    /// Extra lines appended to mcpd.yaml (top-level keys).
    pub extra_config: String,
}

impl GatewayUrls for OpsDaemon {
    fn ports(&self) -> &PortBlock {
        &self.ports
    }
}

impl OpsDaemon {
    /// Writes mcpd.yaml and the server files `files` (name -> YAML) into a fresh temp dir,
    /// starts mcpd and waits until its gateway answers.
    pub async fn start(files: &[(&str, String)]) -> OpsDaemon {
        Self::start_with(files, Launch::default()).await
    }

    pub async fn start_with(files: &[(&str, String)], launch: Launch) -> OpsDaemon {
        let dir = TestDir::new();
        let ports = port_block(20);
        dir.write("jwt.secret", SECRET);
        dir.write("mcpd.yaml", daemon_yaml(&ports, &launch.extra_config));
        std::fs::create_dir_all(dir.join("mcp")).expect("create services_dir");
        for (name, yaml) in files {
            dir.write(Path::new("mcp").join(name), yaml);
        }
        let mut command = Command::new(bin("mcpd"));
        command
            .arg("--config")
            .arg(dir.join("mcpd.yaml"))
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("MCPD_SOCKET");
        for (key, value) in &launch.env {
            command.env(key, value);
        }
        let process = ChildGuard::spawn("mcpd", &mut command);
        let daemon = OpsDaemon {
            dir,
            ports,
            process,
            http: reqwest::Client::new(),
        };
        let url = daemon.url("/healthz");
        wait_for_value(
            SETTLE,
            lazy(|| format!("mcpd to serve; stderr: {}", daemon.process.stderr())),
            || {
                let request = daemon.http.get(&url).send();
                async move { request.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
        daemon
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mcpd.sock")
    }

    pub fn services_dir(&self) -> PathBuf {
        self.dir.join("mcp")
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Writes a server file in place.
    pub fn write_server(&self, file: &str, yaml: &str) {
        self.dir.write(Path::new("mcp").join(file), yaml);
    }

    /// Saves a server file the way careful editors do: a hidden temp file renamed over it.
    pub fn rename_save(&self, file: &str, yaml: &str) {
        let temp = self
            .dir
            .write(Path::new("mcp").join(format!(".{file}.tmp")), yaml);
        std::fs::rename(temp, self.services_dir().join(file)).expect("rename over the file");
    }

    pub fn remove_server_file(&self, file: &str) {
        std::fs::remove_file(self.services_dir().join(file)).expect("remove a server file");
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Runs `mcpctl --socket <ours> ARGS` to completion.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("mcpctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("MCPD_SOCKET")
            .output()
            .expect("run mcpctl")
    }

    /// `mcpctl --json ARGS`, parsed; panics unless its exit code is `expect_code`.
    pub fn ctl_json(&self, args: &[&str], expect_code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.ctl(&all);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(expect_code),
            "mcpctl {args:?}: stdout {stdout}, stderr {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|error| panic!("mcpctl {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// `mcpctl status` as JSON (exit code not checked: configuration errors make it 0 too).
    pub fn status(&self) -> Value {
        let output = self.ctl(&["--json", "status"]);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "mcpctl status printed no JSON ({error}): {} / {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// The status object of `name`, if the daemon knows it.
    pub fn server(&self, name: &str) -> Option<Value> {
        crate::server_entry(&self.status(), name).cloned()
    }

    /// Waits until `name` is running and returns its pid.
    pub async fn wait_running(&self, name: &str) -> u32 {
        self.wait_server(name, "running", |s| {
            (s["state"] == "running")
                .then(|| s["pid"].as_u64())
                .flatten()
                .map(|pid| pid as u32)
        })
        .await
    }

    /// Waits until `name` runs with a pid other than `old`; returns the new pid.
    pub async fn wait_new_pid(&self, name: &str, old: u32) -> u32 {
        self.wait_server(name, "running with a new pid", |s| {
            let pid = s["pid"].as_u64()? as u32;
            (s["state"] == "running" && pid != old).then_some(pid)
        })
        .await
    }

    /// Waits until `check` returns a value for the status of `name`.
    pub async fn wait_server<T>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Value) -> Option<T>,
    ) -> T {
        wait_for_value(
            SETTLE,
            lazy(|| {
                format!(
                    "server {name} {what}; status: {}; mcpd stderr: {}",
                    self.status(),
                    self.process.stderr()
                )
            }),
            || std::future::ready(self.server(name).as_ref().and_then(&check)),
        )
        .await
    }

    /// Waits until the daemon no longer lists `name`.
    pub async fn wait_gone(&self, name: &str) {
        wait_for_value(
            SETTLE,
            lazy(|| format!("server {name} to be removed; status: {}", self.status())),
            || std::future::ready(self.server(name).is_none().then_some(())),
        )
        .await
    }

    /// `GET /api/v1/mcp/registry`, the entry of `name`.
    pub async fn registry_entry(&self, name: &str) -> Option<Value> {
        let body: Value = self
            .http
            .get(self.url("/api/v1/mcp/registry"))
            .send()
            .await
            .expect("GET the registry")
            .json()
            .await
            .expect("the registry is JSON");
        body["data"]
            .as_array()
            .expect("registry data")
            .iter()
            .find(|entry| entry["name"] == name)
            .cloned()
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert!(
            response.status().is_success(),
            "/metrics answered {}",
            response.status()
        );
        response.text().await.expect("metrics body")
    }

    /// A token from `mcpctl token` with these scopes and the default audience.
    pub fn token(&self, scopes: &[&str]) -> String {
        let mut args = vec!["token"];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let reply = self.ctl_json(&args, 0);
        reply["token"].as_str().expect("a token").to_owned()
    }

    /// POSTs an MCP `initialize` to `server` through the gateway, with `token` if given;
    /// returns the status code.
    pub async fn initialize(&self, server: &str, token: Option<&str>) -> u16 {
        let mut request = self
            .http
            .post(self.mcp_url(server))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(INITIALIZE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("POST initialize")
            .status()
            .as_u16()
    }

    /// Lines of mcpd's stderr containing `needle`.
    pub fn log_lines(&self, needle: &str) -> usize {
        self.process
            .stderr()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ops-test","version":"0"}}}"#;

/// mcpd.yaml for a test: everything inside the temp dir, gateway on the block's first port,
/// servers on the rest, short probe, backoff and stop intervals.
pub fn daemon_yaml(ports: &PortBlock, extra: &str) -> String {
    let bin_dir = bin("mcp-echo")
        .parent()
        .expect("the binaries' directory")
        .display()
        .to_string();
    let gateway = ports.port(0);
    format!(
        r#"services_dir: mcp
port_range: {first}-{last}
bin_dirs: ["{bin_dir}"]
state_dir: state
gateway:
  listen: 127.0.0.1:{gateway}
  public_url: http://127.0.0.1:{gateway}
control:
  socket: mcpd.sock
logs:
  dir: logs
auth:
  keys:
    - {{hs256_secret_file: jwt.secret}}
defaults:
  restart: {{backoff: 100ms, max_backoff: 1s}}
  health: {{interval: 200ms, timeout: 2s, start_timeout: 20s}}
  stop_timeout: 3s
{extra}"#,
        first = ports.port(1),
        last = ports.last(),
    )
}

/// A server file with one mcp-echo server; `extra` is indented YAML under the server.
pub fn echo_file(name: &str, extra: &str) -> String {
    let mut yaml = format!("mcp_servers:\n  {name}:\n    binary: mcp-echo\n");
    for line in extra.lines() {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}
