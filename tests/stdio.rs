//! stdio servers (`transport: stdio`) end to end: a real mcpd runs `mcp-echo --stdio` (and
//! hostile stdio fixtures), and rmcp clients reach them through the gateway.

use std::time::Duration;

use futures::future::join_all;
use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::mcp_support::{Generation, call, call_progress, connected, text};
use mcpd_tests::stdio_support::{open_session, post};
use serde_json::{Value, json};

const ECHO: &str = "mcp_servers:
  echo:
    binary: mcp-echo
    args: [--stdio]
    transport: stdio
";

#[tokio::test]
async fn a_stdio_server_is_served_over_streamable_http_with_no_port() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let status = daemon.status();
    let entry = mcpd_tests::server_entry(&status, "echo").expect("echo in status");
    assert!(
        entry["port"].is_null(),
        "a stdio server has no port: {entry}"
    );

    let (client, mut progress) = connected(&daemon.mcp_url("echo"), Generation::Session).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("mcp-echo")
    );
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "progress", "sleep"]);
    assert_eq!(
        text(&call(&client, "echo", json!({"text": "über stdio"})).await),
        "über stdio"
    );
    let (result, _) = call_progress(&client, 3, Duration::from_millis(1)).await;
    assert_eq!(text(&result), "completed 3 steps");
    let mut steps = Vec::new();
    while let Ok((_, note)) = progress.try_recv() {
        steps.push(note.progress);
    }
    assert_eq!(steps, [1.0, 2.0, 3.0]);
    client.cancel().await.expect("close");

    // The tools listed by the probe over the pipe are in the registry.
    let registry = daemon.registry().await;
    let echo = registry["data"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s["name"] == "echo"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(echo["tools_count"], 4, "{echo}");

    // mcpctl talks to it over the pipe too.
    let called = daemon.mcpctl(&["call", "echo", "echo", "--args", r#"{"text":"by mcpctl"}"#]);
    let out = String::from_utf8_lossy(&called.stdout);
    assert!(
        called.status.success() && out.contains("by mcpctl"),
        "{out}"
    );
    let tested = daemon.mcpctl(&["--json", "test", "echo"]);
    let tested: Value = serde_json::from_slice(&tested.stdout).expect("test JSON");
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["server_name"], "mcp-echo", "{tested}");
    assert_eq!(tested["tools_count"], 4, "{tested}");
}

#[tokio::test]
async fn fifty_concurrent_callers_with_colliding_ids_each_get_their_own_answers() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let url = daemon.mcp_url("echo");
    let callers = (0..50).map(|caller| {
        let url = url.clone();
        async move {
            let session = open_session(&url).await;
            // Every caller uses id 1 and progress token "p": the bridge must keep them apart.
            let body = json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {
                    "name": "progress",
                    "arguments": {"steps": 3, "interval_ms": 1 + caller % 5},
                    "_meta": {"progressToken": "p"}
                }
            });
            let (status, _, progress_body) = post(&url, Some(&session), &body.to_string()).await;
            assert_eq!(status, 200);
            let body = json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": format!("caller {caller}")}}
            });
            let (status, _, echo_body) = post(&url, Some(&session), &body.to_string()).await;
            assert_eq!(status, 200);
            (caller, progress_body, echo_body)
        }
    });
    for (caller, progress_body, echo_body) in join_all(callers).await {
        let events: Vec<Value> = progress_body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).expect("JSON event"))
            .collect();
        let steps: Vec<f64> = events
            .iter()
            .filter(|e| e["method"] == "notifications/progress")
            .map(|e| {
                assert_eq!(e["params"]["progressToken"], "p");
                e["params"]["progress"].as_f64().expect("a number")
            })
            .collect();
        assert_eq!(steps, [1.0, 2.0, 3.0], "caller {caller}: {progress_body}");
        let last = events.last().expect("an answer");
        assert_eq!(last["id"], 1);
        assert_eq!(last["result"]["content"][0]["text"], "completed 3 steps");
        let echo: Value = serde_json::from_str(&echo_body).expect("JSON answer");
        assert_eq!(echo["id"], 1);
        assert_eq!(
            echo["result"]["content"][0]["text"],
            format!("caller {caller}"),
            "caller {caller} got another caller's answer"
        );
    }
}

#[tokio::test]
async fn sessions_are_required_and_hostile_messages_are_refused() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let url = daemon.mcp_url("echo");
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(post(&url, None, call).await.0, 400);
    assert_eq!(post(&url, Some("no-such-session"), call).await.0, 404);
    let session = open_session(&url).await;
    for hostile in [
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}"#,
        "not json",
        "",
    ] {
        let (status, _, body) = post(&url, Some(&session), hostile).await;
        assert_eq!(status, 400, "{hostile}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("a JSON-RPC error");
        assert!(answer["error"]["code"].is_i64(), "{body}");
    }
    // A raw newline inside the JSON (white space) must not split the message on the pipe.
    let (status, _, body) = post(
        &url,
        Some(&session),
        "{\"jsonrpc\":\"2.0\",\n\"id\":7,\r\n\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\n\"arguments\":{\"text\":\"a\\nb\"}}}",
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["result"]["content"][0]["text"], "a\nb", "{body}");
    // DELETE ends the session.
    let deleted = reqwest::Client::new()
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    assert_eq!(post(&url, Some(&session), call).await.0, 404);
    // The server keeps serving.
    let fresh = open_session(&url).await;
    let (status, _, body) = post(&url, Some(&fresh), call).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"echo\""), "{body}");
}

#[tokio::test]
async fn a_stateless_client_reaches_a_stdio_server_without_a_session() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let (client, mut progress) = connected(&daemon.mcp_url("echo"), Generation::Stateless).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(info.protocol_version.as_str(), "2026-07-28");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("mcp-echo")
    );
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 4);
    assert_eq!(
        text(&call(&client, "add", json!({"a": 1, "b": 2})).await),
        "3"
    );
    let (result, _) = call_progress(&client, 2, Duration::from_millis(1)).await;
    assert_eq!(text(&result), "completed 2 steps");
    let mut steps = Vec::new();
    while let Ok((_, note)) = progress.try_recv() {
        steps.push(note.progress);
    }
    assert_eq!(steps, [1.0, 2.0]);
    client.cancel().await.expect("close");
}
