//! The JSON-RPC messages of an SSE response, read one at a time: comments (keep-alives) and
//! events without data are skipped.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_util::bytes::{Bytes, BytesMut};

/// How long one message may take to come.
const WAIT: Duration = Duration::from_secs(30);

pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: BytesMut,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Events {
        assert_eq!(response.status(), 200, "a stream");
        Events {
            body: response.bytes_stream().boxed(),
            buffer: BytesMut::new(),
        }
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
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                    let event = self.buffer.split_to(end + 2);
                    let text = String::from_utf8_lossy(&event);
                    let data: String = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim)
                        .collect();
                    if !data.is_empty() {
                        return serde_json::from_str(&data).expect("a JSON message");
                    }
                    continue;
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
        .expect("an event in time")
    }
}
