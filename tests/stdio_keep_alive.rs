//! A stdio server's SSE streams that only wait (a call whose server asks the caller something
//! and waits for the answer, a session's GET stream with nothing to say) carry keep-alive
//! comments, so `gateway.body_idle_timeout` never ends them: the answer given after longer
//! than the timeout still reaches the server, and its result the caller.

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::everything_over_stdio;
use mcpd_tests::sse::{Events, tool_call_stream};
use mcpd_tests::stdio_support::post;
use serde_json::json;

const INITIALIZE_WITH_SAMPLING: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// Keep-alives seen before answering: each comes after a third of the 1 s idle timeout has
/// passed in silence, so four of them mean the stream outlived the timeout.
const KEEP_ALIVES: usize = 4;

/// Reads until [`KEEP_ALIVES`] more comments came; notifications (the server's logging) may
/// come meanwhile, answers may not.
async fn outlive_the_timeout(events: &mut Events) {
    let wanted = events.keep_alives() + KEEP_ALIVES;
    while let Some(event) = events.next_or_keep_alives(wanted).await {
        assert!(event.get("id").is_none(), "only notifications: {event}");
    }
}

#[tokio::test]
async fn waiting_streams_outlive_the_body_idle_timeout_with_keep_alives() {
    let servers = everything_over_stdio("");
    let daemon = GwDaemon::start(&servers, "  body_idle_timeout: 1s\n").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let (status, session, body) = post(&url, None, INITIALIZE_WITH_SAMPLING).await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("a session id");

    // The session's GET stream, with nothing to carry, stays open.
    let mut listening = Events::get(&url, &session).await;

    // A call whose server asks for a sample, answered only after the idle timeout.
    let arguments = r#"{"prompt":"p","maxTokens":5}"#;
    let mut call =
        tool_call_stream(&url, &session, "7", "trigger-sampling-request", arguments).await;
    let asked = call.next().await;
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    outlive_the_timeout(&mut call).await;
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "model": "m",
        "content": {"type": "text", "text": "answered late"},
    }});
    let (status, _, body) = post(&url, Some(&session), &answer.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let result = call.next().await;
    assert_eq!(result["id"], 7, "{result}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("answered late"), "{result}");

    // The GET stream kept alive all along, however long the call took.
    outlive_the_timeout(&mut listening).await;
}
