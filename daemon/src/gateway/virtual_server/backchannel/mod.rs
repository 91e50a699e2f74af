//! Requests a member sends back on the SSE stream of a forwarded `tools/call` (sampling,
//! elicitation, roots): relayed on the caller's stream under an id of mcpd's, and the
//! caller's answer (a POST of a JSON-RPC response to the virtual endpoint) forwarded to the
//! member under the member's own id, in the member session of the call.
//!
//! Relayed requests are held in a bounded map of this mcpd, keyed by mcpd's id and bound to
//! the caller's virtual session: only that session may answer. A request the caller cannot
//! take (no session, the 2026-07-28 generation, or a capability its `initialize` did not
//! declare) is answered to the member at once with a JSON-RPC error; so is one still
//! unanswered when the call's stream ends, so a member never waits on a caller that left.
//! A 2026-07-28 member asks with an `input_required` result instead: it reaches a 2026-07-28
//! caller as is (its retry is forwarded like any call), and a session caller, which cannot
//! take it, gets a JSON-RPC error saying so.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Either, Limited};
use serde_json::Value;
use serde_json::value::RawValue;

use super::slots::Slot;
use super::{Context, error_message};
use crate::gateway::response::{Body, UpstreamBody};
use crate::stdio::Capabilities;

mod member;
mod stream;

pub(super) use member::MemberRoute;
pub(super) use member::{answer, route};
#[cfg(test)]
pub(super) use stream::Relaying;

/// Relayed requests waiting for their callers, per mcpd; more are refused to members.
const MAX_RELAYED: usize = 10_000;
/// JSON-RPC "internal error": the caller cannot be asked, or did not answer.
const NOT_RELAYED: i64 = -32603;
/// The methods relayed, with the client capability each needs.
const RELAYED: [(&str, &str); 3] = [
    ("sampling/createMessage", "sampling"),
    ("elicitation/create", "elicitation"),
    ("roots/list", "roots"),
];

/// The capabilities mcpd declares in the member session it opens for a caller: sampling and
/// elicitation always (a member's request the caller cannot take is answered for it with an
/// error naming the missing capability, clearer than a tool the member leaves out), `roots`
/// only when the caller declared it: a member may ask for the roots as soon as the session
/// opens, outside any call, and one that waits for the answer (the official
/// `server-everything` does) would wait in vain.
pub fn member_capabilities(roots: bool) -> &'static str {
    if roots {
        r#"{"sampling":{},"elicitation":{},"roots":{}}"#
    } else {
        r#"{"sampling":{},"elicitation":{}}"#
    }
}

/// The requests of members relayed to callers, by mcpd's id.
#[derive(Debug, Default)]
pub struct Relays {
    waiting: Mutex<HashMap<u64, Relayed>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Relayed {
    /// The virtual session that may answer.
    session: u64,
    member: Arc<MemberRoute>,
    /// The member's own id, as it sent it.
    member_id: Value,
}

impl Relays {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Relayed>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The caller of the request being served.
pub(super) fn caller_side(context: &Context<'_>) -> CallerSide {
    CallerSide {
        session: (context.has_session && !context.stateless).then_some(context.session),
        capabilities: context.capabilities,
        stateless: context.stateless,
    }
}

/// Who the call is for, as far as the member's requests are concerned.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallerSide {
    /// The caller's virtual session; `None` when it has none (it cannot be asked).
    pub session: Option<u64>,
    pub capabilities: Capabilities,
    /// The caller speaks 2026-07-28 (takes `input_required` results).
    pub stateless: bool,
}

/// The member's answer to a forwarded call, with its requests relayed to the caller: an SSE
/// answer is read event by event ([`stream::Relaying`]: events that can be neither a request
/// nor an answer the caller cannot take pass as they came); a JSON answer passes as is unless
/// it is an `input_required` result the caller cannot take. An SSE answer's body takes
/// `slot` along (the caller's slot is held until it ends).
pub(super) async fn relay(
    context: &Context<'_>,
    id: Option<&RawValue>,
    route: impl FnOnce() -> MemberRoute,
    member_is_stateless: bool,
    caller: CallerSide,
    answer: Response<Body>,
    slot: &mut Option<Slot>,
) -> Response<Body> {
    if !answer.status().is_success() {
        return answer;
    }
    let (mut parts, body) = answer.into_parts();
    let Either::Right(upstream) = body else {
        return Response::from_parts(parts, body);
    };
    let is_sse = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if !is_sse {
        if caller.stateless || !member_is_stateless {
            return Response::from_parts(parts, Either::Right(upstream));
        }
        let route = route();
        // A 2026-07-28 member answering a session caller: look at the answer whole.
        let limit = usize::try_from(route.max_body).unwrap_or(usize::MAX);
        let checked = match Limited::new(upstream, limit).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                not_for_session_caller(&bytes, &route.member.name).unwrap_or(bytes)
            }
            Err(err) => {
                let error = error_message(
                    id,
                    super::MEMBER_UNAVAILABLE,
                    &format!(
                        "member server \"{}\" broke off its answer: {err}",
                        route.member.name
                    ),
                );
                Bytes::from(error.to_string())
            }
        };
        parts.headers.remove(CONTENT_LENGTH);
        // Still an upstream answer (a success, audited as one), only read whole.
        let whole = http_body_util::Full::new(checked).map_err(|never| match never {});
        return Response::from_parts(parts, Either::Right(UpstreamBody::local(Box::pin(whole))));
    }
    let body = stream::Relaying::new(
        upstream,
        context.shared.virtuals.relays.clone(),
        Arc::new(route()),
        caller,
        slot.take(),
    );
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Either::Right(UpstreamBody::local(Box::pin(body))))
}

