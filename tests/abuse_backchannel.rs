//! Hostile answers to requests a stdio server sent back through mcpd: an answer from another
//! session, from no session, with an id mcpd never gave, twice, or after the caller left.
//! Each is refused (400) and the client that was asked still gets its own answer through.

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::everything_over_stdio;
use mcpd_tests::sse::{Events, tool_call_stream};
use mcpd_tests::stdio_support::{post, status_of};
use serde_json::{Value, json};

const INITIALIZE_WITH_SAMPLING: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}"#;

async fn session_with_sampling(url: &str) -> String {
    let (status, session, body) = post(url, None, INITIALIZE_WITH_SAMPLING).await;
    assert_eq!(status, 200, "{body}");
    session.expect("a session id")
}

fn answer(id: &Value, text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "role": "assistant", "model": "m", "content": {"type": "text", "text": text},
    }})
    .to_string()
}

/// The text of a call's result.
fn result_text(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
}

/// Two sessions of `url` call `tool` (which asks the caller's model) with the same request
/// id: only the asked session may answer each request, a caller that leaves while asked
/// leaves the server serving the other, and `server` keeps its process throughout.
async fn only_the_asked_session_answers(
    daemon: &GwDaemon,
    server: &str,
    url: &str,
    tool: &str,
    arguments: &str,
) {
    let pid = status_of(daemon, server)["pid"].as_i64();
    let asked = session_with_sampling(url).await;
    let intruder = session_with_sampling(url).await;

    // Both callers use request id 1: the server's request reaches the one whose call it is.
    let mut stream = tool_call_stream(url, &asked, "1", tool, arguments).await;
    let id = answer_only_as_the_asked_session(url, &asked, &intruder, &mut stream).await;
    let result = stream.next().await;
    assert_eq!(result["id"], 1, "{result}");
    assert!(result_text(&result).contains("the real one"), "{result}");
    assert!(!result_text(&result).contains("forged"), "{result}");

    // The intruder's own call, same request id: asked under a new id of mcpd's.
    let mut theirs = tool_call_stream(url, &intruder, "1", tool, arguments).await;
    let request = theirs.next().await;
    assert_ne!(request["id"], id, "mcpd's ids are never reused: {request}");
    // It leaves while asked: the server is answered for it and still serves the other.
    drop(theirs);
    let mut again = tool_call_stream(url, &asked, "2", tool, arguments).await;
    let request = again.next().await;
    let (status, _, body) = post(url, Some(&asked), &answer(&request["id"], "still here")).await;
    assert_eq!(status, 202, "{body}");
    let result = again.next().await;
    assert!(result_text(&result).contains("still here"), "{result}");
    assert_eq!(status_of(daemon, server)["pid"].as_i64(), pid);
}

#[tokio::test]
async fn answers_from_anyone_but_the_asked_session_are_refused() {
    let daemon = GwDaemon::start(&everything_over_stdio(""), "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let arguments = r#"{"prompt":"p","maxTokens":5}"#;
    only_the_asked_session_answers(
        &daemon,
        "everything",
        &url,
        "trigger-sampling-request",
        arguments,
    )
    .await;
}

#[tokio::test]
async fn answers_to_a_members_request_from_anyone_but_the_asked_virtual_session_are_refused() {
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
    only_the_asked_session_answers(&daemon, "asker", &url, "asker_ask", r#"{"prompt":"p"}"#).await;
}

/// Reads the sampling request mcpd relays on `stream` and checks who may answer it: another
/// session, no session, an id never given and other spellings of ids are refused with 400;
/// the asked session's answer is taken, once. Returns the id mcpd gave the request.
async fn answer_only_as_the_asked_session(
    url: &str,
    asked: &str,
    intruder: &str,
    stream: &mut Events,
) -> Value {
    let request = stream.next().await;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let id = request["id"].clone();
    assert!(id.is_u64(), "mcpd's own id: {request}");
    let (status, _, body) = post(url, Some(intruder), &answer(&id, "forged")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("another session"), "{body}");
    let (status, _, body) = post(url, None, &answer(&id, "forged")).await;
    assert_eq!(status, 400, "{body}");
    for unknown in [json!(987_654_321u64), json!("x"), json!(-1), json!(null)] {
        let (status, _, body) = post(url, Some(asked), &answer(&unknown, "forged")).await;
        assert_eq!(status, 400, "{unknown}: {body}");
    }
    let (status, _, body) = post(url, Some(asked), &answer(&id, "the real one")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = post(url, Some(asked), &answer(&id, "again")).await;
    assert_eq!(status, 400, "{body}");
    id
}
