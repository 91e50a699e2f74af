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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Limited, StreamBody};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Context, error_message};
use crate::gateway::conn::BoxError;
use crate::gateway::response::{self, Body, UpstreamBody};
use crate::gateway::tap::sse;
use crate::probe_client::Link;
use crate::stdio::Capabilities;

mod member;

pub(super) use member::MemberRoute;
pub(super) use member::{answer, route};

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
/// answer is read event by event (requests rewritten or refused, anything else as is); a
/// JSON answer passes as is unless it is an `input_required` result the caller cannot take.
pub(super) async fn relay(
    context: &Context<'_>,
    id: Option<&RawValue>,
    route: MemberRoute,
    caller: CallerSide,
    answer: Response<Body>,
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
        if caller.stateless || route.link != Link::Stateless {
            return Response::from_parts(parts, Either::Right(upstream));
        }
        // A 2026-07-28 member answering a session caller: look at the answer whole.
        let limit = usize::try_from(route.max_body).unwrap_or(usize::MAX);
        let checked = match Limited::new(upstream, limit).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                not_for_session_caller(&bytes, &route.name).unwrap_or(bytes)
            }
            Err(err) => {
                let error = error_message(
                    id,
                    super::MEMBER_UNAVAILABLE,
                    &format!(
                        "member server \"{}\" broke off its answer: {err}",
                        route.name
                    ),
                );
                Bytes::from(error.to_string())
            }
        };
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, response::full(checked));
    }
    let relays = context.shared.virtuals.relays.clone();
    let state = Relaying {
        upstream,
        buffer: BytesMut::new(),
        guard: Guard {
            relays,
            route: Arc::new(route),
            ids: Vec::new(),
        },
        caller,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    });
    let body = StreamBody::new(stream.map(|item| item.map(Frame::data)));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Either::Right(UpstreamBody::local(Box::pin(body))))
}

/// The error a session caller gets in place of an `input_required` result, if `message` is
/// one.
fn not_for_session_caller(message: &[u8], member: &str) -> Option<Bytes> {
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

/// A member's SSE answer being relayed.
struct Relaying {
    upstream: UpstreamBody,
    buffer: BytesMut,
    guard: Guard,
    caller: CallerSide,
    ended: bool,
}

/// The relayed requests of one call's stream: those still unanswered when it ends are
/// answered to the member with an error.
struct Guard {
    relays: Arc<Relays>,
    route: Arc<MemberRoute>,
    ids: Vec<u64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let left: Vec<Value> = {
            let mut waiting = self.relays.lock();
            self.ids
                .iter()
                .filter_map(|id| waiting.remove(id))
                .map(|relayed| relayed.member_id)
                .collect()
        };
        if left.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to answer from (mcpd is stopping): the member's session goes too.
            return;
        };
        let route = self.route.clone();
        runtime.spawn(async move {
            for id in left {
                route
                    .refuse(&id, "the client did not answer: its call ended first")
                    .await;
            }
        });
    }
}

impl Relaying {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            if let Some(event) = sse::next_event(&mut self.buffer) {
                if let Some(out) = self.event(event).await {
                    return Some(Ok(out));
                }
                continue;
            }
            if self.ended {
                if self.buffer.is_empty() {
                    return None;
                }
                let rest = self.buffer.split().freeze();
                return Some(Ok(rest));
            }
            match self.upstream.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => return Some(Err(err)),
                None => self.ended = true,
            }
        }
    }

    /// One event of the member: passed on, rewritten, or (a request refused) dropped.
    async fn event(&mut self, event: Bytes) -> Option<Bytes> {
        let Some(data) = sse::data(&event) else {
            return Some(event);
        };
        let Ok(envelope) = crate::envelope::parse(&data) else {
            return Some(event);
        };
        let Some(message) = envelope.messages.first().filter(|_| !envelope.batch) else {
            return Some(event);
        };
        if message.id.is_none()
            && message
                .method
                .as_deref()
                .is_some_and(|m| m.starts_with("notifications/") && m.ends_with("/list_changed"))
        {
            super::refresh::member_lists_changed(&self.guard.route.entry);
        }
        let (Some(method), Some(_)) = (message.method.as_deref(), message.id) else {
            if message.method.is_none()
                && !self.caller.stateless
                && self.guard.route.link == Link::Stateless
                && let Some(error) = not_for_session_caller(&data, &self.guard.route.name)
            {
                return Some(Bytes::from(sse::with_data(&event, &error)));
            }
            return Some(event);
        };
        let method = method.to_owned();
        let mut request: Value = serde_json::from_slice(&data).ok()?;
        let member_id = request["id"].take();
        match self.admit(&method) {
            Ok(session) => {
                let id = self.guard.relays.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                self.guard.relays.lock().insert(
                    id,
                    Relayed {
                        session,
                        member: self.guard.route.clone(),
                        member_id,
                    },
                );
                self.guard.ids.push(id);
                request["id"] = Value::from(id);
                Some(Bytes::from(sse::with_data(
                    &event,
                    request.to_string().as_bytes(),
                )))
            }
            Err(why) => {
                let route = &self.guard.route;
                tracing::debug!(member = %route.name, method, reason = %why, "refused a request of a member");
                if method == "ping" {
                    let pong = serde_json::json!({"jsonrpc": "2.0", "id": member_id, "result": {}});
                    route.send(&pong).await;
                } else {
                    route.refuse(&member_id, &why).await;
                }
                None
            }
        }
    }

    /// The caller's session, when the caller may be asked `method`; else why not.
    fn admit(&self, method: &str) -> Result<u64, String> {
        let member = &self.guard.route.name;
        let Some((_, capability)) = RELAYED.iter().find(|(relayed, _)| *relayed == method) else {
            return Err(format!(
                "mcpd does not relay {method} from member server \"{member}\" to its clients"
            ));
        };
        let Some(session) = self.caller.session else {
            return Err(format!(
                "mcpd cannot relay {method} from member server \"{member}\": the client has no session to answer in"
            ));
        };
        let declared = match *capability {
            "sampling" => self.caller.capabilities.sampling,
            "elicitation" => self.caller.capabilities.elicitation,
            _ => self.caller.capabilities.roots,
        };
        if !declared {
            return Err(format!(
                "the client whose call caused {method} did not declare the {capability} capability"
            ));
        }
        if self.guard.relays.lock().len() >= MAX_RELAYED {
            return Err(format!(
                "mcpd has {MAX_RELAYED} requests of members waiting for clients"
            ));
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
