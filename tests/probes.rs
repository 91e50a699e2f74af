//! Health probes end to end: the real `mcpd` probes real `mcp-echo` servers of both protocol
//! generations (stateless 2026-07-28 by default; `MCP_ECHO_SESSION_ONLY=1` for the
//! session-based one) on one kept connection, sees a hung server and restarts it, and keeps
//! a server that closes idle connections running. Probes are counted through the
//! `mcpd_server_probe_seconds` gauge (a new value per probe); the daemon's connections through
//! `/proc`. The probe client alone meets an in-process rmcp server that forgets its sessions.

use std::collections::BTreeSet;
use std::time::Duration;

use mcpd::probe_client::ProbeClient;
use mcpd_tests::mcp_support::serve_session_only;
use mcpd_tests::sup_support::SupDaemon;
use mcpd_tests::{free_port, pid_of, port_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rmcp::model::ProtocolVersion;

const UP: Duration = Duration::from_secs(20);
/// Session-based servers.
const SESSION_ONLY: &str = "env:\n  MCP_ECHO_SESSION_ONLY: \"1\"\n";

/// The socket inodes of `pid`'s established TCP connections to `127.0.0.1:port`.
fn connections_to(pid: u32, port: u16) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for fd in fds.filter_map(Result::ok) {
        if let Ok(link) = std::fs::read_link(fd.path())
            && let Some(inode) = link
                .to_str()
                .and_then(|link| link.strip_prefix("socket:["))
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let established = fields.get(3) == Some(&"01");
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            (established && fields.get(2) == Some(&remote.as_str()) && inodes.contains(&inode))
                .then_some(inode)
        })
        .collect()
}

#[tokio::test]
async fn both_generations_run_with_their_tools_on_one_kept_connection() {
    let mut daemon = SupDaemon::new(4);
    daemon.echo("fresh", "");
    daemon.echo("old", SESSION_ONLY);
    daemon.start().await;
    let mut ports = Vec::new();
    for name in ["fresh", "old"] {
        let status = daemon.wait_state(name, "running", UP).await;
        assert_eq!(status["tools_count"], 4, "{status}");
        ports.push(port_of(&status));
    }
    let tools = daemon.ctl_json(&["tools", "old"]).await;
    assert!(tools.to_string().contains("\"echo\""), "{tools}");

    // Readiness opened a connection; liveness keeps using it, probe after probe.
    let pid = daemon.pid();
    let mut kept: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); ports.len()];
    daemon
        .wait_probes(&["fresh", "old"], 6, || {
            for (port, kept) in ports.iter().zip(kept.iter_mut()) {
                let now = connections_to(pid, *port);
                assert!(
                    now.len() <= 1,
                    "port {port}: {} connections at once",
                    now.len()
                );
                kept.extend(now);
            }
        })
        .await;
    for (port, kept) in ports.iter().zip(&kept) {
        assert_eq!(kept.len(), 1, "port {port}: connections seen: {kept:?}");
    }
    for name in ["fresh", "old"] {
        let status = daemon.status(name).await;
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(status["restarts"], 0, "{status}");
    }
}

#[tokio::test]
async fn a_hung_server_of_either_generation_fails_liveness_and_is_restarted() {
    let mut daemon = SupDaemon::new(4);
    daemon.echo(
        "fresh",
        "health: {interval: 200ms, timeout: 500ms, failures: 2}\n",
    );
    daemon.echo(
        "old",
        &format!("{SESSION_ONLY}health: {{interval: 200ms, timeout: 500ms, failures: 2}}\n"),
    );
    daemon.start().await;
    let mut pids = Vec::new();
    for name in ["fresh", "old"] {
        let status = daemon.wait_state(name, "running", UP).await;
        pids.push(pid_of(&status));
    }
    // Liveness has its connection open before the server stops answering.
    daemon.wait_probes(&["fresh", "old"], 2, || {}).await;
    for pid in &pids {
        kill(Pid::from_raw(*pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    }
    for (name, old_pid) in ["fresh", "old"].into_iter().zip(pids) {
        let status = daemon
            .wait_status(name, UP, "restarted and running", |s| {
                s["state"] == "running"
                    && s["pid"].as_u64().is_some_and(|p| p != u64::from(old_pid))
            })
            .await;
        assert!(status["restarts"].as_u64() >= Some(1), "{status}");
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("liveness probes failed") && error.contains("no answer from"),
            "{status}"
        );
        assert_eq!(status["tools_count"], 4, "{status}");
    }
}

#[tokio::test]
async fn a_server_closing_idle_connections_stays_running() {
    let mut daemon = SupDaemon::new(4);
    // One failed probe would restart it: `restarts: 0` means every probe passed.
    let extra = "health: {interval: 200ms, timeout: 1s, failures: 1}\n";
    daemon.echo(
        "fresh",
        &format!("env:\n  MCP_ECHO_IDLE_TIMEOUT_MS: \"50\"\n{extra}"),
    );
    daemon.echo(
        "old",
        &format!(
            "env:\n  MCP_ECHO_SESSION_ONLY: \"1\"\n  MCP_ECHO_IDLE_TIMEOUT_MS: \"50\"\n{extra}"
        ),
    );
    daemon.start().await;
    for name in ["fresh", "old"] {
        daemon.wait_state(name, "running", UP).await;
    }
    daemon.wait_probes(&["fresh", "old"], 6, || {}).await;
    for name in ["fresh", "old"] {
        let status = daemon.status(name).await;
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(status["restarts"], 0, "{status}");
    }
}

#[tokio::test]
async fn a_forgotten_session_is_opened_again_on_the_same_connection() {
    const CALL: Duration = Duration::from_secs(10);
    let port = free_port();
    let server = serve_session_only(port, &[ProtocolVersion::V_2025_11_25]).await;
    let _stop = server.shutdown.clone().drop_guard();
    let mut probe = ProbeClient::new(port, "/mcp");

    let tools = probe.ready(CALL).await.expect("ready");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(names, ["pong"]);
    for _ in 0..3 {
        assert_eq!(probe.alive(CALL).await.expect("alive"), None);
    }
    assert_eq!(server.open_sessions().await, 1, "one kept session");

    // The server forgets its sessions (as after its idle timeout): the next probe opens a new
    // one and still passes.
    server.sessions.sessions.write().await.clear();
    assert_eq!(probe.alive(CALL).await.expect("alive again"), None);
    assert_eq!(server.open_sessions().await, 1, "a new session");
    assert_eq!(server.accepted(), 1, "every request on one connection");
}

#[tokio::test]
async fn every_30th_liveness_probe_lists_the_tools() {
    const CALL: Duration = Duration::from_secs(10);
    let port = free_port();
    let server = serve_session_only(port, &[ProtocolVersion::V_2025_11_25]).await;
    let _stop = server.shutdown.clone().drop_guard();
    let mut probe = ProbeClient::new(port, "/mcp");
    probe.ready(CALL).await.expect("ready");
    for round in 1..=2 * mcpd::probe_client::TOOL_REFRESH_EVERY {
        let listed = probe.alive(CALL).await.expect("alive");
        if round % mcpd::probe_client::TOOL_REFRESH_EVERY == 0 {
            let names: Vec<String> = listed.expect("tools").into_iter().map(|t| t.name).collect();
            assert_eq!(names, ["pong"], "round {round}");
        } else {
            assert_eq!(listed, None, "round {round}");
        }
    }
    assert_eq!(server.accepted(), 1);
}
