//! A stdio server's SSE streams that only wait (a call whose server asks the caller something
//! and waits for the answer, a session's GET stream with nothing to say) carry keep-alive
//! comments, so `gateway.body_idle_timeout` never ends them: the answer given after longer
//! than the timeout still reaches the server, and its result the caller.

use std::time::Duration;

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::everything_server;
use mcpd_tests::stdio_support::post;
use serde_json::{Value, json};

const INITIALIZE_WITH_SAMPLING: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// Keep-alives seen before answering: each comes after a third of the 1 s idle timeout has
/// passed in silence, so four of them mean the stream outlived the timeout.
const KEEP_ALIVES: usize = 4;

/// An SSE response read event by event; comments are counted, not returned.
struct Events {
    response: reqwest::Response,
    buffer: String,
    keep_alives: usize,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        assert_eq!(response.status().as_u16(), 200);
        let kind = response.headers().get("content-type").cloned();
        assert!(
            kind.as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream")),
            "an SSE stream: {kind:?}"
        );
        Events {
            response,
            buffer: String::new(),
            keep_alives: 0,
        }
    }

    /// The next event with data, as JSON; `None` when `until_keep_alives` comments came first.
    async fn next(&mut self, until_keep_alives: Option<usize>) -> Option<Value> {
        let read = async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let event: String = self.buffer.drain(..end + 2).collect();
                    if event.starts_with(": keep-alive") {
                        self.keep_alives += 1;
                        if until_keep_alives.is_some_and(|wanted| self.keep_alives >= wanted) {
                            return None;
                        }
                        continue;
                    }
                    let data: String = event
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if !data.is_empty() {
                        return Some(serde_json::from_str(&data).expect("JSON event"));
                    }
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("the stream stays open")
                    .expect("the stream was ended before its answer");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("an event or keep-alive within 30 s")
    }
}

impl Events {
    /// Reads until [`KEEP_ALIVES`] more comments came; notifications (the server's logging)
    /// may come meanwhile, answers may not.
    async fn outlive_the_timeout(&mut self) {
        let wanted = self.keep_alives + KEEP_ALIVES;
        while let Some(event) = self.next(Some(wanted)).await {
            assert!(event.get("id").is_none(), "only notifications: {event}");
        }
    }
}

fn request(url: &str, session: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
}

#[tokio::test]
async fn waiting_streams_outlive_the_body_idle_timeout_with_keep_alives() {
    let servers = format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [stdio]
    transport: stdio
",
        everything_server().display()
    );
    let daemon = GwDaemon::start(&servers, "  body_idle_timeout: 1s\n").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let (status, session, body) = post(&url, None, INITIALIZE_WITH_SAMPLING).await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("a session id");

    // The session's GET stream, with nothing to carry, stays open.
    let get = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("GET");
    let mut listening = Events::new(get);

    // A call whose server asks for a sample, answered only after the idle timeout.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "trigger-sampling-request", "arguments": {"prompt": "p", "maxTokens": 5},
    }});
    let response = request(&url, &session)
        .body(call.to_string())
        .send()
        .await
        .expect("POST");
    let mut call = Events::new(response);
    let asked = call.next(None).await.expect("the server's request");
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    call.outlive_the_timeout().await;
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "model": "m",
        "content": {"type": "text", "text": "answered late"},
    }});
    let answered = request(&url, &session)
        .body(answer.to_string())
        .send()
        .await
        .expect("POST the answer");
    assert_eq!(answered.status().as_u16(), 202);
    let result = call.next(None).await.expect("the call's result");
    assert_eq!(result["id"], 7, "{result}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("answered late"), "{result}");

    // The GET stream kept alive all along, however long the call took.
    listening.outlive_the_timeout().await;
}
