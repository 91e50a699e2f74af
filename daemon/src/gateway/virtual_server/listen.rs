//! The listening streams: the GET stream of a 2025-11-25 session, and a 2026-07-28
//! `subscriptions/listen` answer (acknowledged first, each notification tagged with the
//! subscription's id). They get `notifications/tools/list_changed`,
//! `notifications/prompts/list_changed` and `notifications/resources/list_changed` each
//! time the caller's view of that list changes (a member started, stopped, or its lists
//! changed; the configuration reloaded), woken by the directory's change signal, so within a
//! moment of the change; and `notifications/resources/updated` for the resources the caller
//! subscribed to (`subscriptions`). A comment line keeps an idle stream alive.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http_body::Frame;
use http_body_util::{Either, StreamBody};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::subscriptions::{Scope, Subscriptions, update_event};
use super::{Context, access, visible};
use crate::directory::Directory;
use crate::gateway::auth::Claims;
use crate::gateway::conn::BoxError;
use crate::gateway::response::{Body, UpstreamBody};

/// Which lists a listener is told about.
#[derive(Debug, Clone, Copy, Default)]
struct Wants {
    tools: bool,
    prompts: bool,
    resources: bool,
}

/// Hashes of what the caller sees of each list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct View {
    tools: u64,
    prompts: u64,
    resources: u64,
}

fn view(directory: &Directory, name: &str, claims: Option<&Claims>) -> View {
    let mut out = View::default();
    let Some(config) = directory.get_virtual(name) else {
        return out;
    };
    let catalog = crate::virtuals::catalog_of(directory, &config);
    let mut hash = DefaultHasher::new();
    for (exposed, tool) in visible(directory, &config, &catalog, claims) {
        exposed.hash(&mut hash);
        tool.info.description.hash(&mut hash);
        tool.info.input_schema.get().hash(&mut hash);
        tool.info
            .extra
            .as_deref()
            .map(RawValue::get)
            .hash(&mut hash);
    }
    out.tools = hash.finish();
    let all = directory.all();
    let admitted = |member: &str| {
        all.get(member)
            .is_some_and(|entry| access::admitted(claims, &entry.config.load().oauth))
    };
    let mut hash = DefaultHasher::new();
    if catalog.prompts_declared {
        for (exposed, offered) in &catalog.prompts {
            if admitted(&offered.member) {
                exposed.hash(&mut hash);
                Value::Object(offered.body.clone())
                    .to_string()
                    .hash(&mut hash);
            }
        }
    }
    out.prompts = hash.finish();
    let mut hash = DefaultHasher::new();
    if catalog.resources_declared {
        for map in [&catalog.resources, &catalog.templates] {
            for (key, offered) in map {
                if admitted(&offered.member) {
                    key.hash(&mut hash);
                    Value::Object(offered.body.clone())
                        .to_string()
                        .hash(&mut hash);
                }
            }
        }
    }
    out.resources = hash.finish();
    out
}

struct Listener {
    directory: Arc<Directory>,
    name: String,
    claims: Option<Arc<Claims>>,
    changes: tokio::sync::watch::Receiver<()>,
    seen: View,
    wants: Wants,
    /// Events to send first (a subscription's acknowledgment), then pending ones.
    queue: std::collections::VecDeque<Bytes>,
    /// The 2026-07-28 subscription's `_meta` (its id), `None` on a GET stream.
    meta: Option<Value>,
    /// The resource subscriptions whose updates this stream carries.
    scope: Option<ScopeGuard>,
    /// How long the stream stays quiet before it carries a comment line.
    keep_alive: Duration,
}

/// A listener's hold on its scope: a 2026-07-28 subscription's ends with its stream; a
/// session's stays (its subscriptions outlive a GET stream) unless nothing is in it.
struct ScopeGuard {
    scope: Arc<Scope>,
    subscriptions: Arc<Subscriptions>,
    id: u64,
    ends_with_stream: bool,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if self.ends_with_stream {
            self.subscriptions.end(self.id);
        } else {
            let id = self.id;
            let subscriptions = self.subscriptions.clone();
            // After this guard's own reference is gone.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { subscriptions.release(id) });
            }
        }
    }
}

impl Listener {
    fn event(&self, method: &str) -> Bytes {
        let mut message = json!({ "jsonrpc": "2.0", "method": method });
        if let Some(meta) = &self.meta {
            message["params"] = json!({ "_meta": meta });
        }
        Bytes::from(format!("event: message\ndata: {message}\n\n"))
    }
}

/// The GET stream of a session: every list change, and the session's resource updates.
pub(super) fn open(context: &Context<'_>) -> Response<Body> {
    let subscriptions = context.shared.virtuals.subscriptions.clone();
    let scope = subscriptions
        .scope(context.session)
        .map(|scope| ScopeGuard {
            scope,
            subscriptions,
            id: context.session,
            ends_with_stream: false,
        });
    let wants = Wants {
        tools: true,
        prompts: true,
        resources: true,
    };
    stream(context, wants, None, Vec::new(), scope)
}

