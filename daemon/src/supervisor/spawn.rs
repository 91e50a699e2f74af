//! Spawning server processes: the child's environment, arguments and process setup, and the
//! one long-lived thread that does every fork.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, so forks never happen on
//! tokio's blocking pool or a short-lived thread: they happen on the spawner thread, which
//! lives as long as the supervisor. Children are `tokio::process::Child`ren (tokio reaps
//! them; nothing here calls `waitpid(-1)`).
//!
//! `PR_SET_PDEATHSIG` reaches only the direct child, not the processes it forked. So the
//! spawner thread also keeps the reaper (`reaper.rs`, the process `mcpd reaper`), told of
//! every live server process group, which SIGKILLs those left when the daemon dies without
//! stopping them (SIGKILL, a crash).

use std::io;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use super::child::Child;
use super::confine::Confine;
use super::fd_slots::Slots;
use super::reaper::Reaper;
use super::vfork::{ChildStack, launch};
use crate::config::ServerConfig;

/// Variables taken from the daemon's own environment when set.
const INHERITED: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// True for variables a child must never get: they belong to the daemon's service manager.
pub fn is_forbidden(var: &str) -> bool {
    var == "NOTIFY_SOCKET" || var.starts_with("WATCHDOG_") || var.starts_with("LISTEN_")
}

/// Everything needed to start one process.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnSpec {
    pub name: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// Cgroup, rlimits and user, entered before exec (`confine.rs`).
    pub confine: Confine,
    /// stdin is a pipe (a stdio server's requests); otherwise `/dev/null`.
    pub stdin_pipe: bool,
}

impl SpawnSpec {
    /// The process of `config` on `port` (`None` for a stdio server, which gets no
    /// `MCP_PORT`/`PORT`), with the environment of DESIGN.md section 3 read from `daemon_env`.
    pub fn new(
        config: &ServerConfig,
        port: Option<u16>,
        daemon_env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |key: &str, value: String| {
            if is_forbidden(key) {
                return;
            }
            env.retain(|(k, _)| k != key);
            env.push((key.to_owned(), value));
        };
        for key in INHERITED {
            if let Some(value) = daemon_env(key) {
                set(key, value);
            }
        }
        if let Some(run_as) = &config.run_as {
            set("HOME", run_as.home.display().to_string());
            set("USER", run_as.name.clone());
            set("LOGNAME", run_as.name.clone());
        }
        if let Some(port) = port {
            set("MCP_PORT", port.to_string());
            set("PORT", port.to_string());
        }
        set("MCP_SERVICE_ID", config.name.clone());
        for key in &config.env_passthrough {
            if let Some(value) = daemon_env(key) {
                set(key, value);
            }
        }
        for (key, value) in &config.env {
            set(key, value.clone());
        }
        SpawnSpec {
            name: config.name.clone(),
            binary: config.binary.clone(),
            args: config
                .args
                .iter()
                .map(|arg| expand(arg, port, &config.name))
                .collect(),
            env,
            working_dir: config.working_dir.clone(),
            confine: Confine::default(),
            stdin_pipe: !config.kind.uses_port(),
        }
    }
}

/// Expands `{port}` (when there is one) and `{name}` in an argument.
pub fn expand(arg: &str, port: Option<u16>, name: &str) -> String {
    let arg = match port {
        Some(port) => arg.replace("{port}", &port.to_string()),
        None => arg.to_owned(),
    };
    arg.replace("{name}", name)
}

enum Job {
    Spawn(Box<SpawnSpec>, oneshot::Sender<io::Result<Child>>),
    /// The process group is gone (or being killed): the reaper forgets it.
    Released(u32),
}

