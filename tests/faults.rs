//! The fault matrix, end to end: the real `mcpd` supervising real servers (mcp-echo and the
//! hostile scripts of tests/fixtures-rel/) while a test crashes, kills, freezes or starves
//! them, breaks the daemon's directories, or kills the daemon itself. Results are also
//! summarised in tests/RELIABILITY.md.

use std::path::PathBuf;

use mcpd_tests::rel_support::{
    PATIENCE, QUICK_PROBES, Setup, alive, fixture, group_leading_children, healthz, pid_port,
    processes_in_groups,
};
use mcpd_tests::{bin, lazy, port_accepts, wait_for_sync};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn echo_env() -> (&'static str, String) {
    ("ECHO", bin("mcp-echo").display().to_string())
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("send a signal");
}

/// Writes server `name` running the fixture `script` with its echo, a trigger file in the
/// test's directory and `env`; returns the trigger's path (created by [`touch`]).
fn trigger_server(setup: &Setup, name: &str, script: &str, env: &[(&str, String)]) -> PathBuf {
    trigger_server_with(setup, name, script, env, "")
}

/// [`trigger_server`], plus `extra` (indented lines of the entry).
fn trigger_server_with(
    setup: &Setup,
    name: &str,
    script: &str,
    env: &[(&str, String)],
    extra: &str,
) -> PathBuf {
    let trigger = setup.dir.join(format!("{name}.trigger"));
    let mut all = vec![echo_env(), ("TRIGGER", trigger.display().to_string())];
    all.extend_from_slice(env);
    setup.write_server_with(name, name, &fixture(script), &all, extra);
    trigger
}

fn touch(path: &PathBuf) {
    std::fs::write(path, b"").expect("create the trigger");
}

#[test]
fn a_server_that_exits_with_an_error_is_restarted() {
    let setup = Setup::new();
    let trigger = trigger_server(
        &setup,
        "crash",
        "exit-on-trigger.sh",
        &[("CODE", "3".into())],
    );
    let _daemon = setup.start();
    let (first, port) = setup.wait_running("crash");

    touch(&trigger);
    let after = setup.wait_server("crash", "restarted after exit code 3", |s| {
        s["state"] == "running" && s["last_exit"] == "exit code 3"
    });
    let (second, again) = pid_port(&after);
    assert_ne!(first, second);
    assert_eq!(port, again, "a restart keeps the port");
    assert!(after["restarts"].as_u64() >= Some(1), "{after}");
}

#[test]
fn a_server_killed_by_sigkill_is_restarted() {
    let setup = Setup::new();
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    let _daemon = setup.start();
    let (pid, port) = setup.wait_running("echo");
    signal(pid, Signal::SIGKILL);
    let after = setup.wait_server("echo", "restarted after SIGKILL", |s| {
        s["state"] == "running" && s["last_exit"] == "killed by signal SIGKILL" && s["pid"] != pid
    });
    assert_eq!(pid_port(&after).1, port);
    assert!(!alive(pid));
}

/// A crash by SIGSEGV. Sent to a shell fixture: a Rust program (mcp-echo) swallows the first
/// SIGSEGV that is not a real fault, because std's stack-overflow handler resets the
/// disposition and returns.
#[test]
fn a_server_that_dies_of_sigsegv_is_restarted() {
    let setup = Setup::new();
    let trigger = trigger_server(
        &setup,
        "segv",
        "exit-on-trigger.sh",
        &[("SIGNAL", "SEGV".into())],
    );
    let _daemon = setup.start();
    let (first, port) = setup.wait_running("segv");
    touch(&trigger);
    let after = setup.wait_server("segv", "restarted after SIGSEGV", |s| {
        s["state"] == "running" && s["last_exit"] == "killed by signal SIGSEGV"
    });
    assert_ne!(pid_port(&after), (first, port));
    assert_eq!(pid_port(&after).1, port);
}

