//! The task that reads one member session's GET stream for one scope: the member's
//! `notifications/resources/updated` for a URI the scope subscribed to there become pending
//! updates of the scope; anything else is dropped. A member's `list_changed` asks for its
//! lists again (`refresh`). The stream is opened again after a break while the member runs
//! the same process; when the member's session is gone (404, or another process), the
//! scope's subscriptions to it go with it.

use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use http_body_util::{BodyExt, Either, Limited};
use serde_json::Value;
use tokio::sync::watch;

use super::super::backchannel::MemberRoute;
use super::super::call::{MAX_REFUSAL, member_request};
use super::super::slots::Slot;
use super::{Scope, listen_request};
use crate::directory::ServerState;
use crate::gateway::tap::sse;

/// Most bytes of one event of a member's stream; a longer one ends the stream.
const MAX_EVENT: usize = 1 << 20;
/// Pause before opening a broken stream again.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// One member's stream for one scope.
#[derive(Debug)]
pub(super) struct Pump {
    pub(super) task: tokio::task::JoinHandle<()>,
    pub(super) route: Arc<MemberRoute>,
    /// `Some(Ok)` once the stream is open, `Some(Err)` when it could not be.
    ready: watch::Receiver<Option<Result<(), String>>>,
    /// One of the caller's `max_calls_per_caller` slots, held while the stream is: a caller
    /// cannot tie up more of a member's connections by subscribing than by calling.
    _slot: Slot,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes sure the scope reads the member's stream (a new one takes a slot of the caller's
/// from `take_slot`), and waits (at most `timeout`) until it is open.
pub(super) async fn ensure(
    scope: &Arc<Scope>,
    route: Arc<MemberRoute>,
    timeout: Duration,
    take_slot: impl FnOnce() -> Result<Slot, String>,
) -> Result<(), String> {
    let mut ready = {
        let mut state = scope.state();
        let reusable = state
            .pumps
            .get(&route.member.name)
            .is_some_and(|pump| pump.route.link == route.link && !pump.task.is_finished());
        if !reusable {
            // The old stream (another member process's) goes first, and its slot with it.
            state.pumps.remove(&route.member.name);
            let slot = take_slot()?;
            let (tell, ready) = watch::channel(None);
            let task = tokio::spawn(run(Arc::downgrade(scope), route.clone(), tell));
            state.pumps.insert(
                route.member.name.clone(),
                Pump {
                    task,
                    route: route.clone(),
                    ready,
                    _slot: slot,
                },
            );
        }
        state.pumps[&route.member.name].ready.clone()
    };
    let opened = tokio::time::timeout(timeout, ready.wait_for(Option::is_some)).await;
    match opened {
        Ok(Ok(outcome)) => outcome.clone().unwrap_or(Ok(())),
        Ok(Err(_)) => Err("its stream ended".into()),
        Err(_) => Err(format!("its stream did not open within {timeout:?}")),
    }
}

/// One request to the member in the route's session: its JSON-RPC answer (read from JSON,
/// or from the first answer event of an SSE stream).
pub(in super::super) async fn request(
    route: &MemberRoute,
    message: &Value,
) -> Result<Value, String> {
    let body = bytes::Bytes::from(message.to_string());
    let mut request = member_request(&route.headers, &route.link, "", "", body);
    request.headers_mut().remove("mcp-name");
    request.headers_mut().remove("mcp-method");
    let answer = route.forward(request).await;
    let status = answer.status();
    let bytes = match answer.into_body() {
        Either::Left(full) => full.collect().await.map(|c| c.to_bytes()).ok(),
        Either::Right(upstream) => Limited::new(upstream, MAX_REFUSAL)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .ok(),
    }
    .unwrap_or_default();
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        return Ok(value);
    }
    let mut buffer = BytesMut::from(&bytes[..]);
    while let Some(event) = sse::next_event(&mut buffer) {
        if let Some(value) =
            sse::data(&event).and_then(|d| serde_json::from_slice::<Value>(&d).ok())
            && value.get("id").is_some()
            && value.get("method").is_none()
        {
            return Ok(value);
        }
    }
    Err(format!(
        "answered {} without a JSON-RPC answer",
        status.as_u16()
    ))
}

