//! The answer side of an inspected request: `tools/list` answers filtered to the tools the
//! caller may call, and the outcome of each `tools/call` (JSON-RPC error code or `isError`)
//! read for its audit record, which is written when the answer ends (or the client leaves).
//!
//! JSON answers and SSE streams alike. Observing passes every chunk on at once and reads a
//! copy; filtering holds a JSON answer to its end, and an SSE event until it is complete (the
//! events of other messages go on unchanged). A filtered answer loses its `Content-Length`
//! and, for 2026-07-28, is marked `cacheScope: "private"`. An answer too large to filter
//! (over [`MAX_HELD`]) is replaced by a JSON-RPC error: a list is never passed on unfiltered.

pub(crate) mod sse;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::Value;

use mcpd_protocol::AuditRecord;

use crate::audit::AuditLog;
use crate::authz;
use crate::config::ServerConfig;

/// Most bytes held to filter one answer (a JSON body, or one SSE event).
pub const MAX_HELD: usize = 16 << 20;
/// Most bytes of a JSON answer copied to read a call's outcome; past it the outcome is
/// recorded as unknown.
const MAX_OBSERVED: usize = 1 << 20;

/// Which `tools/list` answers to filter, for whom.
pub struct ListFilter {
    pub ids: Vec<Value>,
    pub scopes: Vec<String>,
    pub config: Arc<ServerConfig>,
    /// 2026-07-28: mark filtered answers `cacheScope: "private"`.
    pub stateless: bool,
}

/// A call whose outcome goes into `record`.
pub struct CallAudit {
    pub id: Option<Value>,
    pub record: AuditRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
    /// Anything else (an empty 202, a plain-text error): passed on, only its status recorded.
    Other,
}

pub struct Tap {
    filter: Option<ListFilter>,
    calls: Vec<CallAudit>,
    audit: Option<Arc<AuditLog>>,
    started: Instant,
    status: u16,
    format: Format,
    buffer: BytesMut,
    /// The copy for observing outgrew [`MAX_OBSERVED`].
    overflow: bool,
    recorded: bool,
}

impl Tap {
    pub fn new(
        filter: Option<ListFilter>,
        calls: Vec<CallAudit>,
        audit: Option<Arc<AuditLog>>,
        started: Instant,
    ) -> Self {
        Tap {
            filter,
            calls,
            audit,
            started,
            status: 0,
            format: Format::Other,
            buffer: BytesMut::new(),
            overflow: false,
            recorded: false,
        }
    }

    /// True when answers will be filtered (the request should not ask for compression).
    pub fn filters(&self) -> bool {
        self.filter.is_some()
    }

    /// The answer's status, for an answer the gateway wrote itself (the tap then sees no body).
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Reads the answer's head; a filtered answer loses its `Content-Length`.
    pub fn begin(&mut self, parts: &mut http::response::Parts) {
        self.status = parts.status.as_u16();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let encoded = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        self.format = match essence.as_str() {
            _ if encoded => Format::Other,
            "application/json" => Format::Json,
            "text/event-stream" => Format::Sse,
            _ => Format::Other,
        };
        if self.filter.is_some() && self.format != Format::Other {
            parts.headers.remove(CONTENT_LENGTH);
        }
    }

    fn holding(&self) -> bool {
        self.filter.is_some() && self.format != Format::Other
    }

    /// A chunk of the answer; returns what to pass on now.
    pub fn data(&mut self, chunk: Bytes) -> Bytes {
        match (self.format, self.holding()) {
            (Format::Other, _) => chunk,
            (Format::Json, true) => {
                if self.buffer.len() + chunk.len() > MAX_HELD {
                    self.overflow = true;
                } else {
                    self.buffer.extend_from_slice(&chunk);
                }
                Bytes::new()
            }
            (Format::Json, false) => {
                if !self.overflow && !self.calls.is_empty() {
                    if self.buffer.len() + chunk.len() > MAX_OBSERVED {
                        self.overflow = true;
                        self.buffer = BytesMut::new();
                    } else {
                        self.buffer.extend_from_slice(&chunk);
                    }
                }
                chunk
            }
            (Format::Sse, holding) => {
                if !holding && self.calls.iter().all(|call| call.record.status != 0) {
                    // Nothing left to learn from this stream.
                    return chunk;
                }
                self.buffer.extend_from_slice(&chunk);
                let mut out = Vec::new();
                while let Some(event) = sse::next_event(&mut self.buffer) {
                    let replaced = self.on_sse_event(&event);
                    if holding {
                        match replaced {
                            Some(new) => out.extend_from_slice(&new),
                            None => out.extend_from_slice(&event),
                        }
                    }
                }
                if self.buffer.len() > MAX_HELD {
                    self.buffer = BytesMut::new();
                    if holding {
                        out.extend_from_slice(&sse::event(&too_large()));
                        self.filter = None;
                    }
                }
                if holding { Bytes::from(out) } else { chunk }
            }
        }
    }

