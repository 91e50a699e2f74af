//! What the child writes: answers mapped back to their callers, progress to the caller
//! whose token it carries, other notifications to every session, and the child's own
//! requests (`ping` answered, sampling, elicitation and roots relayed by `backchannel`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::super::envelope::{self, Envelope, Kind};
use super::{Bridge, OutputSink, with_newline};

impl Bridge {
    /// One line from the child of `generation`.
    pub(super) fn on_child_line(&self, generation: u64, line: Vec<u8>, output: &OutputSink) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(message) = Envelope::parse(&line) else {
            self.counters.not_json.fetch_add(1, Ordering::Relaxed);
            output(String::from_utf8_lossy(&line).into_owned());
            return;
        };
        match message.kind() {
            Ok(Kind::Response) => self.response(&message),
            Ok(Kind::Notification) => self.notification(generation, &message),
            Ok(Kind::Request) => self.server_request(generation, &message),
            Err(_) => {}
        }
    }

    fn response(&self, message: &Envelope<'_>) {
        let upstream_id = message.id.and_then(upstream_number);
        let pending = upstream_id.and_then(|id| self.lock().pending.remove(&id));
        let Some(pending) = pending else {
            self.counters
                .unknown_responses
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let answer = envelope::render_response(
            pending.caller_id.get(),
            message.result.map(RawValue::get),
            message.error.map(RawValue::get),
        );
        let _ = pending.done.send(Bytes::from(answer));
        if let Some(upstream_id) = upstream_id {
            self.end_relayed(upstream_id, "was answered first");
        }
    }

    fn notification(&self, generation: u64, message: &Envelope<'_>) {
        let method = message.method.as_deref().unwrap_or_default();
        if method == "notifications/progress" {
            self.progress(message);
            return;
        }
        if method == "notifications/cancelled" {
            // The child gives up on a request it sent: its caller is told.
            self.child_cancelled(generation, message.params);
            return;
        }
        // Logging, list changes, resource updates: every session's stream.
        let line = envelope::render_request(None, method, message.params.map(RawValue::get));
        self.sessions.broadcast(Bytes::from(line));
    }

    fn progress(&self, message: &Envelope<'_>) {
        let Some(params) = message.params else { return };
        #[derive(serde::Deserialize)]
        struct Token<'a> {
            #[serde(rename = "progressToken", borrow)]
            token: &'a RawValue,
        }
        let Ok(Token { token }) = serde_json::from_str::<Token<'_>>(params.get()) else {
            return;
        };
        let Some(upstream_id) = upstream_number(token) else {
            return;
        };
        let state = self.lock();
        let Some(pending) = state.pending.get(&upstream_id) else {
            return;
        };
        let Some(caller_token) = &pending.token else {
            return;
        };
        let Some(params) = envelope::replace_key(params, "progressToken", caller_token.get())
        else {
            return;
        };
        let line = envelope::render_request(None, "notifications/progress", Some(&params));
        if pending.progress.try_send(Bytes::from(line)).is_err() {
            self.counters
                .progress_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request from the child: `ping` is answered here; sampling, elicitation and roots
    /// go to the caller they concern (`backchannel`); anything else is refused at once.
    fn server_request(&self, generation: u64, message: &Envelope<'_>) {
        let Some(id) = message.id else { return };
        if message.method.as_deref() == Some("ping") {
            let answer = envelope::render_response(id.get(), Some("{}"), None);
            self.write_to_child(generation, with_newline(answer));
            return;
        }
        self.relay_server_request(generation, message);
    }
}

/// One of mcpd's ids or tokens as the child sent it back: `7`, or `"7"` from a server that
/// turns ids into strings.
fn upstream_number(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse().ok()
}
