//! Requests a server sends back to its client (sampling, elicitation) reach the client whose
//! call caused them, through mcpd: the official TypeScript "everything" server in stdio mode
//! (`shared` and `per-client`), driven by several official Python SDK clients at once, each
//! answering with its own text, so an answer that reached the wrong client shows.

use std::time::Duration;

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::{
    assert_each_client_got_its_own_answer, everything_over_stdio, outcome_text as text,
    python_json, require_python_sdk,
};
use mcpd_tests::sse::Caller;
use serde_json::{Value, json};

/// Runs tests/interop/backchannel_client.py against `url` with `plan`; its JSON output.
async fn clients(url: &str, plan: Value) -> Value {
    python_json(
        "backchannel_client.py",
        &[url, &plan.to_string()],
        Duration::from_secs(180),
    )
    .await
}

fn everything(sessions: &str) -> String {
    everything_over_stdio(&format!("    sessions: {sessions}\n"))
}

const SAMPLE: &str = "trigger-sampling-request";

#[tokio::test]
async fn a_shared_stdio_server_asks_the_client_whose_call_caused_the_request() {
    require_python_sdk();
    let daemon = GwDaemon::start(&everything("shared"), "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let sample = json!([SAMPLE, {"prompt": "hello", "maxTokens": 10}]);
    let out = clients(
        &url,
        json!({
            "sampling": sample,
            "elicitation": ["trigger-elicitation-request", {}],
            "ambiguous": sample,
            "no_capability": sample,
            "disconnect": sample,
        }),
    )
    .await;

    // Two clients one after the other: each is asked, and each gets its own answer back.
    assert_each_client_got_its_own_answer(&out);

    // A's request pending while B calls too: over stdio mcpd cannot tell whose B's request
    // is, so B's is refused (B's tool reports it, B is never asked) and A's goes on.
    let ambiguous = &out["ambiguous"];
    assert!(text(&ambiguous["A"]).contains("sampled by A"), "{out}");
    assert_eq!(ambiguous["B"]["is_error"], true, "{out}");
    assert!(
        text(&ambiguous["B"]).contains("cannot tell which client"),
        "{out}"
    );
    assert_eq!(ambiguous["B"]["questions"], json!([]), "{out}");

    // A client that did not declare sampling: the server is refused at once, and the tool's
    // error reaches the client.
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );

    // A client gone while asked: the server is answered for it and serves the next client.
    let disconnect = &out["disconnect"];
    assert_eq!(disconnect["D_asked"], json!(["sampling"]), "{out}");
    assert!(disconnect.get("D").is_none(), "{out}");
    assert!(text(&disconnect["E"]).contains("sampled by E"), "{out}");
}

#[tokio::test]
async fn per_client_stdio_servers_ask_each_of_two_concurrent_clients_their_own() {
    require_python_sdk();
    let daemon = GwDaemon::start(&everything("per-client"), "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let out = clients(
        &url,
        json!({"concurrent": [SAMPLE, {"prompt": "at once", "maxTokens": 10}]}),
    )
    .await;
    // Neither client answered before both were asked: the two requests were in flight
    // together, and each went to its own client.
    for (me, other) in [("A", "B"), ("B", "A")] {
        let text = text(&out["concurrent"][me]);
        assert!(text.contains(&format!("sampled by {me}")), "{out}");
        assert!(!text.contains(&format!("sampled by {other}")), "{out}");
    }
}

#[tokio::test]
async fn a_virtual_server_relays_a_members_requests_to_the_caller_of_the_call() {
    require_python_sdk();
    // mcp-echo's `ask` samples the client's model through rmcp, on the stream of the call.
    let servers = "mcp_servers:
  asker:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: \"1\", MCP_ECHO_ASK: \"1\"}
  all:
    aggregate: [asker]
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["asker"]).await;
    let url = daemon.mcp_url("all");
    let ask = json!(["asker_ask", {"prompt": "which client are you?"}]);
    let out = clients(
        &url,
        json!({
            "sampling": ask,
            "concurrent": ask,
            "no_capability": ask,
            "disconnect": ask,
        }),
    )
    .await;
    // One after the other, and both at once (each holding its answer until both were asked):
    // each caller is asked about its own call and gets its own answer back.
    for scenario in ["sampling", "concurrent"] {
        for (me, other) in [("A", "B"), ("B", "A")] {
            let text = text(&out[scenario][me]);
            assert!(
                text.contains(&format!("sampled by {me}")),
                "{scenario}: {out}"
            );
            assert!(
                !text.contains(&format!("sampled by {other}")),
                "{scenario}: {out}"
            );
        }
    }
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );
    let disconnect = &out["disconnect"];
    assert_eq!(disconnect["D_asked"], json!(["sampling"]), "{out}");
    assert!(text(&disconnect["E"]).contains("sampled by E"), "{out}");
}