/// The spawner thread. Dropping the last handle ends the thread, and with it (by
/// `PR_SET_PDEATHSIG`) every child it started.
#[derive(Debug)]
pub struct Spawner {
    jobs: std_mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the thread; children are registered with the runtime of `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> io::Result<Self> {
        let (jobs, queue) = std_mpsc::channel::<Job>();
        let daemon_pid = std::process::id() as libc::pid_t;
        // Taken here, before the daemon opens its servers' descriptors, so they are low.
        // Without them a spawn copies the daemon's descriptor table, as a fork does.
        let slots = Slots::new()
            .inspect_err(|err| tracing::warn!(error = %err, "no descriptor slots for spawning"))
            .ok();
        std::thread::Builder::new()
            .name("mcpd-spawner".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                let mut reaper = Reaper::start();
                let stack = ChildStack::new();
                for job in queue {
                    match job {
                        Job::Spawn(spec, reply) => {
                            let child = match &stack {
                                Ok(stack) => launch(&spec, stack, slots.as_ref(), daemon_pid),
                                Err(err) => Err(io::Error::new(
                                    err.kind(),
                                    format!("no stack for the child: {err}"),
                                )),
                            };
                            if let (Ok(child), Some(reaper)) = (&child, reaper.as_mut())
                                && let Some(pgid) = child.id()
                            {
                                reaper.started(pgid, &spec.name);
                            }
                            let _ = reply.send(child);
                        }
                        Job::Released(pgid) => {
                            if let Some(reaper) = reaper.as_mut() {
                                reaper.released(pgid);
                            }
                        }
                    }
                    if reaper.as_ref().is_some_and(Reaper::is_broken)
                        && let Some(broken) = reaper.take()
                    {
                        broken.finish();
                    }
                }
                if let Some(reaper) = reaper {
                    reaper.finish();
                }
            })?;
        Ok(Spawner { jobs })
    }

    /// Starts `spec` on the spawner thread.
    pub async fn spawn(&self, spec: SpawnSpec) -> io::Result<Child> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Spawn(Box::new(spec), reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    /// Says that the process group `pgid` of a spawned child is gone or being killed, so
    /// the reaper no longer kills it (its number may be reused).
    pub fn released(&self, pgid: u32) {
        let _ = self.jobs.send(Job::Released(pgid));
    }
}

/// Sends `signal` to the process group `pgid`; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_builder::server_running;

    #[test]
    fn environment_is_exactly_the_documented_one() {
        let mut config = server_running("echo", "/bin/echo");
        config.env_passthrough = vec![
            "DATABASE_URL".into(),
            "NOTIFY_SOCKET".into(),
            "UNSET".into(),
        ];
        config.env.insert("RUST_LOG".into(), "info".into());
        config.env.insert("PORT".into(), "1".into());
        config.env.insert("LISTEN_FDS".into(), "3".into());
        config.args = vec!["--port={port}".into(), "{name}-{port}".into()];
        let daemon = |key: &str| match key {
            "PATH" => Some("/usr/bin".to_owned()),
            "HOME" => Some("/home/mcpd".to_owned()),
            "DATABASE_URL" => Some("postgres://x".to_owned()),
            "NOTIFY_SOCKET" => Some("/run/systemd/notify".to_owned()),
            "SECRET" => Some("no".to_owned()),
            _ => None,
        };
        let spec = SpawnSpec::new(&config, Some(5003), daemon);
        let env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("PATH", "/usr/bin"),
                ("HOME", "/home/mcpd"),
                ("MCP_PORT", "5003"),
                ("MCP_SERVICE_ID", "echo"),
                ("DATABASE_URL", "postgres://x"),
                ("PORT", "1"),
                ("RUST_LOG", "info"),
            ]
        );
        assert_eq!(spec.args, vec!["--port=5003", "echo-5003"]);
    }

    #[test]
    fn a_server_with_its_own_user_gets_that_users_home_and_names() {
        let mut config = server_running("echo", "/bin/echo");
        config.run_as = Some(crate::config::RunAs {
            user: "65534".into(),
            uid: 65534,
            gid: 65534,
            name: "nobody".into(),
            home: "/nonexistent".into(),
        });
        config.env.insert("HOME".into(), "/srv/echo".into());
        let daemon = |key: &str| (key == "HOME").then(|| "/root".to_owned());
        let spec = SpawnSpec::new(&config, Some(5003), daemon);
        let value = |key: &str| {
            spec.env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("HOME"), Some("/srv/echo"), "env: still wins");
        assert_eq!(value("USER"), Some("nobody"));
        assert_eq!(value("LOGNAME"), Some("nobody"));
        config.env.clear();
        let spec = SpawnSpec::new(&config, Some(5003), daemon);
        assert_eq!(
            spec.env
                .iter()
                .find(|(k, _)| k == "HOME")
                .map(|(_, v)| v.as_str()),
            Some("/nonexistent")
        );
    }
}
