//! A member's SSE answer on its way to the caller: events pass as they came, in the chunks
//! they came in, unless one may need relaying ([`super::may_need_relaying`]); that one is
//! read: a request of the member is relayed under mcpd's id or refused (the refusal sent to
//! the member before the stream goes on), and an `input_required` result a session caller
//! cannot take becomes a JSON-RPC error. The caller's slot is held until the body ends or is
//! dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use serde_json::Value;

use super::{CallerSide, MAX_RELAYED, MemberRoute, RELAYED, Relayed, Relays};
use super::{may_need_relaying, not_for_session_caller};
use crate::gateway::conn::BoxError;
use crate::gateway::response::UpstreamBody;
use crate::gateway::tap::sse;
use crate::gateway::virtual_server::slots::Slot;
use crate::probe_client::Link;

type Sending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A member's SSE answer being relayed.
pub(in super::super) struct Relaying {
    upstream: UpstreamBody,
    /// Bytes of events not passed on yet (a partial event, or events after one being acted on).
    buffer: BytesMut,
    guard: Guard,
    caller: CallerSide,
    /// Answers of `input_required` results are watched (a session caller, a 2026-07-28 member).
    results: bool,
    ended: bool,
    /// mcpd's answer to a request of the member, being sent before the stream goes on.
    sending: Option<Sending>,
    _slot: Option<Slot>,
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
        if self.ids.is_empty() {
            return;
        }
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

/// What to do with one event.
enum Step {
    Pass(Bytes),
    /// Dropped; this is sent to the member first.
    Send(Sending),
}

impl Relaying {
    pub(in super::super) fn new(
        upstream: UpstreamBody,
        relays: Arc<Relays>,
        route: Arc<MemberRoute>,
        caller: CallerSide,
        slot: Option<Slot>,
    ) -> Self {
        let results = !caller.stateless && route.link == Link::Stateless;
        Relaying {
            upstream,
            buffer: BytesMut::new(),
            guard: Guard {
                relays,
                route,
                ids: Vec::new(),
            },
            caller,
            results,
            ended: false,
            sending: None,
            _slot: slot,
        }
    }

    /// A chunk read while nothing is held: the complete events that need nothing, as they
    /// came (the whole chunk in the common case); the rest is held to be read.
    fn pass_quiet(&mut self, chunk: Bytes) -> Option<Bytes> {
        if chunk.is_empty() {
            return None;
        }
        let mut quiet = 0;
        while let Some(end) = sse::event_end(&chunk[quiet..]) {
            if may_need_relaying(&chunk[quiet..quiet + end], self.results) {
                break;
            }
            quiet += end;
        }
        if quiet == chunk.len() {
            return Some(chunk);
        }
        self.buffer.extend_from_slice(&chunk[quiet..]);
        (quiet > 0).then(|| chunk.slice(..quiet))
    }

    /// One event of the member: passed on, rewritten, or (a request refused) dropped.
    fn event(&mut self, event: Bytes) -> Step {
        if !may_need_relaying(&event, self.results) {
            return Step::Pass(event);
        }
        let Some(data) = sse::data(&event) else {
            return Step::Pass(event);
        };
        let Ok(envelope) = crate::envelope::parse(&data) else {
            return Step::Pass(event);
        };
        let Some(message) = envelope.messages.first().filter(|_| !envelope.batch) else {
            return Step::Pass(event);
        };
        let route = &self.guard.route;
        if message.id.is_none()
            && message
                .method
                .as_deref()
                .is_some_and(|m| m.starts_with("notifications/") && m.ends_with("/list_changed"))
        {
            crate::gateway::virtual_server::refresh::member_lists_changed(&route.entry);
        }
        let (Some(method), Some(_)) = (message.method.as_deref(), message.id) else {
            if message.method.is_none()
                && self.results
                && let Some(error) = not_for_session_caller(&data, &route.member.name)
            {
                return Step::Pass(Bytes::from(sse::with_data(&event, &error)));
            }
            return Step::Pass(event);
        };
        let method = method.to_owned();
        let Ok(mut request) = serde_json::from_slice::<Value>(&data) else {
            return Step::Pass(event);
        };
        let member_id = request["id"].take();
        match self.admit(&method) {
            Ok(session) => {
                let relays = &self.guard.relays;
                let id = relays.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                relays.lock().insert(
                    id,
                    Relayed {
                        session,
                        member: route.clone(),
                        member_id,
                    },
                );
                self.guard.ids.push(id);
                request["id"] = Value::from(id);
                Step::Pass(Bytes::from(sse::with_data(
                    &event,
                    request.to_string().as_bytes(),
                )))
            }
            Err(why) => {
                tracing::debug!(member = %route.member.name, method, reason = %why, "refused a request of a member");
                let route = route.clone();
                Step::Send(Box::pin(async move {
                    if method == "ping" {
                        let pong =
                            serde_json::json!({"jsonrpc": "2.0", "id": member_id, "result": {}});
                        route.send(&pong).await;
                    } else {
                        route.refuse(&member_id, &why).await;
                    }
                }))
            }
        }
    }

    /// The caller's session, when the caller may be asked `method`; else why not.
    fn admit(&self, method: &str) -> Result<u64, String> {
        let member = &self.guard.route.member.name;
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

impl HttpBody for Relaying {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(sending) = &mut this.sending {
                ready!(sending.as_mut().poll(cx));
                this.sending = None;
            }
            if let Some(event) = sse::next_event(&mut this.buffer) {
                match this.event(event) {
                    Step::Pass(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Step::Send(sending) => {
                        this.sending = Some(sending);
                        continue;
                    }
                }
            }
            if this.ended {
                if this.buffer.is_empty() {
                    return Poll::Ready(None);
                }
                let rest = this.buffer.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(rest))));
            }
            match ready!(Pin::new(&mut this.upstream).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if this.buffer.is_empty() => {
                        if let Some(out) = this.pass_quiet(data) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Ok(data) => this.buffer.extend_from_slice(&data),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => this.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.buffer.is_empty() && self.sending.is_none()
    }
}
