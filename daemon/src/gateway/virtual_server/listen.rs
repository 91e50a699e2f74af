//! The listening streams: the GET stream of a 2025-11-25 session, and a 2026-07-28
//! `subscriptions/listen` answer (acknowledged first, each notification tagged with the
//! subscription's id). They get `notifications/tools/list_changed` each time the caller's
//! view of the tools changes (a member started, stopped, or its tools
//! changed; the configuration reloaded), woken by the directory's change signal, so within
//! a moment of the change. A comment line keeps an idle stream alive.

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

use super::{Context, visible};
use crate::directory::Directory;
use crate::gateway::auth::Claims;
use crate::gateway::conn::BoxError;
use crate::gateway::response::{Body, UpstreamBody};

/// How often an idle stream gets a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

const LIST_CHANGED: &[u8] =
    b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";

/// A hash of the tools the caller sees (names and what the member says of them).
fn view(directory: &Directory, name: &str, claims: Option<&Claims>) -> u64 {
    let mut hash = DefaultHasher::new();
    if let Some(config) = directory.get_virtual(name) {
        let catalog = crate::virtuals::catalog_of(directory, &config);
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
    }
    hash.finish()
}

struct Listener {
    directory: Arc<Directory>,
    name: String,
    claims: Option<Arc<Claims>>,
    changes: tokio::sync::watch::Receiver<()>,
    seen: u64,
    /// Sent first (a subscription's acknowledgment).
    first: Option<Bytes>,
    changed: Bytes,
}

/// The GET stream of a session.
pub(super) fn open(context: &Context<'_>) -> Response<Body> {
    stream(context, None, Bytes::from_static(LIST_CHANGED))
}

/// A `subscriptions/listen` request (2026-07-28): only `toolsListChanged` is offered.
pub(super) fn subscribe(
    context: &Context<'_>,
    id: Option<&serde_json::value::RawValue>,
    body: &[u8],
) -> Response<Body> {
    let wanted = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["params"]["notifications"]["toolsListChanged"].as_bool())
        .unwrap_or(false);
    let accepted = if wanted {
        serde_json::json!({ "toolsListChanged": true })
    } else {
        serde_json::json!({})
    };
    let id = super::id_value(id);
    let meta = serde_json::json!({ "io.modelcontextprotocol/subscriptionId": id });
    let event =
        |value: serde_json::Value| Bytes::from(format!("event: message\ndata: {value}\n\n"));
    let ack = event(serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "notifications": accepted, "_meta": meta },
    }));
    let changed = event(serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": { "_meta": meta },
    }));
    if !wanted {
        // Nothing to send but the acknowledgment; the stream stays open like any other.
        return stream(
            context,
            Some(ack),
            Bytes::from_static(b": no tool changes requested\n\n"),
        );
    }
    stream(context, Some(ack), changed)
}

fn stream(context: &Context<'_>, first: Option<Bytes>, changed: Bytes) -> Response<Body> {
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
        first,
        changed,
    };
    let stream = futures::stream::unfold(listener, |mut listener| async move {
        if let Some(first) = listener.first.take() {
            return Some((first, listener));
        }
        loop {
            tokio::select! {
                changed = listener.changes.changed() => {
                    // The directory is gone: the daemon is stopping.
                    changed.ok()?;
                    let now = view(&listener.directory, &listener.name, listener.claims.as_deref());
                    if now != listener.seen {
                        listener.seen = now;
                        let event = listener.changed.clone();
                        return Some((event, listener));
                    }
                }
                () = tokio::time::sleep(KEEP_ALIVE) => {
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
