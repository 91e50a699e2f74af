//! A real `mcpd` for the gateway's end-to-end tests: its own temp dir, config, HS256 key,
//! gateway port and port range, started as a process and driven over HTTP and `mcpctl`.
//!
//! [`GwDaemon::start`] writes `mcpd.yaml` (gateway on the first port of a [`port_block`],
//! servers on the rest, short health and backoff settings, `auth.keys` with a secret file)
//! and one server file, starts `mcpd`, and waits until the gateway answers. Tests then wait
//! for their servers with [`GwDaemon::wait_running`] and mint tokens with
//! [`GwDaemon::token`].

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::{ChildGuard, GatewayUrls, PortBlock, TestDir, bin, lazy, port_block, wait_for};

/// How long a daemon and its servers may take to come up.
pub const GW_START: Duration = Duration::from_secs(30);

/// A running `mcpd` with its temp dir; dropping it kills the daemon's process group (its
/// servers die with it through `PR_SET_PDEATHSIG`) and removes the directory.
pub struct GwDaemon {
    // Field order is drop order: the daemon goes before its directory.
    pub process: ChildGuard,
    pub config: PathBuf,
    pub ports: PortBlock,
    pub dir: TestDir,
}

impl GatewayUrls for GwDaemon {
    fn ports(&self) -> &PortBlock {
        &self.ports
    }
}

impl GwDaemon {
    /// Starts `mcpd` with `servers` as the body of one server file (YAML, `mcp_servers:`
    /// included) and waits until its gateway answers `/healthz`. `gateway_extra` is spliced
    /// into the `gateway:` block (indented lines, may be empty).
    pub async fn start(servers: &str, gateway_extra: &str) -> GwDaemon {
        Self::start_with(servers, gateway_extra, true).await
    }

    /// [`GwDaemon::start`] with or without `gateway.public_url` (set to the gateway's own
    /// address when `public_url` is true).
    pub async fn start_with(servers: &str, gateway_extra: &str, public_url: bool) -> GwDaemon {
        let ports = port_block(20);
        let dir = TestDir::new();
        dir.write("jwt.secret", "gateway-e2e-secret-0123456789abcdef");
        dir.write("mcp/servers.yaml", servers);
        let gateway = ports.port(0);
        let config = dir.write(
            "mcpd.yaml",
            format!(
                "services_dir: mcp
port_range: {first}-{last}
bin_dirs: [{bin_dir}]
state_dir: state
gateway:
  listen: 127.0.0.1:{gateway}
{public_url}  max_body: 64KiB
{gateway_extra}
control:
  socket: state/mcpd.sock
logs:
  dir: logs
auth:
  keys:
    - {{hs256_secret_file: jwt.secret}}
  leeway: 5s
defaults:
  restart: {{backoff: 100ms, max_backoff: 1s, reset_after: 30s, burst: 20, window: 60s}}
  health: {{interval: 200ms, timeout: 3s, failures: 3, start_timeout: 20s}}
  stop_timeout: 2s
",
                public_url = if public_url {
                    format!("  public_url: http://127.0.0.1:{gateway}\n")
                } else {
                    String::new()
                },
                first = ports.port(1),
                last = ports.last(),
                bin_dir = bin("mcp-echo")
                    .parent()
                    .expect("binaries live in a directory")
                    .display(),
            ),
        );
        let process = ChildGuard::spawn(
            format!("mcpd with gateway on {gateway}"),
            Command::new(bin("mcpd"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .env_remove("MCPD_CONFIG")
                .env_remove("NOTIFY_SOCKET"),
        );
        let daemon = GwDaemon {
            process,
            config,
            ports,
            dir,
        };
        let health = daemon.url("/healthz");
        wait_for(
            GW_START,
            lazy(|| {
                format!(
                    "mcpd's gateway to answer; stderr: {}",
                    daemon.process.stderr()
                )
            }),
            || async {
                assert!(
                    daemon.process.try_status().is_none(),
                    "mcpd exited: {}",
                    daemon.process.stderr()
                );
                reqwest::get(&health)
                    .await
                    .is_ok_and(|response| response.status().is_success())
            },
        )
        .await;
        daemon
    }

    /// Stops mcpd with SIGTERM (its servers go with it), starts it again on the same
    /// configuration and state directory, and waits until its gateway answers.
    pub async fn restart(&mut self) {
        self.process.signal(nix::sys::signal::Signal::SIGTERM);
        self.process.wait_exit(GW_START).await;
        self.process = ChildGuard::spawn(
            "mcpd, restarted",
            Command::new(bin("mcpd"))
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .env_remove("MCPD_CONFIG")
                .env_remove("NOTIFY_SOCKET"),
        );
        let health = self.url("/healthz");
        wait_for(GW_START, "the restarted gateway", || async {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// `GET /api/v1/mcp/registry`, parsed.
    pub async fn registry(&self) -> Value {
        let response = reqwest::get(self.url("/api/v1/mcp/registry"))
            .await
            .expect("GET the registry");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.json().await.expect("registry JSON")
    }

    /// Waits until the registry shows every server of `names` running.
    pub async fn wait_running(&self, names: &[&str]) {
        let what = lazy(|| {
            format!(
                "servers {names:?} to be running; stderr: {}",
                self.process.stderr()
            )
        });
        wait_for(GW_START, what, || async {
            let registry = self.registry().await;
            names.iter().all(|name| {
                registry["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|entry| entry["name"] == *name && entry["status"] == "running")
            })
        })
        .await;
    }

    /// Runs `mcpctl --config <config> ARGS` and returns its output.
    pub fn mcpctl(&self, args: &[&str]) -> Output {
        Command::new(bin("mcpctl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("MCPD_SOCKET")
            .output()
            .expect("run mcpctl")
    }

    /// A token signed with the daemon's HS256 key, minted by `mcpctl token --scope ...`.
    pub fn token(&self, scopes: &[&str]) -> String {
        let mut args = vec!["token"];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let output = self.mcpctl(&args);
        assert!(
            output.status.success(),
            "mcpctl token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("token is UTF-8")
            .trim()
            .to_owned()
    }

    /// `mcpctl --json status`, parsed.
    pub fn status(&self) -> Value {
        let output = self.mcpctl(&["--json", "status"]);
        assert!(
            output.status.success(),
            "mcpctl status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("status JSON")
    }

    /// The pid of server `name` from `mcpctl --json status`, once it has one.
    pub fn server_pid(&self, name: &str) -> Option<i32> {
        crate::server_entry(&self.status(), name)?["pid"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok())
    }
}
