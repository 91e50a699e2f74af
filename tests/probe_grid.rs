//! Liveness on the coarse probe grid (an interval of 2 s or more probes on the 500 ms grid),
//! with the routine probes that change nothing kept out of the server's task (their duration
//! is noted for `mcpd_server_probe_seconds`, no status is published): a server that hangs
//! after many such probes is still found and restarted, and one that dies is restarted.

use std::time::Duration;

use mcpd_tests::pid_of;
use mcpd_tests::sup_support::SupDaemon;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const UP: Duration = Duration::from_secs(30);
/// The shortest interval on the 500 ms grid; one failure restarts.
const HEALTH: &str = "health: {interval: 2s, timeout: 500ms, failures: 1}\n";

#[tokio::test]
async fn a_server_hung_after_routine_probes_on_the_coarse_grid_is_restarted() {
    let mut daemon = SupDaemon::new(2);
    daemon.echo("hangs", HEALTH);
    daemon.start().await;
    let status = daemon.wait_state("hangs", "running", UP).await;
    let pid = pid_of(&status);
    // Several probes that passed after one that passed: noted, not reported to the task.
    daemon.wait_probes(&["hangs"], 3, || {}).await;
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
    daemon.wait_probes(&["hangs"], 2, || {}).await;
}

#[tokio::test]
async fn a_server_killed_between_routine_probes_is_restarted() {
    let mut daemon = SupDaemon::new(2);
    daemon.echo("dies", HEALTH);
    daemon.start().await;
    let pid = pid_of(&daemon.wait_state("dies", "running", UP).await);
    daemon.wait_probes(&["dies"], 2, || {}).await;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");
    let status = daemon
        .wait_status("dies", UP, "restarted and running", |s| {
            s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
        })
        .await;
    assert!(status["restarts"].as_u64() >= Some(1), "{status}");
    daemon.wait_probes(&["dies"], 2, || {}).await;
}
