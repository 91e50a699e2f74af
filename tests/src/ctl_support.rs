//! A real `mcpd` started from a temp config, and the real `mcpctl` run against its socket.
//!
//! [`Daemon::start`] writes `mcpd.yaml` (gateway and servers on the test's own port block,
//! state, logs and the control socket in the temp dir, short probe and backoff intervals),
//! starts `mcpd` under a [`ChildGuard`] and waits until every enabled server is `running`.
//! [`Daemon::ctl`] runs `mcpctl --socket <sock> ARGS...` to completion under a deadline and
//! returns its exit code and output.
//!
//! `services_dir` is a symlink (`mcp` -> `mcp.1`). The daemon watches the directory the
//! symlink pointed to at start, so [`Daemon::switch_services`] can change what is on disk
//! without the watcher noticing: that is how a test sees `reload --dry-run` plan a change
//! before anything applies it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{ChildGuard, PortBlock, TestDir, bin, lazy, port_block, wait_for_value};

/// The health-check interval of every test daemon's servers.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one `mcpctl` run may take before it is killed and the test fails.
pub const CTL_DEADLINE: Duration = Duration::from_secs(30);
/// How long servers may take to reach `running`.
pub const START: Duration = Duration::from_secs(20);

/// What a test daemon is configured with.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    /// Server files: (file name in services_dir, YAML text).
    pub files: Vec<(String, String)>,
    /// `control.mode`, e.g. "0600".
    pub socket_mode: String,
    /// Configure `auth.keys: [{hs256_secret_file: jwt.secret}]`.
    pub hs256_key: bool,
}

impl DaemonSpec {
    /// Plain `mcp-echo` servers with the given names, all in `echo.yaml`.
    pub fn echo_servers(names: &[&str]) -> DaemonSpec {
        DaemonSpec {
            files: vec![("echo.yaml".to_owned(), echo_servers_yaml(names))],
            socket_mode: "0600".to_owned(),
            hs256_key: false,
        }
    }
}

/// A server file defining plain `mcp-echo` servers.
pub fn echo_servers_yaml(names: &[&str]) -> String {
    let mut yaml = String::from("mcp_servers:\n");
    for name in names {
        yaml.push_str(&format!(
            "  {name}:\n    binary: mcp-echo\n    package: mcp-echo\n    description: \"Echo server {name}\"\n"
        ));
    }
    yaml
}

/// A running `mcpd` in its own temp dir.
pub struct Daemon {
    pub dir: TestDir,
    pub socket: PathBuf,
    pub ports: PortBlock,
    /// The gateway's port (the first of the block; servers get the rest).
    pub gateway_port: u16,
    generation: u32,
    /// Declared last: dropped (killed) before the temp dir is removed.
    pub process: ChildGuard,
}

/// The result of one `mcpctl` run.
#[derive(Debug, Clone)]
pub struct CtlRun {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlRun {
    /// Asserts exit code `code` and returns `self`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> CtlRun {
        assert_eq!(
            self.code,
            Some(code),
            "mcpctl {:?} exited {:?}, expected {code}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        self.expect_code(0).stdout
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "mcpctl {:?} printed no JSON ({error}):\n{}\nstderr:\n{}",
                self.args, self.stdout, self.stderr
            )
        })
    }
}

impl Daemon {
    /// Writes the config, starts `mcpd` and waits for every enabled server to be running.
    pub async fn start(spec: DaemonSpec) -> Daemon {
        let dir = TestDir::new();
        let ports = port_block(20);
        let gateway_port = ports.port(0);
        let socket = dir.join("run/mcpd.sock");
        let bin_dir = bin("mcp-echo")
            .parent()
            .expect("the binary has a directory")
            .to_path_buf();

        std::fs::create_dir_all(dir.join("mcp.1")).expect("create services dir");
        std::os::unix::fs::symlink("mcp.1", dir.join("mcp")).expect("link services dir");
        for (name, text) in &spec.files {
            dir.write(Path::new("mcp.1").join(name), text);
        }
        let auth = if spec.hs256_key {
            dir.write("jwt.secret", "a test secret of at least thirty-two bytes\n");
            "auth:\n  keys:\n    - {hs256_secret_file: jwt.secret}\n"
        } else {
            ""
        };
        let config = format!(
            "services_dir: mcp\n\
             port_range: {first}-{last}\n\
             bin_dirs: [{bin_dir}]\n\
             state_dir: state\n\
             gateway:\n  listen: 127.0.0.1:{gateway_port}\n  public_url: http://127.0.0.1:{gateway_port}\n\
             control:\n  socket: run/mcpd.sock\n  mode: \"{mode}\"\n\
             {auth}\
             defaults:\n\
             \x20 restart: {{backoff: 100ms, max_backoff: 500ms}}\n\
             \x20 health: {{interval: {probe}ms, timeout: 2s, failures: 3, start_timeout: 15s}}\n\
             \x20 stop_timeout: 3s\n",
            first = ports.port(1),
            last = ports.last(),
            bin_dir = bin_dir.display(),
            mode = spec.socket_mode,
            probe = PROBE_INTERVAL.as_millis(),
        );
        let config_path = dir.write("mcpd.yaml", config);
        let process = ChildGuard::spawn(
            "mcpd",
            Command::new(bin("mcpd"))
                .arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info,rmcp=off")
                .env_remove("MCPD_SOCKET")
                .env_remove("MCPD_CONFIG")
                .env_remove("NOTIFY_SOCKET"),
        );
        let daemon = Daemon {
            dir,
            socket,
            ports,
            gateway_port,
            generation: 1,
            process,
        };
        daemon.wait_all_running().await;
        daemon
    }

