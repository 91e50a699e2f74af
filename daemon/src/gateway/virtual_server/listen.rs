//! The listening GET stream of a 2025-11-25 session: `notifications/tools/list_changed` each
//! time the caller's view of the tools changes (a member started, stopped, or its tools
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
            tool.info.input_schema.to_string().hash(&mut hash);
            serde_json::Value::Object(tool.info.extra)
                .to_string()
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
}

pub(super) fn open(context: &Context<'_>) -> Response<Body> {
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
    };
    let stream = futures::stream::unfold(listener, |mut listener| async move {
        loop {
            tokio::select! {
                changed = listener.changes.changed() => {
                    // The directory is gone: the daemon is stopping.
                    changed.ok()?;
                    let now = view(&listener.directory, &listener.name, listener.claims.as_deref());
                    if now != listener.seen {
                        listener.seen = now;
                        return Some((Bytes::from_static(LIST_CHANGED), listener));
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
