//! `sessions: per-client`: a child per client session, stopped on DELETE, idle timeout or
//! mcpd's stop, never outliving the session; `max_sessions` enforced with 503 + Retry-After,
//! a new session waiting for the slot of a child still stopping.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::stdio_support::{fault_server, open_session, post, status_of, tool_call};
use mcpd_tests::sup_support::{descendants, is_dead};
use mcpd_tests::{GatewayUrls, lazy, wait_for};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;

fn per_client(max: usize, idle: &str) -> String {
    fault_server(
        "pc",
        "plain",
        &format!("    sessions: per-client\n    max_sessions: {max}\n    idle_timeout: {idle}\n"),
    )
}

/// A per-client server of one session whose children ignore SIGTERM, so an ended session's
/// child holds the slot for `stop_timeout`.
fn one_slot_ignoring_term(stop_timeout: &str) -> String {
    fault_server(
        "pc",
        "ignore-term",
        &format!(
            "    sessions: per-client\n    max_sessions: 1\n    idle_timeout: 10m\n    stop_timeout: {stop_timeout}\n"
        ),
    )
}

/// The pid of the child serving `session` (the fixture's echo of "pid").
async fn pid_of(url: &str, session: &str) -> u32 {
    let (status, _, body) = post(
        url,
        Some(session),
        &tool_call("1", "echo", json!({"text": "pid"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    answer["result"]["content"][0]["text"]
        .as_str()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body}"))
}

/// Live processes under mcpd of server `pc` (the supervised child included).
fn fixture_processes(daemon: &GwDaemon) -> BTreeSet<u32> {
    descendants(daemon.process.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| var == b"MCP_SERVICE_ID=pc")
            }) && !is_dead(*pid)
        })
        .collect()
}