async fn run(
    scope: Weak<Scope>,
    route: Arc<MemberRoute>,
    tell: watch::Sender<Option<Result<(), String>>>,
) {
    let started_at = route.entry.status.load().started_at;
    loop {
        let answer = route.forward(listen_request(&route)).await;
        let status = answer.status();
        let is_sse = answer
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if status.is_success() && is_sse {
            tell.send_replace(Some(Ok(())));
            if let Either::Right(body) = answer.into_body() {
                read(&scope, &route, body).await;
            }
        } else {
            let why = format!("it refused its event stream ({})", status.as_u16());
            tracing::debug!(member = %route.member.name, %status, "a member refused the stream of a subscription");
            tell.send_replace(Some(Err(why)));
            if let Either::Right(body) = answer.into_body() {
                let _ = Limited::new(body, MAX_REFUSAL).collect().await;
            }
            if status == http::StatusCode::NOT_FOUND
                || status == http::StatusCode::METHOD_NOT_ALLOWED
            {
                // The member session is gone, or the member offers no stream.
                break;
            }
        }
        let member = route.entry.status.load();
        if member.state != ServerState::Running || member.started_at != started_at {
            break;
        }
        drop(member);
        let Some(live) = scope.upgrade() else {
            return;
        };
        let wanted = live.state().uris.values().any(|m| *m == route.member.name);
        drop(live);
        if !wanted {
            break;
        }
        tokio::time::sleep(REOPEN_AFTER).await;
    }
    if let Some(scope) = scope.upgrade() {
        scope.member_gone(&route.member.name);
    }
}

/// Reads the stream until it ends: updates of subscribed URIs become pending.
async fn read(
    scope: &Weak<Scope>,
    route: &MemberRoute,
    body: crate::gateway::response::UpstreamBody,
) {
    read_events(
        route,
        body,
        "a subscription's stream",
        |event| match scope.upgrade() {
            Some(scope) => ControlFlow::Continue(handle(&scope, route, event)),
            None => ControlFlow::Break(()),
        },
    )
    .await;
}

/// Reads a member session's GET stream until it ends, `on_event` says stop, or an event
/// grows over [`MAX_EVENT`]. Each event goes to `on_event`; a request it finds (its id) is
/// refused at once: outside a call nobody can answer it, so the member hears so instead of
/// waiting.
pub(in super::super) async fn read_events(
    route: &MemberRoute,
    mut body: crate::gateway::response::UpstreamBody,
    stream: &str,
    mut on_event: impl FnMut(&[u8]) -> ControlFlow<(), Option<Value>>,
) {
    let mut buffer = BytesMut::new();
    loop {
        while let Some(event) = sse::next_event(&mut buffer) {
            let ControlFlow::Continue(asked) = on_event(&event) else {
                return;
            };
            if let Some(id) = asked {
                let refusal = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": -32603,
                        "message": "mcpd does not relay a member's requests sent outside a call",
                    },
                });
                let _ = request(route, &refusal).await;
            }
        }
        if buffer.len() > MAX_EVENT {
            tracing::info!(member = %route.member.name, "a member sent an event over {MAX_EVENT} bytes on {stream}; reopening it");
            return;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// One event of the member's stream; the id of a request in it (to refuse).
fn handle(scope: &Scope, route: &MemberRoute, event: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Notification {
        method: String,
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        uri: Option<String>,
    }
    let data = sse::data(event)?;
    let notification = serde_json::from_slice::<Notification>(&data).ok()?;
    if notification.id.is_some() {
        return notification.id;
    }
    match notification.method.as_str() {
        "notifications/resources/updated" => {
            let uri = notification.params.and_then(|p| p.uri).unwrap_or_default();
            if !scope.member_updated(&route.member.name, &uri) {
                tracing::debug!(member = %route.member.name, "dropped an update of a resource not subscribed to in this scope");
            }
        }
        "notifications/resources/list_changed"
        | "notifications/prompts/list_changed"
        | "notifications/tools/list_changed" => {
            crate::gateway::virtual_server::refresh::member_lists_changed(&route.entry);
        }
        _ => {}
    }
    None
}