#[test]
fn a_hung_server_is_restarted_after_its_probes_fail() {
    let setup = Setup::new();
    // A stop timeout that leaves the thawed server time for its graceful shutdown (up to
    // mcp-echo's 5 s drain of the probe connections that queued up while it was frozen), so
    // a loaded machine does not turn its clean exit into a SIGKILL.
    let extra = format!("{QUICK_PROBES}    stop_timeout: 10s\n");
    setup.write_server_with("echo", "echo", &bin("mcp-echo"), &[], &extra);
    let _daemon = setup.start();
    let (pid, port) = setup.wait_running("echo");

    // Frozen: the kernel still accepts connections on its port, nobody answers them.
    signal(pid, Signal::SIGSTOP);
    let after = setup.wait_server("echo", "restarted after failed probes", |s| {
        s["state"] == "running" && s["pid"] != pid
    });
    assert_eq!(pid_port(&after).1, port);
    let error = after["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("2 liveness probes failed"), "{after}");
    // SIGTERM is followed by SIGCONT, so the frozen process could end on its own terms.
    assert_eq!(after["last_exit"], "exit code 0", "{after}");
    assert!(!alive(pid));
}

#[test]
fn a_start_beyond_start_timeout_fails_and_backs_off() {
    let setup = Setup::new();
    setup.write_server_yaml(
        "slow",
        &format!(
            "mcp_servers:\n  slow:\n    binary: {:?}\n    health: {{start_timeout: 300ms}}\n",
            fixture("never-ready.sh").display().to_string()
        ),
    );
    let _daemon = setup.start();
    let status = setup.wait_server("slow", "a failed start and backoff", |s| {
        s["restarts"].as_u64() >= Some(1)
            && s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not ready within 300ms"))
    });
    assert!(
        ["backoff", "starting", "stopping"].contains(&status["state"].as_str().unwrap_or("")),
        "{status}"
    );
    // Each failed start is stopped before the next: never two generations at once.
    setup.wait_server("slow", "its second failed start", |s| {
        s["restarts"].as_u64() >= Some(2)
    });
}

#[test]
fn a_server_that_closes_its_port_but_stays_alive_is_restarted() {
    let setup = Setup::new();
    let trigger = trigger_server_with(&setup, "closer", "close-on-trigger.sh", &[], QUICK_PROBES);
    let _daemon = setup.start();
    let (first, port) = setup.wait_running("closer");

    touch(&trigger);
    let after = setup.wait_server("closer", "restarted after failed probes", |s| {
        s["state"] == "running" && s["pid"] != first
    });
    assert_eq!(pid_port(&after).1, port);
    assert!(
        after["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("liveness probes failed")),
        "{after}"
    );
    assert!(!alive(first), "the silent process was stopped");
}

#[test]
fn an_orphan_holding_the_port_is_killed_and_the_server_respawns() {
    let setup = Setup::new();
    let pidfile = setup.dir.join("echo.pid");
    let trigger = trigger_server(
        &setup,
        "orphan",
        "orphan-on-trigger.sh",
        &[("PIDFILE", pidfile.display().to_string())],
    );
    let _daemon = setup.start();
    let (first, port) = setup.wait_running("orphan");
    let orphan: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    std::fs::remove_file(&pidfile).expect("remove the pid file");

    touch(&trigger);
    let after = setup.wait_server("orphan", "respawned after the orphan was killed", |s| {
        s["state"] == "running" && s["pid"] != first && s["last_exit"] == "exit code 1"
    });
    assert!(!alive(orphan), "the grandchild holding the port was killed");
    assert_eq!(pid_port(&after).1, port, "the port was freed and reused");
    assert!(port_accepts(port));
}

#[test]
fn an_unwritable_log_dir_keeps_servers_running_and_says_so() {
    let mut setup = Setup::new();
    // A path under a regular file cannot be created, even by root.
    let blocker = setup.dir.write("blocker", "a file, not a directory");
    setup.extra = format!("logs: {{dir: {:?}}}\n", blocker.join("logs"));
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    let daemon = setup.start();
    let (pid, _) = setup.wait_running("echo");
    wait_for_sync(
        PATIENCE,
        lazy(|| format!("the log-dir error in the daemon log:\n{}", daemon.stderr())),
        || daemon.stderr().contains("cannot create the log directory"),
    );
    // Still supervised, and its output still reaches `mcpctl logs`.
    let (code, out, err) = setup.mcpctl(&["logs", "echo", "-n", "50"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listening"), "{out}");
    assert_eq!(setup.wait_running("echo").0, pid);
}

#[test]
fn an_unwritable_state_dir_keeps_the_daemon_running_with_a_warning() {
    let mut setup = Setup::new();
    let blocker = setup.dir.write("blocker", "a file, not a directory");
    setup.state_dir = blocker.join("state").display().to_string();
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    let daemon = setup.start();
    let (pid, _) = setup.wait_running("echo");
    wait_for_sync(
        PATIENCE,
        lazy(|| {
            format!(
                "a state_dir warning in the daemon log:\n{}",
                daemon.stderr()
            )
        }),
        || daemon.stderr().contains("cannot save port assignments"),
    );
    signal(pid, Signal::SIGKILL);
    setup.wait_server("echo", "restarted", |s| {
        s["state"] == "running" && s["pid"] != pid
    });
    assert!(healthz(setup.gateway_port));
}

#[test]
fn servers_survive_their_services_dir_vanishing_and_a_reload_after_it_returns() {
    let setup = Setup::new();
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    let _daemon = setup.start();
    let (pid, port) = setup.wait_running("echo");

    std::fs::remove_dir_all(&setup.services).expect("remove the services dir");
    let (code, _, _) = setup.mcpctl(&["reload"]);
    assert_ne!(code, 3, "the daemon answers");
    let status = setup.try_status().expect("status");
    assert!(
        status["config_errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty()),
        "the missing directory is reported: {status}"
    );
    assert_eq!(
        setup.wait_running("echo"),
        (pid, port),
        "still the same process"
    );

    std::fs::create_dir(&setup.services).expect("recreate the services dir");
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    setup.write_server("two", "two", &bin("mcp-echo"), &[]);
    let (code, out, err) = setup.mcpctl(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    setup.wait_running("two");
    assert_eq!(
        setup.wait_running("echo"),
        (pid, port),
        "echo was left alone"
    );
    let status = setup.try_status().expect("status");
    assert_eq!(status["config_errors"], serde_json::json!([]), "{status}");
}

#[test]
fn after_a_daemon_sigkill_servers_return_on_their_ports_with_no_orphans() {
    let setup = Setup::new();
    let pidfile = setup.dir.join("echo.pid");
    setup.write_server("a", "a", &bin("mcp-echo"), &[]);
    // One server with a grandchild, which PR_SET_PDEATHSIG alone would not reach.
    // Its trigger is never created.
    trigger_server(
        &setup,
        "b",
        "orphan-on-trigger.sh",
        &[("PIDFILE", pidfile.display().to_string())],
    );
    let daemon = setup.start();
    let (pid_a, port_a) = setup.wait_running("a");
    let (pid_b, port_b) = setup.wait_running("b");
    // Each server leads its own process group (setsid), so the groups are the old generation.
    let groups = [pid_a, pid_b];
    assert!(processes_in_groups(&groups).len() >= 3, "a, b and b's echo");

    // The reaper, `mcpd reaper`, in a process group of its own.
    let reapers = group_leading_children(daemon.pid(), &groups);
    assert_eq!(reapers.len(), 1, "one reaper: {reapers:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", reapers[0])).expect("cmdline");
    assert_eq!(
        cmdline, b"mcpd\0reaper\0",
        "a short, self-explaining command line"
    );

    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit_sync(PATIENCE);
    // The main processes die with the daemon (PR_SET_PDEATHSIG), b's echo by the reaper's
    // hand, with no new daemon started; then the reaper exits.
    let echo: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_for_sync(
        PATIENCE,
        lazy(|| {
            format!(
                "every process of the old groups (b's echo is {echo}) to be gone: {:?}",
                processes_in_groups(&groups)
            )
        }),
        || processes_in_groups(&groups).is_empty(),
    );
    wait_for_sync(PATIENCE, "the reaper to exit", || !alive(reapers[0]));

    // The next daemon finds every port free.
    let _daemon = setup.start();
    let (new_a, again_a) = setup.wait_running("a");
    let (new_b, again_b) = setup.wait_running("b");
    assert_eq!(
        (again_a, again_b),
        (port_a, port_b),
        "ports persisted in state_dir"
    );
    assert!(new_a != pid_a && new_b != pid_b);
    assert!(processes_in_groups(&groups).is_empty());
}
