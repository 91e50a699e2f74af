//! Liveness on the coarse probe grid (an interval of 2 s or more probes on the 500 ms grid),
//! with the routine probes that change nothing kept out of the server's task (their duration
//! is noted for `mcpd_server_probe_seconds`, no status is published): a server that hangs
//! after many such probes is still found and restarted, and one that dies is restarted.

use std::collections::BTreeSet;
use std::time::Duration;

use mcpd_tests::sup_support::SupDaemon;
use mcpd_tests::{lazy, pid_of, wait_for_value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const UP: Duration = Duration::from_secs(30);
/// The shortest interval on the 500 ms grid; one failure restarts.
const HEALTH: &str = "health: {interval: 2s, timeout: 500ms, failures: 1}\n";

/// The `mcpd_server_probe_seconds` value of `server`, as printed.
async fn probe_gauge(gateway: u16, server: &str) -> Option<String> {
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

/// Waits until `server` has been probed `probes` more times (distinct gauge values).
async fn wait_probes(daemon: &SupDaemon, server: &str, probes: usize) {
    let gateway = daemon.ports.port(0);
    let seen = std::sync::Mutex::new(BTreeSet::<String>::new());
    let what = lazy(|| {
        format!(
            "{probes} probes of {server}; seen {:?}",
            seen.lock().unwrap()
        )
    });
    wait_for_value(UP, what, || async {
        let value = probe_gauge(gateway, server).await;
        let mut seen = seen.lock().unwrap();
        seen.extend(value);
        (seen.len() > probes).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_server_hung_after_routine_probes_on_the_coarse_grid_is_restarted() {
    let mut daemon = SupDaemon::new(2);
    daemon.echo("hangs", HEALTH);
    daemon.start().await;
    let status = daemon.wait_state("hangs", "running", UP).await;
    let pid = pid_of(&status);
    // Several probes that passed after one that passed: noted, not reported to the task.
    wait_probes(&daemon, "hangs", 3).await;
    let status = daemon.status("hangs").await;
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(pid_of(&status), pid, "{status}");
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let status = daemon
        .wait_status("hangs", UP, "restarted and running", |s| {
            s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
        })
        .await;
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("liveness probes failed") && error.contains("no answer from"),
        "{status}"
    );
    // The new process is probed in its turn.
    wait_probes(&daemon, "hangs", 2).await;
}

#[tokio::test]
async fn a_server_killed_between_routine_probes_is_restarted() {
    let mut daemon = SupDaemon::new(2);
    daemon.echo("dies", HEALTH);
    daemon.start().await;
    let pid = pid_of(&daemon.wait_state("dies", "running", UP).await);
    wait_probes(&daemon, "dies", 2).await;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");
    let status = daemon
        .wait_status("dies", UP, "restarted and running", |s| {
            s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
        })
        .await;
    assert!(status["restarts"].as_u64() >= Some(1), "{status}");
    wait_probes(&daemon, "dies", 2).await;
}
