//! The answer side of an inspected request: `tools/list` answers filtered to the tools the
//! caller may call, and the outcome of each `tools/call` (JSON-RPC error code or `isError`)
//! read for its audit record, which is queued when the tap is dropped: the response body
//! holding it keeps it past the answer's end until its last byte has been written to the
//! client (or the client left), so the client's answer never waits for the record.
//!
//! JSON answers and SSE streams alike. Observing passes every chunk on at once and reads a
//! copy; filtering holds a JSON answer to its end, and an SSE event until it is complete (the
//! events of other messages go on unchanged). A filtered answer loses its `Content-Length`
//! and, for 2026-07-28, is marked `cacheScope: "private"`. An answer too large to filter
//! (over [`MAX_HELD`]) is replaced by a JSON-RPC error: a list is never passed on unfiltered.

mod calls;
pub(crate) mod outcome;
pub(crate) mod sse;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use crate::audit::AuditLog;
use crate::authz;
use crate::config::ServerConfig;

#[cfg(test)]
use calls::Pending;
pub use calls::{CallAudit, Calls};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
    /// Anything else (an empty 202, a plain-text error): passed on, only its status recorded.
    Other,
}

pub struct Tap {
    filter: Option<ListFilter>,
    calls: Calls,
    audit: Option<Arc<AuditLog>>,
    started: Instant,
    status: u16,
    format: Format,
    buffer: BytesMut,
    /// A chunk of an answer only observed, passed on but not read yet: a JSON answer's first
    /// chunk, kept whole (no copy) until a second one comes, or an SSE answer's latest chunk.
    /// The last is read when the tap is dropped, after the client has it.
    unread: Option<Bytes>,
    /// The answer ended (rather than being cut short).
    ended: bool,
    /// The copy for observing outgrew [`MAX_OBSERVED`].
    overflow: bool,
    recorded: bool,
}

