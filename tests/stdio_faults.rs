//! stdio servers that misbehave: killed mid-call, exiting on initialize, never answering,
//! flooding stdout with garbage, closing stdout while running; and cancellations, which must
//! reach the child under its rewritten id and touch no other caller.

use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::stdio_support::{
    fault_server, logs, open_session, post, status_of, tool_call, wait_log,
};
use mcpd_tests::{GatewayUrls, lazy, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const ECHO: &str = "mcp_servers:
  echo:
    binary: mcp-echo
    args: [--stdio]
    transport: stdio
";

/// Bounds a call that must not hang; the failure says which.
const PROMPT: Duration = Duration::from_secs(20);

/// Liveness pings for a child the test makes stop answering: they fail within seconds of
/// that, while a loaded machine is unlikely to slow three pings in a row of a working child
/// past their timeout (a restart then would fail the test's first request).
const PATIENT_PINGS: &str =
    "    health: {interval: 100ms, timeout: 1s, failures: 3, start_timeout: 5s}\n";

fn answer(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// Waits until `name` runs with a pid other than `old`; returns the new pid.
async fn wait_new_pid(daemon: &GwDaemon, name: &str, old: Option<i64>) -> i64 {
    let mut pid = None;
    wait_for(
        PROMPT,
        lazy(|| format!("{name} running again: {}", status_of(daemon, name))),
        || {
            let status = status_of(daemon, name);
            let now = status["pid"].as_i64();
            let fresh = status["state"] == "running" && now.is_some() && now != old;
            if fresh {
                pid = now;
            }
            async move { fresh }
        },
    )
    .await;
    pid.expect("a pid")
}

#[tokio::test]
async fn a_child_killed_mid_call_fails_the_call_at_once_naming_the_server() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let url = daemon.mcp_url("echo");
    let session = open_session(&url).await;
    let pid = status_of(&daemon, "echo")["pid"].as_i64().expect("a pid");
    let in_flight = {
        let (url, session) = (url.clone(), session.clone());
        tokio::spawn(async move {
            post(
                &url,
                Some(&session),
                &tool_call("5", "sleep", json!({"ms": 600_000})),
            )
            .await
        })
    };
    wait_log(&daemon, "echo", "call sleep").await;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the child");
    let (status, _, body) = tokio::time::timeout(PROMPT, in_flight)
        .await
        .expect("the in-flight call was answered when the child died")
        .expect("the call task");
    assert_eq!(status, 200);
    let answer = answer(&body);
    assert_eq!(answer["id"], 5);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("server \"echo\""), "{body}");
    // Restarted, and the old session still works with the new process.
    wait_new_pid(&daemon, "echo", Some(pid)).await;
    let (status, _, body) = post(
        &url,
        Some(&session),
        &tool_call("6", "echo", json!({"text": "back"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer_text(&body), "back");
}

fn answer_text(body: &str) -> String {
    answer(body)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_cancel_reaches_the_child_under_its_own_id_and_spares_other_callers() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let url = daemon.mcp_url("echo");
    let (a, b) = (open_session(&url).await, open_session(&url).await);
    let call = |session: String, ms: u64| {
        let url = url.clone();
        tokio::spawn(async move {
            post(
                &url,
                Some(&session),
                &tool_call(r#""same""#, "sleep", json!({"ms": ms})),
            )
            .await
        })
    };
    let cancelled = call(a.clone(), 600_000);
    let spared = call(b.clone(), 1_500);
    wait_for(PROMPT, "both sleeps to start", || async {
        logs(&daemon, "echo").matches("call sleep").count() >= 2
    })
    .await;
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"same","reason":"test"}}"#;
    let (status, _, _) = post(&url, Some(&a), cancel).await;
    assert_eq!(status, 202);
    let (_, _, body) = tokio::time::timeout(PROMPT, cancelled)
        .await
        .expect("the cancelled call ended")
        .expect("task");
    assert_eq!(answer(&body)["error"]["code"], -32800, "{body}");
    wait_log(&daemon, "echo", "cancelled by the client").await;
    let (_, _, body) = tokio::time::timeout(PROMPT, spared)
        .await
        .expect("the other caller's call ended")
        .expect("task");
    assert_eq!(
        answer_text(&body),
        "slept 1500 ms",
        "the cancel hit another caller"
    );

    // A caller that goes away cancels its request at the child too.
    let gone = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &b)
        .timeout(Duration::from_millis(300))
        .body(tool_call("9", "sleep", json!({"ms": 600_000})))
        .send()
        .await;
    assert!(gone.is_err(), "the call should have timed out: {gone:?}");
    wait_for(PROMPT, "a second cancellation at the child", || async {
        logs(&daemon, "echo")
            .matches("cancelled by the client")
            .count()
            >= 2
    })
    .await;
}

#[tokio::test]
async fn a_child_that_exits_on_initialize_backs_off_and_the_gateway_says_so() {
    let daemon = GwDaemon::start(&fault_server("bad", "exit-on-initialize", ""), "").await;
    wait_for(PROMPT, "restarts of bad", || async {
        status_of(&daemon, "bad")["restarts"].as_u64() >= Some(2)
    })
    .await;
    let status = status_of(&daemon, "bad");
    assert_ne!(status["state"], "running", "{status}");
    let (code, _, body) = post(
        &daemon.mcp_url("bad"),
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(daemon.process.try_status().is_none(), "mcpd died");
}

#[tokio::test]
async fn a_child_that_never_answers_is_never_ready() {
    let health = "    health: {interval: 100ms, timeout: 300ms, failures: 2, start_timeout: 1s}\n";
    let daemon = GwDaemon::start(&fault_server("mute", "never-answers", health), "").await;
    wait_for(PROMPT, "mute restarted after its start timeout", || async {
        status_of(&daemon, "mute")["restarts"].as_u64() >= Some(1)
    })
    .await;
    assert_ne!(status_of(&daemon, "mute")["state"], "running");
}

#[tokio::test]
async fn a_child_that_stops_answering_fails_the_waiting_call_when_it_is_restarted() {
    let daemon =
        GwDaemon::start(&fault_server("hang", "hang-after-ready", PATIENT_PINGS), "").await;
    daemon.wait_running(&["hang"]).await;
    let url = daemon.mcp_url("hang");
    let session = open_session(&url).await;
    let (status, _, body) = tokio::time::timeout(
        PROMPT,
        post(
            &url,
            Some(&session),
            &tool_call("1", "echo", json!({"text": "x"})),
        ),
    )
    .await
    .expect("the waiting call was failed");
    assert_eq!(status, 200);
    let message = answer(&body)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("server \"hang\""), "{body}");
}

#[tokio::test]
async fn garbage_on_stdout_is_logged_and_an_over_long_line_refused_while_serving_goes_on() {
    let daemon = GwDaemon::start(&fault_server("noisy", "garbage", ""), "").await;
    daemon.wait_running(&["noisy"]).await;
    let pid = status_of(&daemon, "noisy")["pid"].as_i64();
    let url = daemon.mcp_url("noisy");
    let session = open_session(&url).await;
    let (_, _, body) = post(
        &url,
        Some(&session),
        &tool_call("1", "echo", json!({"text": "fine"})),
    )
    .await;
    assert_eq!(answer_text(&body), "fine");
    let (_, _, body) = post(
        &url,
        Some(&session),
        &tool_call("2", "echo", json!({"text": "huge"})),
    )
    .await;
    assert_eq!(answer_text(&body), "huge");
    wait_log(&daemon, "noisy", "garbage: starting up, not JSON").await;
    wait_log(&daemon, "noisy", "refused a stdout line of 17825806 bytes").await;
    let log = logs(&daemon, "noisy");
    assert!(
        !log.contains('\x1b'),
        "an escape sequence reached the terminal: {log}"
    );
    assert_eq!(
        status_of(&daemon, "noisy")["pid"].as_i64(),
        pid,
        "the server was restarted"
    );
}

#[tokio::test]
async fn a_child_that_closes_stdout_fails_the_call_and_is_restarted() {
    let daemon = GwDaemon::start(&fault_server("closer", "close-stdout", PATIENT_PINGS), "").await;
    daemon.wait_running(&["closer"]).await;
    let pid = status_of(&daemon, "closer")["pid"].as_i64();
    let url = daemon.mcp_url("closer");
    let session = open_session(&url).await;
    let (_, _, body) = tokio::time::timeout(
        PROMPT,
        post(
            &url,
            Some(&session),
            &tool_call("1", "echo", json!({"text": "x"})),
        ),
    )
    .await
    .expect("the call was failed when stdout closed");
    let message = answer(&body)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("server \"closer\" closed its stdout"),
        "{body}"
    );
    wait_new_pid(&daemon, "closer", pid).await;
}

#[tokio::test]
async fn a_request_the_child_never_answers_ends_with_504_after_the_body_idle_timeout() {
    // Liveness pings are far apart, so only the gateway's bound ends the wait.
    let health = "    health: {interval: 1h, timeout: 3s, failures: 3, start_timeout: 5s}\n";
    let daemon = GwDaemon::start(
        &fault_server("hang", "hang-after-ready", health),
        "  body_idle_timeout: 1s\n",
    )
    .await;
    daemon.wait_running(&["hang"]).await;
    let url = daemon.mcp_url("hang");
    let session = open_session(&url).await;
    let (status, _, body) = tokio::time::timeout(
        PROMPT,
        post(
            &url,
            Some(&session),
            &tool_call("1", "echo", json!({"text": "x"})),
        ),
    )
    .await
    .expect("the unanswered call was ended");
    assert_eq!(status, 504, "{body}");
    let message = answer(&body)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("server \"hang\" did not answer"), "{body}");
}