    /// Runs `mcpctl --socket <sock> ARGS...` to completion.
    pub fn ctl(&self, args: &[&str]) -> CtlRun {
        let mut full = vec!["--socket".to_owned(), self.socket.display().to_string()];
        full.extend(args.iter().map(|arg| (*arg).to_owned()));
        run_ctl(&full)
    }

    /// `mcpctl --json status` as JSON.
    pub fn status_json(&self) -> Value {
        self.ctl(&["--json", "status"]).expect_code(0).json()
    }

    /// The `status` object of one server, or `None` if it is not configured.
    pub fn server(&self, name: &str) -> Option<Value> {
        crate::server_entry(&self.status_json(), name).cloned()
    }

    /// Waits until `name` is running and returns its pid.
    pub async fn wait_running(&self, name: &str) -> u32 {
        self.wait_running_not(name, None).await
    }

    /// Waits until `name` is running with a pid other than `old`, and returns the pid.
    pub async fn wait_running_not(&self, name: &str, old: Option<u32>) -> u32 {
        let what = lazy(|| {
            format!(
                "{name} to run (not as pid {old:?}); status: {}; mcpd stderr:\n{}",
                self.status_json(),
                self.process.stderr()
            )
        });
        wait_for_value(START, what, || {
            let found = self.server(name).and_then(|server| {
                let pid = server["pid"].as_u64()? as u32;
                (server["state"] == "running" && Some(pid) != old).then_some(pid)
            });
            std::future::ready(found)
        })
        .await
    }

    /// Waits until every enabled server is running.
    pub async fn wait_all_running(&self) {
        let what = lazy(|| {
            format!(
                "every server to run; mcpd stderr:\n{}",
                self.process.stderr()
            )
        });
        wait_for_value(START, what, || {
            let ready = self.socket.exists()
                && self
                    .ctl(&["--json", "status"])
                    .json()
                    .get("servers")
                    .and_then(Value::as_array)
                    .is_some_and(|servers| {
                        servers
                            .iter()
                            .all(|s| s["enabled"] == false || s["state"] == "running")
                    });
            std::future::ready(ready.then_some(()))
        })
        .await;
    }

    /// The directory the `mcp` symlink points to now.
    pub fn services_dir(&self) -> PathBuf {
        self.dir.join(format!("mcp.{}", self.generation))
    }

    /// Points `services_dir` at a new directory holding the current files plus `extra`,
    /// renaming the symlink atomically. The daemon's watcher keeps watching the old
    /// directory, so only an explicit reload sees the change.
    pub fn switch_services(&mut self, extra: &[(&str, &str)]) {
        let old = self.services_dir();
        self.generation += 1;
        let new = self.services_dir();
        std::fs::create_dir_all(&new).expect("create the new services dir");
        for entry in std::fs::read_dir(&old).expect("read the services dir") {
            let entry = entry.expect("a directory entry");
            std::fs::copy(entry.path(), new.join(entry.file_name())).expect("copy a server file");
        }
        for (name, text) in extra {
            std::fs::write(new.join(name), text).expect("write a server file");
        }
        let link = self.dir.join("mcp.next");
        std::os::unix::fs::symlink(new.file_name().expect("a name"), &link).expect("symlink");
        std::fs::rename(&link, self.dir.join("mcp")).expect("swap the services symlink");
    }
}

/// Runs `mcpctl ARGS...` (no implicit flags) to completion under [`CTL_DEADLINE`]; a run
/// that outlives it is killed and fails the test.
pub fn run_ctl(args: &[String]) -> CtlRun {
    let child = Command::new(bin("mcpctl"))
        .args(args)
        .env_remove("MCPD_SOCKET")
        .env_remove("MCPD_CONFIG")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run mcpctl {args:?}: {error}"));
    let pid = child.id();
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(CTL_DEADLINE) {
        Ok(output) => {
            let output = output.unwrap_or_else(|error| panic!("wait for mcpctl: {error}"));
            CtlRun {
                args: args.to_vec(),
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("mcpctl {args:?} did not finish within {CTL_DEADLINE:?}");
        }
    }
}

/// The `mcpctl` command line for a long-running follower, to start under a [`ChildGuard`].
pub fn ctl_command(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin("mcpctl"));
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("MCPD_SOCKET")
        .env_remove("MCPD_CONFIG");
    command
}

/// Panics if `text` (what `mcpctl` printed) holds a character a terminal would obey; tab and
/// newline are layout and pass.
#[track_caller]
pub fn assert_no_raw_controls(what: &str, text: &str) {
    use mcpd_protocol::terminal::{Keep, is_unsafe};
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| is_unsafe(*c, Keep::TabsAndNewlines))
    {
        panic!(
            "{what}: raw control U+{:04X} at byte {at}:\n{text:?}",
            u32::from(c)
        );
    }
}