    /// The answer ended; returns what is left to pass on.
    pub fn end(&mut self) -> Bytes {
        let out = match (self.format, self.holding()) {
            (Format::Json, true) => {
                let body = std::mem::take(&mut self.buffer);
                if self.overflow {
                    Bytes::from(too_large())
                } else {
                    match self.on_json(&body) {
                        Some(new) => Bytes::from(new),
                        None => body.freeze(),
                    }
                }
            }
            (Format::Json, false) => {
                let body = std::mem::take(&mut self.buffer);
                if !self.overflow && !body.is_empty() {
                    self.on_json(&body);
                }
                Bytes::new()
            }
            (Format::Sse, holding) => {
                // A last event without its blank line.
                let rest = std::mem::take(&mut self.buffer);
                if rest.is_empty() {
                    Bytes::new()
                } else {
                    let replaced = self.on_sse_event(&rest);
                    match (holding, replaced) {
                        (true, Some(new)) => Bytes::from(new),
                        (true, None) => rest.freeze(),
                        (false, _) => Bytes::new(),
                    }
                }
            }
            (Format::Other, _) => Bytes::new(),
        };
        self.record();
        out
    }

    /// One complete SSE event: its data read as a message; `Some` with the event rewritten
    /// when its message was filtered.
    fn on_sse_event(&mut self, event: &[u8]) -> Option<Vec<u8>> {
        let data = sse::data(event)?;
        let new = self.on_json(&data)?;
        Some(sse::with_data(event, &new))
    }

    /// One JSON text (a message or a batch of them); `Some` with the new text when a list
    /// answer in it was filtered.
    fn on_json(&mut self, text: &[u8]) -> Option<Vec<u8>> {
        if self.filter.is_none() {
            self.observe(text);
            return None;
        }
        let mut value: Value = serde_json::from_slice(text).ok()?;
        let mut changed = false;
        match &mut value {
            Value::Array(messages) => {
                for message in messages {
                    changed |= self.on_message(message);
                }
            }
            message => changed = self.on_message(message),
        }
        changed.then(|| serde_json::to_vec(&value).unwrap_or_default())
    }

    /// Records a call's outcome, or filters a list answer; true when it changed `message`.
    fn on_message(&mut self, message: &mut Value) -> bool {
        let id = message.get("id");
        if let Some(call) = self
            .calls
            .iter_mut()
            .find(|call| call.id.is_some() && call.id.as_ref() == id)
        {
            let outcome = Outcome::deserialize(&*message).ok();
            settle(call, outcome.as_ref());
            return false;
        }
        let Some(filter) = &self.filter else {
            return false;
        };
        if !id.is_some_and(|id| filter.ids.contains(id)) {
            return false;
        }
        let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
            return false;
        };
        if let Some(Value::Array(tools)) = result.get_mut("tools") {
            tools.retain(|tool| {
                tool.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| {
                        authz::decide_call(&filter.scopes, &filter.config.oauth, name).is_allowed()
                    })
            });
        } else {
            return false;
        }
        if filter.stateless || result.contains_key("cacheScope") {
            result.insert("cacheScope".into(), Value::from("private"));
        }
        true
    }

    /// Reads call outcomes without building the whole value.
    fn observe(&mut self, text: &[u8]) {
        if self.calls.is_empty() {
            return;
        }
        let outcomes: Vec<Outcome> = match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(text).unwrap_or_default(),
            Some(b'{') => serde_json::from_slice(text)
                .map(|o| vec![o])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for outcome in &outcomes {
            if let Some(call) = self
                .calls
                .iter_mut()
                .find(|call| call.id.is_some() && call.id == outcome.id)
            {
                settle(call, Some(outcome));
            }
        }
    }

    /// Writes the audit records (once): at the end of the answer, or when it is dropped.
    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let Some(audit) = &self.audit else {
            return;
        };
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        for call in &mut self.calls {
            call.record.status = self.status;
            call.record.duration_ms = duration_ms;
            audit.record(&call.record);
        }
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("filters", &self.filter.is_some())
            .field("calls", &self.calls.len())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.record();
    }
}

/// What an answer says of a call's outcome.
#[derive(Deserialize, Default)]
struct Outcome {
    id: Option<Value>,
    result: Option<OutcomeResult>,
    error: Option<OutcomeError>,
}

#[derive(Deserialize)]
struct OutcomeResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct OutcomeError {
    code: Option<i64>,
}

fn settle(call: &mut CallAudit, outcome: Option<&Outcome>) {
    let Some(outcome) = outcome else {
        return;
    };
    call.record.error_code = outcome.error.as_ref().and_then(|e| e.code);
    call.record.is_error = outcome.result.as_ref().map(|r| r.is_error.unwrap_or(false));
    // Marks the call as answered (the real status is set when the record is written).
    call.record.status = 1;
}

fn too_large() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32603,
            "message": "the server's answer is too large for the gateway to filter",
        },
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests;
