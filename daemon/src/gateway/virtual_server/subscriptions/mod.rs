//! Resource subscriptions through a virtual server. A subscription belongs to a *scope*: the
//! caller's 2025-11-25 session (`resources/subscribe`, updates on its GET stream), or one
//! 2026-07-28 `subscriptions/listen` request (its `resourceSubscriptions`, updates on that
//! answer's stream, gone when it ends). Each URI is routed like `resources/read` (the member
//! that listed it, else the one whose template matches), authorized like a read, and
//! subscribed at that member in the scope's own member session (`links.rs` keys member
//! sessions by scope), so no two scopes share a member session.
//!
//! For each (scope, member) one task (`pump.rs`) holds the member session's GET stream open
//! and takes from it the member's `notifications/resources/updated` for URIs the scope
//! subscribed to; any other URI is dropped, so a caller never sees an update it did not
//! subscribe to, even from a member that sends them for everything. Updates are coalesced:
//! a scope keeps at most one pending update per subscribed URI, so a member flooding updates
//! costs parsing, never memory or the caller's bandwidth beyond one event per URI per wake.
//!
//! Bounded: [`MAX_URIS`] per scope, [`MAX_SCOPES`] scopes per mcpd (refused past them, with
//! a JSON-RPC error). Only members reached through a session take subscriptions (a
//! 2026-07-28 member is refused with an error saying so). Subscriptions are held by this
//! mcpd: a restarted mcpd, or a restarted member (it forgot them), drops them, and the
//! caller subscribes again.

mod pump;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::call::member_request;
use super::links::MemberAddress;
use super::{Context, INVALID_PARAMS, MEMBER_UNAVAILABLE, RESOURCE_NOT_FOUND, access};
use crate::authz::Decision;
use crate::directory::ServerState;
use crate::envelope::Message;
use crate::probe_client::Link;
use crate::virtuals::offered::{MAX_URI, route_uri};

/// Most URIs one scope subscribes to.
pub const MAX_URIS: usize = 256;
/// Most scopes with subscriptions per mcpd.
pub const MAX_SCOPES: usize = 10_000;
/// JSON-RPC "method not found": the member does not take subscriptions.
const METHOD_NOT_FOUND: i64 = -32601;
/// The token may not read the resource (so not subscribe to it either).
const FORBIDDEN: i64 = -32003;

/// The scopes of this mcpd, by scope id (a session's nonce, or a listen request's own id).
#[derive(Debug, Default)]
pub struct Subscriptions {
    scopes: Mutex<HashMap<u64, Arc<Scope>>>,
}

/// The subscriptions of one scope and what its listener has not sent yet.
#[derive(Debug, Default)]
pub struct Scope {
    state: Mutex<ScopeState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct ScopeState {
    /// Subscribed URIs, with the member that offers each.
    uris: HashMap<String, String>,
    /// Updated URIs not yet sent, each once, in the order they came.
    pending: Vec<String>,
    /// The task reading each member's stream for this scope.
    pumps: HashMap<String, pump::Pump>,
}

/// A refusal: a JSON-RPC error code and message.
pub type Refusal = (i64, String);

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Scope>>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scope `id`, made when there is none (`None` when mcpd holds [`MAX_SCOPES`] and
    /// none of them can go).
    pub fn scope(&self, id: u64) -> Option<Arc<Scope>> {
        let mut scopes = self.lock();
        if let Some(scope) = scopes.get(&id) {
            return Some(scope.clone());
        }
        if scopes.len() >= MAX_SCOPES {
            // Scopes nobody listens to and with nothing subscribed go first.
            scopes.retain(|_, scope| Arc::strong_count(scope) > 1 || !scope.is_empty());
            if scopes.len() >= MAX_SCOPES {
                return None;
            }
        }
        let scope = Arc::new(Scope::default());
        scopes.insert(id, scope.clone());
        Some(scope)
    }

    /// Forgets the scope `id` (its session ended, or its listen request): its member
    /// streams end.
    pub fn end(&self, id: u64) {
        let scope = self.lock().remove(&id);
        if let Some(scope) = scope {
            scope.state().pumps.clear();
        }
    }

    /// Forgets the scope `id` if nothing is subscribed in it and nobody listens to it.
    pub fn release(&self, id: u64) {
        let mut scopes = self.lock();
        if scopes
            .get(&id)
            .is_some_and(|scope| Arc::strong_count(scope) == 1 && scope.is_empty())
        {
            scopes.remove(&id);
        }
    }
}

impl Scope {
    fn state(&self) -> std::sync::MutexGuard<'_, ScopeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_empty(&self) -> bool {
        self.state().uris.is_empty()
    }

    /// Waits for updates to send.
    pub async fn updated(&self) {
        self.wake.notified().await;
    }

    /// The updated URIs not sent yet (each once), and forgets them.
    pub fn take_pending(&self) -> Vec<String> {
        std::mem::take(&mut self.state().pending)
    }