/// POSTs `body` to `url` in `session`, or as a 2026-07-28 client without one; the answer.
async fn rpc(url: &str, session: Option<&str>, body: &Value) -> Value {
    let caller = session.map_or(Caller::Stateless, Caller::Session);
    mcpd_tests::sse::rpc(url, caller, body).await.0
}

#[tokio::test]
async fn a_2026_members_input_required_reaches_a_2026_caller_and_is_an_error_for_others() {
    // `asker` speaks both generations: a 2026-07-28 caller reaches it statelessly, and `ask`
    // asks with an `input_required` result. `late` speaks only 2026-07-28, so a session
    // caller reaches it statelessly too and cannot take that result.
    let servers = "mcp_servers:
  asker:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_ASK: \"1\"}
  only2026:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_ASK: \"1\", MCP_ECHO_STATELESS_ONLY: \"1\"}
  all:
    aggregate: [asker, only2026]
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["asker", "only2026"]).await;
    let url = daemon.mcp_url("all");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    });
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "asker_ask", "arguments": {"prompt": "p"}, "_meta": meta,
    }});
    let asked = rpc(&url, None, &call).await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let request = &asked["result"]["inputRequests"]["llm"];
    assert_eq!(request["method"], "sampling/createMessage", "{asked}");

    // The retry with the answer goes to the member like any call.
    let mut retry = call.clone();
    retry["id"] = json!(2);
    retry["params"]["inputResponses"] = json!({"llm": {
        "role": "assistant", "model": "m",
        "content": {"type": "text", "text": "answered by the 2026 caller"},
    }});
    if let Some(state) = asked["result"].get("requestState") {
        retry["params"]["requestState"] = state.clone();
    }
    let answered = rpc(&url, None, &retry).await;
    let text = answered["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("answered by the 2026 caller"), "{answered}");

    // A session caller cannot take an `input_required` result: a JSON-RPC error says so.
    let (status, session, body) = mcpd_tests::stdio_support::post(
        &url,
        None,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("a session id");
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "only2026_ask", "arguments": {"prompt": "p"},
    }});
    let refused = rpc(&url, Some(&session), &call).await;
    assert_eq!(refused["id"], 3, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("input_required"), "{refused}");
    assert!(message.contains("only2026"), "{refused}");

    // A member that speaks both generations is reached in a member session kept for the
    // session caller, so it asks with a sampling request on the call's stream, which is
    // relayed: the session caller answers it and gets the tool's result (before kept member
    // sessions, this too was the `input_required` error above).
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "asker_ask", "arguments": {"prompt": "p"},
    }});
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .body(call.to_string())
        .send()
        .await
        .expect("POST");
    let mut events = Events(response, String::new());
    let asked = events.next().await;
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "model": "m",
        "content": {"type": "text", "text": "answered by the session caller"},
    }});
    let (status, _, body) =
        mcpd_tests::stdio_support::post(&url, Some(&session), &answer.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let result = events.next().await;
    assert_eq!(result["id"], 4, "{result}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("answered by the session caller"), "{result}");
}

/// The JSON-RPC messages of an SSE answer, one at a time.
struct Events(reqwest::Response, String);

impl Events {
    async fn next(&mut self) -> Value {
        loop {
            while let Some(end) = self.1.find("\n\n") {
                let event: String = self.1.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if let Ok(value) = serde_json::from_str::<Value>(&data) {
                    return value;
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.0.chunk())
                .await
                .expect("an event within 30 s")
                .expect("the stream")
                .expect("more of the stream");
            self.1.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
