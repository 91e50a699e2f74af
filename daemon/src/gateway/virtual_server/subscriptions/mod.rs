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
//! a JSON-RPC error). Only members with sessions take subscriptions: a member that speaks
//! 2026-07-28 too is given a member session for the scope; one that speaks only 2026-07-28
//! is refused with an error saying so. Subscriptions are held by this
//! mcpd: a restarted mcpd, or a restarted member (it forgot them), drops them, and the
//! caller subscribes again.

mod pump;
mod scopes;

pub use scopes::{MAX_SCOPES, MAX_URIS, Scope, Subscriptions};

pub(super) use pump::read_events;

use std::sync::Arc;

use serde_json::{Value, json};

use super::call::member_request;
use super::links::MemberAddress;
use super::{Context, INVALID_PARAMS, MEMBER_UNAVAILABLE, RESOURCE_NOT_FOUND, access};
use crate::authz::Decision;
use crate::directory::ServerState;
use crate::envelope::Message;
use crate::probe_client::Link;
use crate::virtuals::offered::{MAX_URI, route_uri};

/// JSON-RPC "method not found": the member does not take subscriptions.
const METHOD_NOT_FOUND: i64 = -32601;
/// The token may not read the resource (so not subscribe to it either).
const FORBIDDEN: i64 = -32003;

/// A refusal: a JSON-RPC error code and message.
pub type Refusal = (i64, String);

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
    let (link, _) = context
        .shared
        .virtuals
        .links
        // A subscription needs a member session: one is opened even at a member that speaks
        // 2026-07-28 too.
        .get(scope_id, &address, true)
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
pub(super) fn listen_request(
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
