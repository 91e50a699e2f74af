//! Supervision against real processes: hostile shell fixtures (crashers, SIGTERM ignorers,
//! grandchildren holding the port or the pipe, floods) under short timeouts.
//!
//! Each test has its own temp dir and port sub-range; a `Reaper` kills every process that
//! carries the test's marker variable when the test ends, even when it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcpd_testkit::{PortBlock, hold_port, port_block};
use tokio::time::Instant;

use super::*;
use crate::config::test_builder::{daemon_config, fast_defaults, server_running};
use crate::config::{PortRange, RestartPolicy};
use crate::directory::ServerStatus;

const MARK: &str = "MCPD_TEST_MARK";

fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by these tests");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// A shell line that listens on $PORT forever (exec'd, so it keeps the script's pid).
fn listen() -> String {
    format!(
        "{} -c 'import socket,os,time; s=socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind((\"127.0.0.1\", int(os.environ[\"PORT\"]))); s.listen(64); \
         print(\"listening on\", os.environ[\"PORT\"], flush=True); time.sleep(100000)'",
        python()
    )
}

/// Shell lines that start a listener like [`listen`]'s in the background and go on only
/// once the supervisor's readiness probe has connected to it: the listener accepts one
/// connection, then creates `probed-$MCP_SERVICE_ID`.
fn listen_until_probed() -> String {
    format!(
        "rm -f probed-$MCP_SERVICE_ID\n\
         {} -c 'import socket,os,time; s=socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind((\"127.0.0.1\", int(os.environ[\"PORT\"]))); s.listen(64); s.accept(); \
         open(\"probed-\" + os.environ[\"MCP_SERVICE_ID\"], \"w\").close(); \
         time.sleep(100000)' &\n\
         until [ -e probed-$MCP_SERVICE_ID ]; do sleep 0.05; done",
        python()
    )
}

