//! What a response body says as JSON-RPC: one JSON document, or an event stream read until
//! the message answering our request id arrives; anything else is summed up in a clean snippet.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::io::AsyncRead;

use super::body::BodyReader;
use super::{HttpError, Reader, memchr};

/// How much of an error response's body is quoted in the error.
pub(super) const SNIPPET: usize = 200;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RpcError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// What the server answered.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The JSON-RPC result of our request.
    Result(T),
    /// A JSON-RPC error for our request (with any HTTP status).
    Error(RpcError),
    /// A 2xx status with an empty body (the answer to a notification).
    Accepted,
    /// Any other answer: a non-2xx status without a JSON-RPC error for our request. Carries
    /// the start of the body, cleaned for a log line.
    Status(String),
}

/// Reads an event stream until the JSON-RPC message answering `id` arrives.
pub(super) async fn read_events<R, T>(
    reader: &mut Reader<'_, R>,
    body: &mut BodyReader,
    id: Option<u64>,
) -> Result<Outcome<T>, HttpError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(id) = id else {
        return Err(HttpError::Malformed(
            "an event stream in answer to a notification".into(),
        ));
    };
    let mut data = Vec::new();
    let mut scanned = 0;
    loop {
        // Every complete line of what has been decoded so far.
        while let Some(end) = memchr(b'\n', &body.out[scanned..]) {
            let line = &body.out[scanned..scanned + end];
            scanned += end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if !data.is_empty() {
                    if let Some(outcome) = match_message(&data, id)? {
                        return Ok(outcome);
                    }
                    data.clear();
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            }
            // `id:`, `event:`, `retry:` and `:` comment lines carry nothing a probe needs.
        }
        body.out.drain(..scanned);
        scanned = 0;
        if body.done() {
            return Err(HttpError::Malformed(format!(
                "the event stream ended without the response to request {id}"
            )));
        }
        body.step(reader).await?;
    }
}

/// The outcome of a complete (non event-stream) body.
pub(super) fn classify<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
    id: Option<u64>,
) -> Result<Outcome<T>, HttpError> {
    let success = (200..300).contains(&status);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(if success {
            Outcome::Accepted
        } else {
            Outcome::Status(String::new())
        });
    }
    if let Some(id) = id {
        match match_message(body, id) {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) | Err(_) if !success => {}
            Ok(None) => {
                return Err(HttpError::Malformed(format!(
                    "the body is not the response to request {id}"
                )));
            }
            Err(error) => return Err(error),
        }
    } else if success {
        // A notification answered with a body (some servers send `{}` or `null`): fine.
        return Ok(Outcome::Accepted);
    }
    Ok(Outcome::Status(snippet(body)))
}

/// A JSON-RPC message as far as a client needs it.
#[derive(Deserialize)]
struct Message<T> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    result: Option<T>,
    error: Option<RpcError>,
}

/// `Some` when `json` is the response (or error) for request `id`; `None` for any other
/// message (a notification, a request from the server, another id).
fn match_message<T: DeserializeOwned>(
    json: &[u8],
    id: u64,
) -> Result<Option<Outcome<T>>, HttpError> {
    let is_ours =
        |value: &Option<serde_json::Value>| value.as_ref().and_then(|v| v.as_u64()) == Some(id);
    match serde_json::from_slice::<Message<T>>(json) {
        Ok(message) if is_ours(&message.id) => match (message.result, message.error) {
            (_, Some(error)) => Ok(Some(Outcome::Error(error))),
            (Some(result), None) => Ok(Some(Outcome::Result(result))),
            (None, None) => Err(HttpError::Malformed(format!(
                "the response to request {id} has neither result nor error"
            ))),
        },
        Ok(_) => Ok(None),
        Err(error) => {
            // Is it ours with a result of an unexpected shape, or someone else's message?
            match serde_json::from_slice::<Message<IgnoredAny>>(json) {
                Ok(message) if !is_ours(&message.id) => Ok(None),
                Ok(_) => Err(HttpError::Malformed(format!(
                    "unexpected result for request {id}: {error}"
                ))),
                Err(_) => Err(HttpError::Malformed(format!(
                    "invalid JSON-RPC message: {error}"
                ))),
            }
        }
    }
}

/// The first bytes of `body` as one clean line.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.truncate(line.trim_end().len());
    if body.len() > SNIPPET {
        line.push_str("...");
    }
    line
}