    /// The member `member` says `uri` changed: pending when the scope subscribed to it there.
    fn member_updated(&self, member: &str, uri: &str) -> bool {
        let mut state = self.state();
        if state.uris.get(uri).is_none_or(|m| m != member) {
            return false;
        }
        if !state.pending.iter().any(|pending| pending == uri) {
            state.pending.push(uri.to_owned());
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Ends the member's stream when nothing is subscribed there (a subscription failed).
    fn drop_idle_pump(&self, member: &str) {
        let mut state = self.state();
        if !state.uris.values().any(|m| m == member) {
            state.pumps.remove(member);
        }
    }

    /// The member's stream ended for good: its subscriptions go.
    fn member_gone(&self, member: &str) {
        let mut state = self.state();
        state.uris.retain(|_, m| m != member);
        state.pumps.remove(member);
    }
}

/// Subscribes `scope_id` to `uri`: routed, authorized, subscribed at the member in the
/// scope's member session, whose stream is then read.
pub(super) async fn subscribe(
    context: &Context<'_>,
    message: &Message<'_>,
    scope_id: u64,
    uri: &str,
) -> Result<(), Refusal> {
    let name = context.config.name.as_str();
    if uri.is_empty() || uri.len() > MAX_URI {
        return Err((
            INVALID_PARAMS,
            format!("a resource URI has 1 to {MAX_URI} bytes"),
        ));
    }
    let catalog = context.catalog();
    let offered = match route_uri(&catalog, uri) {
        Ok(Some(offered)) => offered.clone(),
        Ok(None) if let Some(offered) = super::offered::sole_member_resource(context, uri) => {
            offered
        }
        Ok(None) => {
            return Err((
                RESOURCE_NOT_FOUND,
                format!("no member of virtual server {name} offers the resource {uri:?}"),
            ));
        }
        Err(members) => {
            return Err((
                INVALID_PARAMS,
                format!(
                    "virtual server {name}: the URI matches resource templates of servers {}; it is not subscribed to",
                    members.join(" and ")
                ),
            ));
        }
    };
    let member = offered.member.as_str();
    let Some(entry) = context.shared.directory.get(member) else {
        return Err((
            MEMBER_UNAVAILABLE,
            format!("member server \"{member}\" of virtual server {name} is not configured"),
        ));
    };
    let member_config = entry.config.load_full();
    if let Decision::Deny { allowing } = access::decide_read(
        context.claims.as_deref(),
        &context.config,
        &member_config.oauth,
        message,
    ) {
        return Err((
            FORBIDDEN,
            format!(
                "the token may not subscribe to this resource of virtual server {name}; scopes that may: {}",
                allowing.join(", ")
            ),
        ));
    }
    let status = entry.status.load_full();
    if status.state != ServerState::Running {
        return Err((
            MEMBER_UNAVAILABLE,
            format!(
                "member server \"{member}\" of virtual server {name} is {}",
                status.state
            ),
        ));
    }
    if !status.offers.subscribe {
        return Err((
            METHOD_NOT_FOUND,
            format!("member server \"{member}\" does not offer resource subscriptions"),
        ));
    }
    let Some(scope) = context.shared.virtuals.subscriptions.scope(scope_id) else {
        return Err((
            super::CALLER_BUSY,
            format!("mcpd holds {MAX_SCOPES} sessions with subscriptions; try again later"),
        ));
    };
    {
        let state = scope.state();
        if !state.uris.contains_key(uri) && state.uris.len() >= MAX_URIS {
            return Err((
                super::CALLER_BUSY,
                format!("a session subscribes to at most {MAX_URIS} resources"),
            ));
        }
    }
    let Some(address) =
        MemberAddress::of(member, &member_config, &status, context.capabilities.roots)
    else {
        return Err((
            MEMBER_UNAVAILABLE,
            format!("member server \"{member}\" of virtual server {name} has no port yet"),
        ));
    };
    let link = context
        .shared
        .virtuals
        .links
        .get(scope_id, &address)
        .await
        .map_err(|err| {
            (
                MEMBER_UNAVAILABLE,
                format!("member server \"{member}\" of virtual server {name} could not be reached: {err}"),
            )
        })?;
    if !matches!(link, Link::Session { id: Some(_), .. }) {
        return Err((
            METHOD_NOT_FOUND,
            format!(
                "member server \"{member}\" speaks without sessions: virtual server {name} relays resource subscriptions only from members reached through a session; subscribe at the member's own endpoint"
            ),
        ));
    }
    let route = Arc::new(super::backchannel::route(
        context,
        &http::HeaderMap::new(),
        &entry,
        &member_config,
        address.port,
        link,
    ));
    // The member's stream first, so no update sent right after the subscription is lost.
    let take_slot = || {
        context.shared.virtuals.slots.take(
            name,
            context.caller(),
            context.config.max_calls_per_caller,
        )
    };
    if let Err(why) = pump::ensure(
        &scope,
        route.clone(),
        member_config.health.timeout,
        take_slot,
    )
    .await
    {
        scope.drop_idle_pump(member);
        let code = if why.contains("in flight") {
            super::CALLER_BUSY
        } else {
            MEMBER_UNAVAILABLE
        };
        return Err((
            code,
            format!("member server \"{member}\" of virtual server {name}: {why}"),
        ));
    }
    let request = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "resources/subscribe",
        "params": { "uri": offered_uri(&offered, uri) },
    });
    match pump::request(&route, &request).await {
        Ok(answer) if answer.get("result").is_some() => {
            scope.state().uris.insert(uri.to_owned(), member.to_owned());
            Ok(())
        }
        Ok(answer) => {
            scope.drop_idle_pump(member);
            let code = answer["error"]["code"]
                .as_i64()
                .unwrap_or(MEMBER_UNAVAILABLE);
            let said = answer["error"]["message"].as_str().unwrap_or("no result");
            Err((
                code,
                format!("member server \"{member}\" refused the subscription: {said}"),
            ))
        }
        Err(why) => {
            scope.drop_idle_pump(member);
            Err((
                MEMBER_UNAVAILABLE,
                format!("member server \"{member}\" of virtual server {name}: {why}"),
            ))
        }
    }
}