/// Kills every process carrying the test's marker when dropped.
struct Reaper {
    mark: String,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let needle = format!("{MARK}={}", self.mark);
        for pid in marked_pids(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn marked_pids(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// The state letter of `pid` in /proc (`Z` for a zombie), or `None` when it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

struct Harness {
    dir: tempfile::TempDir,
    /// The test's own ports, also the daemon's `port_range`.
    ports: PortBlock,
    daemon: DaemonConfig,
    options: SupervisorOptions,
    _reaper: Reaper,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = port_block(20);
        let mut daemon = daemon_config(dir.path());
        daemon.port_range = PortRange {
            start: ports.start,
            end: ports.last(),
        };
        daemon.defaults = fast_defaults();
        let options = SupervisorOptions {
            prober: Arc::new(TcpProber),
            jitter: random_jitter(),
            // The daemon's own: a killed process holding the port may need a while to be
            // scheduled and close its listener on a loaded machine.
            port_wait: SupervisorOptions::default().port_wait,
            probe_retry: Duration::from_millis(20),
        };
        let mark = dir.path().display().to_string();
        Harness {
            dir,
            ports,
            daemon,
            options,
            _reaper: Reaper { mark },
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable `sh` script and returns a server config running it.
    fn server(&self, name: &str, script: &str) -> ServerConfig {
        use std::os::unix::fs::PermissionsExt;
        let file = self.path().join(format!("{name}.sh"));
        std::fs::write(&file, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = server_running(name, file);
        config
            .env
            .insert(MARK.into(), self.path().display().to_string());
        config.working_dir = Some(self.path().to_owned());
        config.health.interval = Duration::from_millis(200);
        config.health.timeout = Duration::from_millis(200);
        config
    }

    fn start(&self, servers: Vec<ServerConfig>) -> Supervisor {
        Supervisor::start_with(&self.daemon, services(servers), self.options.clone()).unwrap()
    }
}

fn services(servers: Vec<ServerConfig>) -> Services {
    Services {
        servers: servers.into_iter().map(|s| (s.name.clone(), s)).collect(),
        errors: vec![],
        ..Services::default()
    }
}

fn status(sup: &Supervisor, name: &str) -> Arc<ServerStatus> {
    sup.directory().get(name).unwrap().status.load_full()
}

/// Polls `check` every 10 ms until it returns `Some`, or panics after `timeout`.
async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_state(sup: &Supervisor, name: &str, state: ServerState) -> Arc<ServerStatus> {
    wait_for(
        &format!("{name} to be {state}"),
        Duration::from_secs(15),
        || Some(status(sup, name)).filter(|s| s.state == state),
    )
    .await
}

#[tokio::test]
async fn kill_9_restarts_on_the_same_port() {
    let h = Harness::new();
    let sup = h.start(vec![h.server("victim", &format!("exec {}", listen()))]);
    let first = wait_state(&sup, "victim", ServerState::Running).await;
    let port = first.port.unwrap();
    assert_eq!(port, h.ports.port(0));
    let pid = first.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = wait_for("a new process", Duration::from_secs(15), || {
        Some(status(&sup, "victim"))
            .filter(|s| s.state == ServerState::Running && s.pid != Some(pid))
    })
    .await;
    assert_eq!(again.port, Some(port));
    assert_eq!(again.restarts, 1);
    assert_eq!(again.last_exit.as_deref(), Some("killed by signal SIGKILL"));
    assert!(
        again
            .last_error
            .as_deref()
            .unwrap()
            .contains("killed by signal SIGKILL")
    );
    assert_eq!(proc_state(pid), None, "the killed process was reaped");
    sup.shutdown().await;
    assert_eq!(status(&sup, "victim").state, ServerState::Stopped);
}

#[tokio::test]
async fn always_dying_goes_failed_after_burst_with_bounded_backoff() {
    let h = Harness::new();
    let mut server = h.server("dier", "date +%s%N >> starts; echo dying >&2; exit 3");
    server.restart.burst = 4;
    server.restart.backoff = Duration::from_millis(100);
    server.restart.max_backoff = Duration::from_millis(250);
    let sup = h.start(vec![server]);
    let failed = wait_state(&sup, "dier", ServerState::Failed).await;
    assert_eq!(failed.last_exit.as_deref(), Some("exit code 3"));
    let error = failed.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("crash loop: 4 failures within 5m"),
        "{error}"
    );
    assert_eq!(failed.restarts, 3);
    let starts: Vec<u128> = std::fs::read_to_string(h.path().join("starts"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 4);
    // Gaps hold at least the backoff (100, 200, 250 ms): a lower bound, which load only
    // lengthens. The exact delays, jitter included, are the state machine's and tested with
    // the clock as a parameter (lifecycle_tests `backoff_curve_doubles_up_to_max_with_bounded_jitter`).
    for (i, base) in [100u128, 200, 250].into_iter().enumerate() {
        let gap_ms = (starts[i + 1] - starts[i]) / 1_000_000;
        assert!(gap_ms >= base, "gap {i} is {gap_ms} ms, under {base}");
    }
    // Parked: no more starts.
    let logs = sup.logs("dier", 100).unwrap();
    assert!(
        logs.iter()
            .any(|l| l.text == "dying" && l.stream == LogStream::Stderr)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(&sup, "dier").state, ServerState::Failed);
    assert_eq!(
        std::fs::read_to_string(h.path().join("starts"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    // An operator restart revives it.
    sup.restart_server("dier").await.unwrap();
    wait_for("a fifth start", Duration::from_secs(10), || {
        let n = std::fs::read_to_string(h.path().join("starts"))
            .ok()?
            .lines()
            .count();
        (n == 5).then_some(())
    })
    .await;
    sup.shutdown().await;
}

#[tokio::test]
async fn a_sigterm_ignorer_and_its_grandchildren_are_killed_after_stop_timeout() {
    let h = Harness::new();
    // The grandchild keeps stdout open and the main process ignores SIGTERM (inherited).
    let script = format!(
        "trap '' TERM\nsleep 1000 &\necho $! > grandchild\nexec {}",
        listen()
    );
    let sup = h.start(vec![h.server("stubborn", &script)]);
    let running = wait_state(&sup, "stubborn", ServerState::Running).await;
    let pid = running.pid.unwrap();
    let grandchild: u32 = std::fs::read_to_string(h.path().join("grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(proc_state(grandchild).is_some());
    let started = Instant::now();
    sup.stop_server("stubborn").await.unwrap();
    let took = started.elapsed();
    let stopped = status(&sup, "stubborn");
    assert_eq!(stopped.state, ServerState::Stopped);
    assert_eq!(
        stopped.last_exit.as_deref(),
        Some("killed by signal SIGKILL")
    );
    assert!(took >= Duration::from_millis(300), "stopped after {took:?}");
    assert_eq!(
        proc_state(pid),
        None,
        "the main process is reaped, not a zombie"
    );
    wait_for("the grandchild to die", Duration::from_secs(5), || {
        matches!(proc_state(grandchild), None | Some('Z')).then_some(())
    })
    .await;
    assert!(crate::ports::port_free(h.ports.port(0)).unwrap());
    // Stopped means stopped: nothing comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&sup, "stubborn").state, ServerState::Stopped);
    sup.start_server("stubborn").await.unwrap();
    wait_state(&sup, "stubborn", ServerState::Running).await;
    sup.shutdown().await;
}

#[tokio::test]
async fn a_grandchild_holding_the_port_is_killed_before_the_respawn() {
    let h = Harness::new();
    // The script is not exec'd: the listener is a child of the main process.
    let script = format!("{} &\necho $! > listener\nwait", listen());
    let sup = h.start(vec![h.server("holder", &script)]);
    let running = wait_state(&sup, "holder", ServerState::Running).await;
    let listener: u32 = std::fs::read_to_string(h.path().join("listener"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid.unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = wait_for("the respawn", Duration::from_secs(15), || {
        Some(status(&sup, "holder"))
            .filter(|s| s.state == ServerState::Running && s.pid != running.pid)
    })
    .await;
    assert_eq!(
        again.port,
        Some(h.ports.port(0)),
        "kept its port: the old listener was killed"
    );
    assert!(matches!(proc_state(listener), None | Some('Z')));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_gets_ready_is_a_failed_start() {
    let h = Harness::new();
    let mut server = h.server("mute", "exec sleep 1000");
    server.health.start_timeout = Duration::from_millis(300);
    server.restart.burst = 2;
    let sup = h.start(vec![server]);
    let failed = wait_state(&sup, "mute", ServerState::Failed).await;
    let error = failed.last_error.as_deref().unwrap();
    assert!(error.contains("not ready within 300ms"), "{error}");
    assert_eq!(failed.pid, None);
    assert_eq!(
        failed.last_exit.as_deref(),
        Some("killed by signal SIGTERM")
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_flood_does_not_stall_other_servers() {
    let h = Harness::new();
    let flood = h.server("flood", "exec yes 'a flood of output'");
    let quiet = h.server("quiet", &format!("exec {}", listen()));
    let sup = h.start(vec![flood, quiet]);
    // The flooder never listens; the other one gets ready and stays healthy meanwhile.
    wait_state(&sup, "quiet", ServerState::Running).await;
    let mut follower = sup.follow_logs("flood").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status(&sup, "quiet").state, ServerState::Running);
    let tail = sup.logs("flood", 1_000_000).unwrap();
    assert!(
        tail.len() <= h.daemon.logs.buffer_lines,
        "ring is bounded: {}",
        tail.len()
    );
    assert!(tail.iter().any(|l| l.text == "a flood of output"));
    // A slow follower lags instead of blocking anyone.
    assert!(matches!(
        follower.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(_)) | Ok(_)
    ));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_foreign_listener_on_an_explicit_port_fails_without_a_crash_loop() {
    let h = Harness::new();
    let explicit = h.ports.port(5);
    let _foreign = hold_port(explicit);
    let mut server = h.server("blocked", &format!("date >> starts; exec {}", listen()));
    server.port = Some(explicit);
    let sup = h.start(vec![server]);
    let failed = wait_state(&sup, "blocked", ServerState::Failed).await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some(format!("port {explicit} is in use by another process").as_str())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = status(&sup, "blocked");
    assert_eq!(still.state, ServerState::Failed);
    assert_eq!(still.restarts, 0);
    assert!(!h.path().join("starts").exists(), "never spawned");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_foreign_listener_on_an_allocated_port_moves_the_server() {
    let h = Harness::new();
    let _foreign = hold_port(h.ports.port(0));
    let sup = h.start(vec![h.server("mover", &format!("exec {}", listen()))]);
    let running = wait_state(&sup, "mover", ServerState::Running).await;
    assert_eq!(running.port, Some(h.ports.port(1)));
    let saved: BTreeMap<String, u16> = serde_json::from_slice(
        &std::fs::read(h.daemon.state_dir.join(crate::ports::PORTS_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(saved.get("mover"), Some(&h.ports.port(1)));
    sup.shutdown().await;
}

#[tokio::test]
async fn clean_exits_follow_the_policy() {
    let h = Harness::new();
    // The clean exit comes after the server was ready (however slowly python started),
    // and after a moment for the supervisor to see the probe's answer.
    let script = format!(
        "date >> starts-$MCP_SERVICE_ID\n{}\nsleep 0.5\nexit 0",
        listen_until_probed()
    );
    let once = h.server("once", &script);
    let mut again = h.server("again", &script);
    again.restart.policy = RestartPolicy::Always;
    let sup = h.start(vec![once, again]);
    let stopped = wait_state(&sup, "once", ServerState::Stopped).await;
    assert_eq!(stopped.last_exit.as_deref(), Some("exit code 0"));
    wait_for(
        "a restart after a clean exit",
        Duration::from_secs(10),
        || (status(&sup, "again").restarts >= 1).then_some(()),
    )
    .await;
    sup.shutdown().await;
}

#[tokio::test]
async fn the_child_gets_exactly_the_documented_environment() {
    let h = Harness::new();
    let mut server = h.server(
        "envy",
        &format!(
            "env > env.txt; pwd > pwd.txt\necho \"$@\" > args.txt\nexec {}",
            listen()
        ),
    );
    server.args = vec!["--port={port}".into(), "{name}".into()];
    server.env.insert("EXTRA".into(), "1".into());
    let sup = h.start(vec![server]);
    wait_state(&sup, "envy", ServerState::Running).await;
    let env = std::fs::read_to_string(h.path().join("env.txt")).unwrap();
    let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort();
    names.retain(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n)); // set by sh itself
    let mut expected = vec!["EXTRA", MARK, "MCP_PORT", "MCP_SERVICE_ID", "PORT"];
    for inherited in ["PATH", "HOME", "LANG", "TZ"] {
        if std::env::var_os(inherited).is_some() {
            expected.push(inherited);
        }
    }
    expected.sort();
    assert_eq!(names, expected, "{env}");
    let port = h.ports.port(0);
    assert!(env.contains(&format!("MCP_PORT={port}\n")) && env.contains("MCP_SERVICE_ID=envy\n"));
    assert_eq!(
        std::fs::read_to_string(h.path().join("args.txt"))
            .unwrap()
            .trim(),
        format!("--port={port} envy")
    );
    assert_eq!(
        std::fs::read_to_string(h.path().join("pwd.txt"))
            .unwrap()
            .trim(),
        std::fs::canonicalize(h.path())
            .unwrap()
            .display()
            .to_string()
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn operator_requests_and_errors() {
    let h = Harness::new();
    let mut off = h.server("off", "exit 0");
    off.enabled = false;
    let sup = h.start(vec![h.server("on", &format!("exec {}", listen())), off]);
    assert_eq!(status(&sup, "off").state, ServerState::Disabled);
    assert!(matches!(
        sup.start_server("off").await,
        Err(SupervisorError::Disabled { .. })
    ));
    assert!(matches!(
        sup.stop_server("nope").await,
        Err(SupervisorError::UnknownServer(_))
    ));
    let first = wait_state(&sup, "on", ServerState::Running).await;
    sup.restart_server("on").await.unwrap();
    let after = status(&sup, "on");
    assert!(matches!(
        after.state,
        ServerState::Starting | ServerState::Running
    ));
    let again = wait_state(&sup, "on", ServerState::Running).await;
    assert_ne!(again.pid, first.pid);
    assert_eq!(again.restarts, 1);
    assert_eq!(again.last_exit.as_deref(), Some("killed by signal SIGTERM"));
    let lines = sup.logs("on", 10).unwrap();
    let port = again.port.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.text == format!("listening on {port}")),
        "{lines:?}"
    );
    sup.shutdown().await;
    assert!(matches!(
        sup.start_server("on").await,
        Err(SupervisorError::ShuttingDown)
    ));
}

#[tokio::test]
async fn apply_starts_stops_restarts_and_updates_only_what_changed() {
    let h = Harness::new();
    let listen = format!("exec {}", listen());
    let keep = h.server("keep", &listen);
    let tweak = h.server("tweak", &listen);
    let bounce = h.server("bounce", &listen);
    let drop_me = h.server("drop", &listen);
    let sup = h.start(vec![keep.clone(), tweak.clone(), bounce.clone(), drop_me]);
    let mut pids = BTreeMap::new();
    for name in ["keep", "tweak", "bounce", "drop"] {
        pids.insert(name, wait_state(&sup, name, ServerState::Running).await.pid);
    }
    let mut tweak2 = tweak;
    tweak2.description = "new words".into();
    let mut bounce2 = bounce;
    bounce2.args = vec!["x".into()];
    let new = services(vec![keep, tweak2, bounce2, h.server("fresh", &listen)]);
    let plan = sup.plan(&new);
    let summary: Vec<(String, PlanAction)> = plan
        .changes
        .iter()
        .map(|c| (c.server.clone(), c.action))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("bounce".into(), PlanAction::Restart),
            ("drop".into(), PlanAction::Stop),
            ("fresh".into(), PlanAction::Start),
            ("keep".into(), PlanAction::Unchanged),
            ("tweak".into(), PlanAction::Update),
        ]
    );
    assert_eq!(sup.apply(new).await, plan);
    assert!(sup.directory().get("drop").is_none());
    wait_state(&sup, "fresh", ServerState::Running).await;
    let bounced = wait_for("bounce to restart", Duration::from_secs(15), || {
        Some(status(&sup, "bounce"))
            .filter(|s| s.state == ServerState::Running && s.pid != pids["bounce"])
    })
    .await;
    assert_eq!(bounced.restarts, 1);
    assert_eq!(status(&sup, "keep").pid, pids["keep"]);
    assert_eq!(status(&sup, "tweak").pid, pids["tweak"]);
    assert_eq!(
        sup.directory()
            .get("tweak")
            .unwrap()
            .config
            .load()
            .description,
        "new words"
    );
    assert!(proc_state(pids["drop"].unwrap()).is_none());
    sup.shutdown().await;
}

#[tokio::test]
async fn an_update_is_visible_when_apply_returns() {
    let h = Harness::new();
    let listen = format!("exec {}", listen());
    let server = h.server("tweak", &listen);
    let sup = h.start(vec![server.clone()]);
    wait_state(&sup, "tweak", ServerState::Running).await;
    let mut changed = server;
    changed.description = "read back at once".into();
    sup.apply(services(vec![changed])).await;
    let config = sup.directory().get("tweak").unwrap().config.load_full();
    assert_eq!(config.description, "read back at once");
    sup.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_everything_in_parallel() {
    let h = Harness::new();
    // Each server takes SIGTERM as a vote and exits (code 0) only once all four have voted:
    // stopped one after the other, the first would wait for votes that never come and be
    // SIGKILLed at its stop_timeout. So four clean exits prove the stops overlapped, with no
    // clock in the check.
    let fixture = h.path().join("vote.py");
    std::fs::write(
        &fixture,
        "import glob, os, signal, socket, sys, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
         s.listen(8)\n\
         voted = False\n\
         def vote(*_):\n\
         \x20   global voted\n\
         \x20   open('voted-' + os.environ['MCP_SERVICE_ID'], 'w').close()\n\
         \x20   voted = True\n\
         signal.signal(signal.SIGTERM, vote)\n\
         while not (voted and len(glob.glob('voted-*')) == 4):\n\
         \x20   time.sleep(0.01)\n\
         sys.exit(0)\n",
    )
    .unwrap();
    let script = format!("exec {} {}", python(), fixture.display());
    let servers: Vec<ServerConfig> = (0..4)
        .map(|i| {
            let mut s = h.server(&format!("s{i}"), &script);
            // Far beyond any scheduling delay: reaching it means the stops did not overlap.
            s.stop_timeout = Duration::from_secs(30);
            s
        })
        .collect();
    let sup = h.start(servers);
    let mut pids = vec![];
    for i in 0..4 {
        pids.push(
            wait_state(&sup, &format!("s{i}"), ServerState::Running)
                .await
                .pid
                .unwrap(),
        );
    }
    sup.shutdown().await;
    for pid in pids {
        assert_eq!(proc_state(pid), None);
    }
    for i in 0..4 {
        let stopped = status(&sup, &format!("s{i}"));
        assert_eq!(stopped.state, ServerState::Stopped);
        assert_eq!(
            stopped.last_exit.as_deref(),
            Some("exit code 0"),
            "s{i} was not stopped in parallel with the others"
        );
    }
}

#[tokio::test]
async fn logs_reach_the_file() {
    let h = Harness::new();
    let sup = h.start(vec![h.server(
        "talker",
        &format!("echo hello out\necho hello err >&2\nexec {}", listen()),
    )]);
    wait_state(&sup, "talker", ServerState::Running).await;
    sup.shutdown().await;
    let file: PathBuf = h.daemon.logs.dir.join("talker.log");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(" out hello out\n"), "{text}");
    assert!(text.contains(" err hello err\n"), "{text}");
}

#[tokio::test]
async fn failed_liveness_probes_restart_the_server() {
    let h = Harness::new();
    // Listens for a moment, then closes its socket but keeps running.
    let script = format!(
        "date >> starts\nexec {} -c 'import socket,os,time; s=socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind((\"127.0.0.1\", int(os.environ[\"PORT\"]))); s.listen(8); \
         time.sleep(0.3); s.close(); time.sleep(1000)'",
        python()
    );
    let mut server = h.server("flaky", &script);
    server.health.interval = Duration::from_millis(100);
    server.health.failures = 3;
    let sup = h.start(vec![server]);
    wait_state(&sup, "flaky", ServerState::Running).await;
    let restarted = wait_for(
        "a restart after failed probes",
        Duration::from_secs(15),
        || Some(status(&sup, "flaky")).filter(|s| s.restarts >= 1),
    )
    .await;
    let error = restarted.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("3 liveness probes failed in a row"),
        "{error}"
    );
    assert_eq!(
        restarted.last_exit.as_deref(),
        Some("killed by signal SIGTERM")
    );
    sup.shutdown().await;
}
