//! SSE answers in the end-to-end tests: a response read message by message ([`Events`]), and
//! one JSON-RPC POST whose answer may come as JSON or as SSE ([`rpc`]).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_util::bytes::{Bytes, BytesMut};

/// How long one message may take to come.
const WAIT: Duration = Duration::from_secs(30);

/// An SSE response read message by message; `: keep-alive` comments are counted, not
/// returned.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: BytesMut,
    keep_alives: usize,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Events {
        assert_eq!(response.status(), 200, "a stream");
        Events {
            body: response.bytes_stream().boxed(),
            buffer: BytesMut::new(),
            keep_alives: 0,
        }
    }

    /// A response that must be an SSE stream: 200 and `text/event-stream`.
    pub fn stream(response: reqwest::Response) -> Events {
        let kind = response.headers().get("content-type").cloned();
        assert!(
            kind.as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream")),
            "an SSE stream: {kind:?}"
        );
        Events::new(response)
    }

    /// The GET stream of a session.
    pub async fn get(url: &str, session: &str) -> Events {
        let response = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .send()
            .await
            .expect("GET");
        Events::new(response)
    }

    /// The next message.
    pub async fn next(&mut self) -> Value {
        self.read(None).await.expect("a message")
    }

    /// The next message, or `None` once `keep_alives` keep-alive comments have come in all.
    pub async fn next_or_keep_alives(&mut self, keep_alives: usize) -> Option<Value> {
        self.read(Some(keep_alives)).await
    }

    /// Keep-alive comments seen so far.
    pub fn keep_alives(&self) -> usize {
        self.keep_alives
    }

    async fn read(&mut self, until_keep_alives: Option<usize>) -> Option<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                    let event = self.buffer.split_to(end + 2);
                    if event.starts_with(b": keep-alive") {
                        self.keep_alives += 1;
                        if until_keep_alives.is_some_and(|wanted| self.keep_alives >= wanted) {
                            return None;
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&event);
                    let data: String = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim)
                        .collect();
                    if !data.is_empty() {
                        return Some(serde_json::from_str(&data).expect("a JSON message"));
                    }
                }
                let chunk = self
                    .body
                    .next()
                    .await
                    .expect("the stream goes on")
                    .expect("the stream reads");
                self.buffer.extend_from_slice(&chunk);
            }
        })
        .await
        .expect("a message or keep-alive in time")
    }
}

/// A `tools/call` of `tool` with `arguments` (a JSON object's text) in `session`, whose
/// answer must be an SSE stream.
pub async fn tool_call_stream(
    url: &str,
    session: &str,
    id: &str,
    tool: &str,
    arguments: &str,
) -> Events {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    );
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .body(body)
        .send()
        .await
        .expect("POST");
    Events::stream(response)
}

/// Whom a POST of [`rpc`] speaks as.
pub enum Caller<'a> {
    /// A 2025-11-25 client in this session.
    Session(&'a str),
    /// A 2026-07-28 client: no session, the routing headers taken from the body.
    Stateless,
    /// A client opening a session (`initialize`): no session yet, no 2026-07-28 headers.
    Opening,
}

/// A POST of one JSON-RPC message; the answer (JSON, or the last event of an SSE answer) and
/// the session id the answer gave.
pub async fn rpc(url: &str, caller: Caller<'_>, body: &Value) -> (Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    request = match caller {
        Caller::Session(session) => request.header("mcp-session-id", session),
        Caller::Stateless => request
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", body["method"].as_str().unwrap_or_default())
            .header(
                "mcp-name",
                body["params"]["name"].as_str().unwrap_or_default(),
            ),
        Caller::Opening => request,
    };
    let response = request.send().await.expect("POST");
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .unwrap_or(text.as_str());
    let value = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (value, session)
}