/// The URI the member knows: the one it listed, or (a template's expansion) the caller's.
fn offered_uri<'a>(offered: &'a crate::virtuals::offered::Offered, uri: &'a str) -> &'a str {
    if offered.original == uri {
        &offered.original
    } else {
        uri
    }
}

/// Unsubscribes `scope_id` from `uri`; refused when this scope did not subscribe to it (a
/// caller never touches another's subscriptions: they are in other scopes).
pub(super) async fn unsubscribe(
    context: &Context<'_>,
    scope_id: u64,
    uri: &str,
) -> Result<(), Refusal> {
    let subscriptions = &context.shared.virtuals.subscriptions;
    let not_subscribed = || {
        (
            INVALID_PARAMS,
            format!("this session is not subscribed to {uri:?}"),
        )
    };
    let scope = subscriptions
        .lock()
        .get(&scope_id)
        .cloned()
        .ok_or_else(not_subscribed)?;
    let (member, route, last) = {
        let mut state = scope.state();
        let member = state.uris.remove(uri).ok_or_else(not_subscribed)?;
        state.pending.retain(|pending| pending != uri);
        let last = !state.uris.values().any(|m| *m == member);
        let route = state.pumps.get(&member).map(|pump| pump.route.clone());
        if last {
            state.pumps.remove(&member);
        }
        (member, route, last)
    };
    if let Some(route) = route {
        let request = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "resources/unsubscribe",
            "params": { "uri": uri },
        });
        if let Err(why) = pump::request(&route, &request).await {
            tracing::debug!(member, %why, last, "the member did not take an unsubscription");
        }
    }
    drop(scope);
    subscriptions.release(scope_id);
    Ok(())
}

/// The `notifications/resources/updated` of `uri`, tagged with a 2026-07-28 subscription's
/// metadata when there is one.
pub fn update_event(uri: &str, meta: Option<&Value>) -> bytes::Bytes {
    let mut params = json!({ "uri": uri });
    if let Some(meta) = meta {
        params["_meta"] = meta.clone();
    }
    let message = json!({
        "jsonrpc": "2.0",
        "method": "notifications/resources/updated",
        "params": params,
    });
    bytes::Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// A GET (the member session's stream) to the member.
fn listen_request(
    route: &super::backchannel::MemberRoute,
) -> http::Request<crate::gateway::proxy::ForwardBody> {
    let mut request = member_request(&route.headers, &route.link, "", "", bytes::Bytes::new());
    *request.method_mut() = http::Method::GET;
    let headers = request.headers_mut();
    headers.remove("mcp-name");
    headers.remove("mcp-method");
    headers.remove(http::header::CONTENT_TYPE);
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("text/event-stream"),
    );
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subscribed_uris_of_their_member_are_pending_and_each_once() {
        let scope = Scope::default();
        scope.state().uris.insert("docs://a".into(), "docs".into());
        assert!(!scope.member_updated("docs", "docs://b"), "not subscribed");
        assert!(!scope.member_updated("other", "docs://a"), "another member");
        for _ in 0..1000 {
            assert!(scope.member_updated("docs", "docs://a"));
        }
        assert_eq!(scope.take_pending(), ["docs://a"]);
        assert!(scope.take_pending().is_empty());
        scope.member_gone("docs");
        assert!(!scope.member_updated("docs", "docs://a"));
        assert!(scope.is_empty());
    }

    #[test]
    fn scopes_are_bounded_and_idle_ones_make_room() {
        let subscriptions = Subscriptions::default();
        for id in 0..MAX_SCOPES as u64 {
            assert!(subscriptions.scope(id).is_some());
        }
        // Every scope is empty and held by nobody else: one more makes room.
        assert!(subscriptions.scope(u64::MAX).is_some());
        // Those idle scopes make room for as many held ones.
        let held: Vec<Arc<Scope>> = (0..MAX_SCOPES as u64)
            .map(|id| subscriptions.scope(1_000_000 + id).expect("room"))
            .collect();
        // Now every scope is held: one more is refused.
        assert!(subscriptions.scope(2_000_000).is_none());
        subscriptions.end(1_000_000);
        drop(held);
        assert!(subscriptions.scope(2_000_000).is_some());
    }
}