/// A `subscriptions/listen` request (2026-07-28): the list changes asked for, and updates of
/// the resources in `resourceSubscriptions` that could be subscribed to (the others are left
/// out of the acknowledgment).
pub(super) async fn subscribe(
    context: &Context<'_>,
    message: &crate::envelope::Message<'_>,
    body: &[u8],
) -> Response<Body> {
    let request = serde_json::from_slice::<Value>(body).unwrap_or_default();
    let asked = &request["params"]["notifications"];
    let flag = |key: &str| asked[key].as_bool().unwrap_or(false);
    let wants = Wants {
        tools: flag("toolsListChanged"),
        prompts: flag("promptsListChanged"),
        resources: flag("resourcesListChanged"),
    };
    let mut accepted = serde_json::Map::new();
    for (key, wanted) in [
        ("toolsListChanged", wants.tools),
        ("promptsListChanged", wants.prompts),
        ("resourcesListChanged", wants.resources),
    ] {
        if wanted {
            accepted.insert(key.into(), Value::Bool(true));
        }
    }
    let id = super::id_value(message.id);
    let meta = json!({ "io.modelcontextprotocol/subscriptionId": id });
    let uris: Vec<String> = asked["resourceSubscriptions"]
        .as_array()
        .map(|uris| {
            uris.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut scope = None;
    let mut refused = Vec::new();
    if !uris.is_empty() {
        // Its own scope: no other request, not even the same caller's, shares it.
        let scope_id: u64 = rand::random();
        let subscriptions = context.shared.virtuals.subscriptions.clone();
        let mut subscribed = Vec::new();
        for uri in uris.iter().take(super::subscriptions::MAX_URIS + 1) {
            match super::subscriptions::subscribe(context, message, scope_id, uri).await {
                Ok(()) => subscribed.push(Value::String(uri.clone())),
                Err((_, why)) => refused.push(why),
            }
        }
        if let Some(held) = subscriptions.scope(scope_id) {
            scope = Some(ScopeGuard {
                scope: held,
                subscriptions,
                id: scope_id,
                ends_with_stream: true,
            });
        }
        if !subscribed.is_empty() {
            accepted.insert("resourceSubscriptions".into(), Value::Array(subscribed));
        }
    }
    for why in &refused {
        tracing::debug!(server = %context.config.name, reason = %why, "a resource subscription was left out");
    }
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "notifications": accepted, "_meta": meta },
    });
    let first = vec![Bytes::from(format!("event: message\ndata: {ack}\n\n"))];
    stream(context, wants, Some(meta), first, scope)
}

fn stream(
    context: &Context<'_>,
    wants: Wants,
    meta: Option<Value>,
    first: Vec<Bytes>,
    scope: Option<ScopeGuard>,
) -> Response<Body> {
    let directory = context.shared.directory.clone();
    let mut changes = directory.subscribe();
    changes.borrow_and_update();
    let name = context.config.name.clone();
    let claims = context.claims.clone();
    let seen = view(&directory, &name, claims.as_deref());
    let listener = Listener {
        directory,
        name,
        claims,
        changes,
        seen,
        wants,
        queue: first.into(),
        meta,
        scope,
        keep_alive: crate::gateway::sse_keep_alive(
            context.live.config.gateway.limits.body_idle_timeout,
        ),
    };
    let stream = futures::stream::unfold(listener, |mut listener| async move {
        loop {
            if let Some(event) = listener.queue.pop_front() {
                return Some((event, listener));
            }
            let updated = async {
                match &listener.scope {
                    Some(guard) => guard.scope.updated().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = listener.changes.changed() => {
                    // The directory is gone: the daemon is stopping.
                    changed.ok()?;
                    let now = view(&listener.directory, &listener.name, listener.claims.as_deref());
                    let before = std::mem::replace(&mut listener.seen, now);
                    for (changed, wanted, method) in [
                        (now.tools != before.tools, listener.wants.tools, "notifications/tools/list_changed"),
                        (now.prompts != before.prompts, listener.wants.prompts, "notifications/prompts/list_changed"),
                        (now.resources != before.resources, listener.wants.resources, "notifications/resources/list_changed"),
                    ] {
                        if changed && wanted {
                            let event = listener.event(method);
                            listener.queue.push_back(event);
                        }
                    }
                }
                () = updated => {
                    if let Some(guard) = &listener.scope {
                        for uri in guard.scope.take_pending() {
                            let event = update_event(&uri, listener.meta.as_ref());
                            listener.queue.push_back(event);
                        }
                    }
                }
                () = tokio::time::sleep(listener.keep_alive) => {
                    return Some((Bytes::from_static(b": keep-alive\n\n"), listener));
                }
            }
        }
    });
    let body = StreamBody::new(stream.map(|bytes| Ok::<_, BoxError>(Frame::data(bytes))));
    let mut response = Response::new(Either::Right(UpstreamBody::local(Box::pin(body))));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