/// Whether the SSE event (as it came, `data:` lines and all) can need anything done: a
/// request of the member (it has a `method` key), or, when `results` are watched, an
/// `input_required` result. A key or string written with escapes could hide either, so
/// `\u` counts too. A JSON token is never split across `data:` lines, so the raw event
/// shows what the joined data would.
fn may_need_relaying(event: &[u8], results: bool) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static METHOD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"method\""));
    static ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u"));
    static INPUT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"input_required"));
    METHOD.find(event).is_some()
        || ESCAPE.find(event).is_some()
        || (results && INPUT.find(event).is_some())
}

/// The error a session caller gets in place of an `input_required` result, if `message` is
/// one.
fn not_for_session_caller(message: &[u8], member: &str) -> Option<Bytes> {
    let might = |needle: &[u8]| memchr::memmem::find(message, needle).is_some();
    if !might(b"input_required") && !might(b"\\u") {
        return None;
    }
    let value: Value = serde_json::from_slice(message).ok()?;
    if value["result"]["resultType"] != "input_required" {
        return None;
    }
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": value["id"],
        "error": {
            "code": NOT_RELAYED,
            "message": format!("member server \"{member}\" asked for input with a 2026-07-28 input_required result, which a client of a session-based protocol version cannot take; call it with protocol version 2026-07-28"),
        },
    });
    Some(Bytes::from(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_that_may_be_requests_or_input_required_results_are_read() {
        let answer = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"say \\\"method\\\"\"}]}}\n\n";
        assert!(!may_need_relaying(answer, true));
        for event in [
            &b"data: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"roots/list\"}\n\n"[..],
            b"data: {\"jsonrpc\":\"2.0\",\"id\":5,\"m\\u0065thod\":\"roots/list\"}\n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":5,\ndata: \"method\":\"ping\"}\n\n",
        ] {
            assert!(may_need_relaying(event, false), "{event:?}");
        }
        let asked = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"input_required\"}}\n\n";
        assert!(may_need_relaying(asked, true));
        assert!(!may_need_relaying(asked, false));
    }

    #[test]
    fn only_an_input_required_result_becomes_an_error_for_a_session_caller() {
        let asked = br#"{"jsonrpc":"2.0","id":"c1","result":{"resultType":"input_required","inputRequests":{}}}"#;
        let error: Value =
            serde_json::from_slice(&not_for_session_caller(asked, "m").expect("an error")).unwrap();
        assert_eq!(error["id"], "c1");
        assert_eq!(error["error"]["code"], NOT_RELAYED);
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("\"m\"")
        );
        for other in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[]}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
            b"not json",
        ] {
            assert!(not_for_session_caller(other, "m").is_none());
        }
    }
}