impl Tap {
    pub fn new(
        filter: Option<ListFilter>,
        calls: impl Into<Calls>,
        audit: Option<Arc<AuditLog>>,
        started: Instant,
    ) -> Self {
        Tap {
            filter,
            calls: calls.into(),
            audit,
            started,
            status: 0,
            format: Format::Other,
            buffer: BytesMut::new(),
            unread: None,
            ended: false,
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
            .map_or(&b""[..], |v| v.as_bytes());
        let essence = match memchr::memchr(b';', content_type) {
            Some(end) => &content_type[..end],
            None => content_type,
        }
        .trim_ascii();
        let encoded = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        self.format = if encoded {
            Format::Other
        } else if essence.eq_ignore_ascii_case(b"application/json") {
            Format::Json
        } else if essence.eq_ignore_ascii_case(b"text/event-stream") {
            Format::Sse
        } else {
            Format::Other
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
                    if self.unread.is_none() && self.buffer.is_empty() {
                        self.unread = Some(chunk.clone());
                    } else {
                        let first = self.unread.take().unwrap_or_default();
                        if self.buffer.len() + first.len() + chunk.len() > MAX_OBSERVED {
                            self.overflow = true;
                            self.buffer = BytesMut::new();
                        } else {
                            self.buffer.extend_from_slice(&first);
                            self.buffer.extend_from_slice(&chunk);
                        }
                    }
                }
                chunk
            }
            (Format::Sse, false) => {
                if self.calls.iter().all(|call| call.answered) {
                    // Nothing left to learn from this stream.
                    return chunk;
                }
                // Each chunk is read when the next comes; the last once the tap is dropped.
                if let Some(previous) = self.unread.replace(chunk.clone()) {
                    self.read_sse(&previous);
                }
                chunk
            }
            (Format::Sse, true) => {
                self.buffer.extend_from_slice(&chunk);
                let mut out = Vec::new();
                while let Some(event) = sse::next_event(&mut self.buffer) {
                    match self.on_sse_event(&event) {
                        Some(new) => out.extend_from_slice(&new),
                        None => out.extend_from_slice(&event),
                    }
                }
                if self.buffer.len() > MAX_HELD {
                    self.buffer = BytesMut::new();
                    out.extend_from_slice(&sse::event(&too_large()));
                    self.filter = None;
                }
                Bytes::from(out)
            }
        }
    }

    /// The answer ended; returns what is left to pass on. The audit records are queued when
    /// the tap is dropped (after the caller has written what this returns).
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
            (Format::Sse, true) => {
                // A last event without its blank line.
                let rest = std::mem::take(&mut self.buffer);
                if rest.is_empty() {
                    Bytes::new()
                } else {
                    match self.on_sse_event(&rest) {
                        Some(new) => Bytes::from(new),
                        None => rest.freeze(),
                    }
                }
            }
            // An answer only observed is read when the tap is dropped (`read_rest`).
            (Format::Json | Format::Sse, false) | (Format::Other, _) => Bytes::new(),
        };
        self.ended = true;
        out
    }

    /// Reads what an observed answer passed on but the tap has not read yet (its last chunk;
    /// and, when the answer ended, a JSON body, or a last SSE event without its blank line).
    /// Once the client has the answer: from `record`. Reading twice reads nothing new.
    fn read_rest(&mut self) {
        match (self.format, self.holding()) {
            (Format::Json, false) if self.ended => {
                let body = std::mem::take(&mut self.buffer);
                if let Some(first) = self.unread.take() {
                    self.observe(&first);
                } else if !self.overflow && !body.is_empty() {
                    self.observe(&body);
                }
            }
            (Format::Sse, false) => {
                if let Some(last) = self.unread.take() {
                    self.read_sse(&last);
                }
                let rest = std::mem::take(&mut self.buffer);
                if self.ended && !rest.is_empty() {
                    self.observe_event(&rest);
                }
            }
            _ => {}
        }
    }

    /// One chunk of an SSE answer only observed: its complete events read for call outcomes.
    fn read_sse(&mut self, chunk: &[u8]) {
        if self.buffer.is_empty() {
            // Whole events are read in place; only a partial one is copied.
            let mut rest = chunk;
            while let Some((end, data)) = sse::split_event(rest) {
                if let Some(data) = data {
                    self.observe(&data);
                }
                rest = &rest[end..];
            }
            self.buffer.extend_from_slice(rest);
        } else {
            self.buffer.extend_from_slice(chunk);
            while let Some(event) = sse::next_event(&mut self.buffer) {
                self.observe_event(&event);
            }
        }
        if self.buffer.len() > MAX_HELD {
            self.buffer = BytesMut::new();
        }
    }

    /// One complete SSE event of an answer only observed: its data read for call outcomes.
    fn observe_event(&mut self, event: &[u8]) {
        if let Some(data) = sse::data_ref(event) {
            self.observe(&data);
        }
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
        let answered = id
            .filter(|id| !id.is_null())
            .and_then(|id| serde_json::to_vec(id).ok());
        if let Some(answered) = answered
            && self.calls.iter().any(|call| call.is_answered_by(&answered))
        {
            // The outcome is read from the message's text, as for an answer only observed.
            if let Ok(text) = serde_json::to_vec(&*message) {
                self.observe(&text);
            }
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

    /// Reads call outcomes from `text` (a message or a batch) in place.
    fn observe(&mut self, text: &[u8]) {
        if self.calls.is_empty() {
            return;
        }
        let calls = &mut self.calls;
        outcome::read(text, |outcome| {
            if let Some(id) = outcome.id
                && let Some(call) = calls.iter_mut().find(|call| call.is_answered_by(id))
            {
                call.settle(outcome.error_code, outcome.is_error);
            }
        });
    }

    /// Writes the audit records (once), when the tap is dropped: their duration runs to then,
    /// after the answer's last byte was written (or the client left).
    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        self.read_rest();
        let Some(audit) = &self.audit else {
            return;
        };
        let duration = self.started.elapsed();
        for call in std::mem::take(&mut self.calls) {
            call.write(audit, self.status, duration);
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
mod allocations;
#[cfg(test)]
mod record_after_end;
#[cfg(test)]
mod tests;