async fn delete(url: &str, session: &str) -> u16 {
    reqwest::Client::new()
        .delete(url)
        .header("mcp-session-id", session)
        .send()
        .await
        .expect("DELETE")
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_session_has_its_own_child_and_max_sessions_is_enforced() {
    let daemon = GwDaemon::start(&per_client(3, "10m"), "").await;
    daemon.wait_running(&["pc"]).await;
    let url = daemon.mcp_url("pc");
    let canary = status_of(&daemon, "pc")["pid"].as_u64().expect("a pid") as u32;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(open_session(&url).await);
    }
    let mut pids = BTreeSet::new();
    for session in &sessions {
        pids.insert(pid_of(&url, session).await);
    }
    assert_eq!(pids.len(), 3, "sessions share a child: {pids:?}");
    assert!(
        !pids.contains(&canary),
        "a session got the supervised child"
    );
    // Each call of one session reaches the same child.
    assert!(pids.contains(&pid_of(&url, &sessions[0]).await));
    // mcpctl lists the live children.
    let listed: BTreeSet<u32> = status_of(&daemon, "pc")["session_pids"]
        .as_array()
        .expect("session_pids")
        .iter()
        .filter_map(|pid| pid.as_u64().map(|pid| pid as u32))
        .collect();
    assert_eq!(listed, pids);
    let shown = daemon.mcpctl(&["show", "pc"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    let line = shown
        .lines()
        .find(|line| line.starts_with("sessions"))
        .unwrap_or_else(|| panic!("no sessions line in {shown}"));
    assert!(line.contains("3: "), "{line}");
    let table = String::from_utf8_lossy(&daemon.mcpctl(&["status"]).stdout).into_owned();
    assert!(table.contains("pc: 3 session children"), "{table}");

    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());

    let first = pid_of(&url, &sessions[0]).await;
    assert_eq!(delete(&url, &sessions[0]).await, 200);
    wait_for(WAIT, "the deleted session's child to end", || async {
        is_dead(first)
    })
    .await;
    assert_eq!(
        post(
            &url,
            Some(&sessions[0]),
            &tool_call("2", "echo", json!({"text": "x"}))
        )
        .await
        .0,
        404
    );
    let fresh = open_session(&url).await;
    assert!(!pids.contains(&pid_of(&url, &fresh).await));
}

#[tokio::test]
async fn a_new_session_waits_for_the_slot_of_a_child_still_stopping() {
    // The children ignore SIGTERM, so each ended session holds its slot until the SIGKILL
    // `stop_timeout` later; a session opened meanwhile waits for it instead of a 503.
    let daemon = GwDaemon::start(&one_slot_ignoring_term("3s"), "").await;
    daemon.wait_running(&["pc"]).await;
    let url = daemon.mcp_url("pc");
    let first = open_session(&url).await;
    let first_pid = pid_of(&url, &first).await;
    // The one slot is held by a live session: refused at once.
    let (status, _, body) = post(&url, None, INIT).await;
    assert_eq!(status, 503, "{body}");

    assert_eq!(delete(&url, &first).await, 200);
    let second = open_session(&url).await;
    assert!(
        is_dead(first_pid),
        "the new session started before the old child was gone"
    );
    assert_ne!(pid_of(&url, &second).await, first_pid);
    assert_eq!(
        status_of(&daemon, "pc")["session_pids"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn the_wait_for_a_stopping_childs_slot_ends_at_upstream_wait() {
    // The ended session's child ignores SIGTERM for its 10-minute stop_timeout: the next
    // session waits no longer than gateway.upstream_wait for its slot, then gets a 503.
    let daemon = GwDaemon::start(&one_slot_ignoring_term("10m"), "  upstream_wait: 1s").await;
    daemon.wait_running(&["pc"]).await;
    let url = daemon.mcp_url("pc");
    let first = open_session(&url).await;
    let first_pid = pid_of(&url, &first).await;
    assert_eq!(delete(&url, &first).await, 200);
    let (status, _, body) = post(&url, None, INIT).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_sessions"), "{body}");
    assert!(
        !is_dead(first_pid),
        "the child was stopped within 10 minutes"
    );
}

#[tokio::test]
async fn two_hundred_sessions_opened_and_dropped_leave_no_child_behind() {
    // The idle timeout runs from a child's start, before its session is answered, so each
    // session is used as soon as its own open returns: waiting for all 40 opens first could
    // let the earliest sessions expire on a busy machine.
    let servers = "mcp_servers:
  pc:
    binary: mcp-echo
    args: [--stdio]
    transport: stdio
    sessions: per-client
    max_sessions: 40
    idle_timeout: 3s
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["pc"]).await;
    let url = daemon.mcp_url("pc");
    for round in 0..5 {
        // Each round: 40 sessions; a third closed with DELETE, a third abandoned idle after a
        // call, a third abandoned while a call is in flight (the caller gives up).
        wait_for(
            WAIT,
            lazy(|| {
                format!(
                    "round {round}: room for 40 sessions; {:?}",
                    fixture_processes(&daemon)
                )
            }),
            || async { fixture_processes(&daemon).len() <= 1 },
        )
        .await;
        join_all((0..40).map(|i| {
            let url = url.clone();
            async move {
                let session = open_session(&url).await;
                match i % 3 {
                    0 => assert_eq!(delete(&url, &session).await, 200),
                    1 => {
                        let (status, _, _) = post(
                            &url,
                            Some(&session),
                            &tool_call("1", "add", json!({"a": 1, "b": 2})),
                        )
                        .await;
                        assert_eq!(status, 200);
                    }
                    _ => {
                        let gone = reqwest::Client::new()
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("accept", "application/json")
                            .header("mcp-session-id", &session)
                            .timeout(Duration::from_millis(300))
                            .body(tool_call("1", "sleep", json!({"ms": 600_000})))
                            .send()
                            .await;
                        assert!(gone.is_err(), "the sleep answered: {gone:?}");
                    }
                }
            }
        }))
        .await;
    }
    wait_for(
        WAIT,
        lazy(|| {
            format!(
                "only the supervised child left: {:?}",
                fixture_processes(&daemon)
            )
        }),
        || async { fixture_processes(&daemon).len() == 1 },
    )
    .await;
    let canary = status_of(&daemon, "pc")["pid"].as_u64().expect("a pid") as u32;
    assert_eq!(fixture_processes(&daemon), BTreeSet::from([canary]));
}

#[tokio::test]
async fn no_session_child_outlives_mcpd() {
    let daemon = GwDaemon::start(&per_client(5, "10m"), "").await;
    daemon.wait_running(&["pc"]).await;
    let url = daemon.mcp_url("pc");
    let mut pids = Vec::new();
    for _ in 0..3 {
        let session = open_session(&url).await;
        pids.push(pid_of(&url, &session).await);
    }
    daemon.process.signal(Signal::SIGTERM);
    daemon.process.wait_exit(WAIT).await;
    wait_for(
        WAIT,
        lazy(|| format!("session children {pids:?} to end")),
        || async { pids.iter().all(|pid| is_dead(*pid)) },
    )
    .await;
}
