//! `tools/call` through a virtual server: the exposed name is looked up in the catalog (never
//! split), the caller authorized against the member's and the virtual server's rules, and the
//! body forwarded to the member over the upstream pool with the member's own tool name. The
//! member's answer (JSON or SSE, progress notifications included) streams back as it comes.
//!
//! Never an empty success: a member that is down, unreachable, refuses, or breaks off
//! mid-answer gives a JSON-RPC error naming the member (and its state). A member session the
//! member forgot (404) is opened again and the call sent once more.
//!
//! [`send`] is the forwarding itself, shared with `prompts/get` and `resources/read`
//! (`offered.rs`): it takes one of the caller's slots (`slots.rs`) for as long as the answer
//! streams, so a caller over `max_calls_per_caller` is refused at once.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Limited};
use serde_json::Value;

use mcpd_protocol::AuditDecision;

use super::backchannel;
use super::links::MemberAddress;
use super::unavailable::{broke_off_event, down_message, member_down};
use super::{
    CALLER_BUSY, Context, INVALID_PARAMS, MEMBER_UNAVAILABLE, STATELESS_VERSION, access,
    json_answer, passed_on, rpc_error, slots, splice,
};
use crate::audit::{CallEntry, CallNames};
use crate::authz::Decision;
use crate::config::ServerConfig;
use crate::directory::{ServerEntry, ServerState};
use crate::envelope::Message;
use crate::gateway::inspect;
use crate::gateway::proxy::{self, ForwardBody, Upstream};
use crate::gateway::registry::resource_metadata_url;
use crate::gateway::response::Body;
use crate::gateway::tap::{CallAudit, Tap};
use crate::probe_client::Link;

/// Most bytes read of a member's refusal to quote it.
pub(super) const MAX_REFUSAL: usize = 64 * 1024;

pub(super) async fn call(
    context: &Context<'_>,
    message: &Message<'_>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let started = Instant::now();
    let directory = &context.shared.directory;
    let config = &context.config;
    let name = config.name.as_str();
    let id = message.id;
    let exposed = message.name.as_deref().unwrap_or_default();
    let catalog = context.shared.virtuals.catalogs.get(directory, config);
    let Some(tool) = catalog.tools.get(exposed) else {
        if let Some((member, state)) = member_down(directory, config, exposed) {
            return rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &format!("member server \"{member}\" of virtual server {name} is {state}"),
            );
        }
        if let Some(conflict) = catalog.conflicts.iter().find(|c| c.exposed == exposed) {
            return rpc_error(id, INVALID_PARAMS, &conflict.describe(name));
        }
        return rpc_error(
            id,
            INVALID_PARAMS,
            &format!("unknown tool \"{exposed}\" on virtual server {name}"),
        );
    };
    let member = tool.member.as_str();
    let Some(entry) = directory.get(member) else {
        return rpc_error(
            id,
            MEMBER_UNAVAILABLE,
            &format!("member server \"{member}\" of virtual server {name} is not configured"),
        );
    };
    let member_config = entry.config.load_full();
    let claims = context.claims.as_deref();
    if let Decision::Deny { allowing } = access::decide_call(
        claims,
        config,
        &member_config.oauth,
        exposed,
        &tool.original,
    ) {
        let metadata = resource_metadata_url(&context.live.config.gateway.public_url, name);
        let answer = inspect::insufficient_scope(name, &[(message, allowing)], metadata);
        if let Some(log) = &context.shared.audit {
            let mut entry = call_entry(context, message, &member_config, &tool.original, started);
            entry.decision = AuditDecision::Deny;
            entry.status = answer.status().as_u16();
            entry.duration = started.elapsed();
            log.record_call(entry);
        }
        return answer;
    }

    let route = Route {
        method: "tools/call",
        member,
        target: &tool.original,
        rename: true,
        audit: true,
    };
    send(
        context,
        message,
        headers,
        &body,
        &entry,
        &member_config,
        &route,
        started,
    )
    .await
}

/// What [`send`] sends where.
pub(super) struct Route<'r> {
    pub method: &'static str,
    pub member: &'r str,
    /// The member's own name of the tool or prompt (written into `params.name` when
    /// `rename`), or the resource's URI: what `Mcp-Name` says to a 2026-07-28 member.
    pub target: &'r str,
    pub rename: bool,
    /// Written to the audit log (tool calls).
    pub audit: bool,
}

/// Forwards the request to the member (running, reached, its session reopened once if it
/// forgot it), holding one of the caller's slots until the answer has streamed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send(
    context: &Context<'_>,
    message: &Message<'_>,
    headers: &HeaderMap,
    body: &Bytes,
    entry: &Arc<ServerEntry>,
    member_config: &Arc<ServerConfig>,
    route: &Route<'_>,
    started: Instant,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let id = message.id;
    let member = route.member;
    let mut slot = match context.shared.virtuals.slots.take(
        name,
        context.caller(),
        context.config.max_calls_per_caller,
    ) {
        Ok(slot) => Some(slot),
        Err(refusal) => return rpc_error(id, CALLER_BUSY, &refusal),
    };
    let links = &context.shared.virtuals.links;
    let mut retried = false;
    loop {
        let status = entry.status.load_full();
        if status.state != ServerState::Running {
            return rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &down_message(name, member, status.state, status.last_error.as_deref()),
            );
        }
        let Some(address) =
            MemberAddress::of(member, member_config, &status, context.capabilities.roots)
        else {
            return rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &format!("member server \"{member}\" of virtual server {name} has no port yet"),
            );
        };
        let port = address.port;
        let for_session = context.has_session && !context.stateless;
        let link = match links.get(context.session, &address, for_session).await {
            Ok((link, fresh)) => {
                if fresh && matches!(link, Link::Session { id: Some(_), .. }) {
                    context
                        .shared
                        .virtuals
                        .watches
                        .ensure(context, entry, member_config, &address);
                }
                link
            }
            Err(err) => {
                return rpc_error(
                    id,
                    MEMBER_UNAVAILABLE,
                    &format!(
                        "member server \"{member}\" of virtual server {name} could not be reached: {err}"
                    ),
                );
            }
        };
        if let (Some(slot), Some(request_id)) = (&mut slot, message.id_text()) {
            slot.hold_call(links.note_call(context.session, request_id, entry, &link));
        }
        let target = route.rename.then_some(route.target);
        let Some(rewritten) = splice::member_body(body, message, target, &link) else {
            return rpc_error(
                id,
                INVALID_PARAMS,
                &format!("{} needs params", route.method),
            );
        };
        let request = member_request(headers, &link, route.method, route.target, rewritten);
        let upstream = context.member_upstream(member_config, entry, port);
        let answer = proxy::forward(context.pool, upstream, request).await;
        let forgotten = answer.status() == StatusCode::NOT_FOUND
            && matches!(link, Link::Session { id: Some(_), .. });
        if forgotten && !retried {
            tracing::debug!(
                server = name,
                member,
                "member session expired; opening a new one"
            );
            links.forget(context.session, member);
            retried = true;
            continue;
        }
        let member_is_stateless = link == Link::Stateless;
        let answer = backchannel::relay(
            context,
            id,
            || backchannel::route(context, headers, entry, member_config, port, link),
            member_is_stateless,
            backchannel::caller_side(context),
            answer,
            &mut slot,
        )
        .await;
        let answer = finish(context, message, member_config, route, answer, started).await;
        return match slot {
            Some(slot) => slots::hold(answer, slot),
            // The relayed answer's body holds it.
            None => answer,
        };
    }
}

impl Context<'_> {
    /// How the proxy reaches `member` (on `port`, or its remote URL) for this caller.
    pub(super) fn member_upstream<'u>(
        &'u self,
        member: &'u ServerConfig,
        entry: &'u ServerEntry,
        port: u16,
    ) -> Upstream<'u> {
        let gateway = &self.live.config.gateway;
        Upstream {
            server: &member.name,
            port,
            path: &member.path,
            peer: self.peer,
            host: self.host.clone(),
            trusted_peer: gateway.trusts(self.peer.ip()),
            proto: if gateway.public_url.starts_with("https:") {
                "https"
            } else {
                "http"
            },
            max_body: gateway.max_body,
            header_timeout: self.shared.options.upstream_header_timeout,
            retry_after_secs: self.shared.options.retry_after_secs,
            claims: self.claims.as_deref(),
            check_now: &entry.check_now,
            remote: member.remote.as_deref(),
        }
    }
}

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

pub(super) fn member_request(
    headers: &HeaderMap,
    link: &Link,
    method: &'static str,
    target: &str,
    body: Bytes,
) -> Request<ForwardBody> {
    let mut request = Request::new(ForwardBody::Read(body));
    *request.method_mut() = Method::POST;
    let out = request.headers_mut();
    *out = passed_on(headers);
    // Room for what follows, taken at once.
    out.reserve(6);
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    match link {
        Link::Stateless => {
            out.insert(
                MCP_PROTOCOL_VERSION,
                HeaderValue::from_static(STATELESS_VERSION),
            );
            out.insert(MCP_METHOD, HeaderValue::from_static(method));
            if let Ok(value) = HeaderValue::try_from(crate::envelope::header_text(target).as_ref())
            {
                out.insert(MCP_NAME, value);
            }
        }
        Link::Session { id, version } => {
            if let Some(id) = id
                && let Ok(value) = HeaderValue::try_from(&**id)
            {
                out.insert(MCP_SESSION_ID, value);
            }
            if let Ok(value) = HeaderValue::try_from(&**version) {
                out.insert(MCP_PROTOCOL_VERSION, value);
            }
        }
    }
    request
}

/// The member's answer for the caller: a success streams through (audited, and ended with a
/// JSON-RPC error event if the member breaks off); anything else becomes a JSON-RPC error
/// naming the member, unless it already is one.
async fn finish(
    context: &Context<'_>,
    message: &Message<'_>,
    member: &Arc<ServerConfig>,
    route: &Route<'_>,
    answer: Response<Body>,
    started: Instant,
) -> Response<Body> {
    let original = route.target;
    let audit = context.shared.audit.as_ref().filter(|_| route.audit);
    let name = context.config.name.as_str();
    let id = message.id;
    let (mut parts, body) = answer.into_parts();
    match body {
        Either::Right(mut upstream) if parts.status.is_success() => {
            let is_sse = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
            if is_sse {
                upstream.on_cut(broke_off_event(id, name, &member.name));
            }
            if let Some(log) = audit {
                let call = CallAudit::new(call_entry(context, message, member, original, started));
                let mut tap = Tap::new(None, call, Some(log.clone()), started);
                tap.begin(&mut parts);
                upstream.set_tap(tap);
            }
            Response::from_parts(parts, Either::Right(upstream))
        }
        body => {
            let status = parts.status;
            let bytes = match body {
                Either::Left(full) => full.collect().await.map(|c| c.to_bytes()).ok(),
                Either::Right(upstream) => Limited::new(upstream, MAX_REFUSAL)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .ok(),
            }
            .unwrap_or_default();
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            if let Some(value) = &parsed
                && value.get("jsonrpc").is_some()
                && value.get("error").is_some()
            {
                return json_answer(value);
            }
            let said = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                });
            if let Some(log) = audit {
                let mut entry = call_entry(context, message, member, original, started);
                entry.status = status.as_u16();
                entry.duration = started.elapsed();
                log.record_call(entry);
            }
            rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &format!(
                    "member server \"{}\" of virtual server {name} failed {} ({}): {said}",
                    member.name,
                    if route.audit {
                        "the call"
                    } else {
                        route.method
                    },
                    status.as_u16()
                ),
            )
        }
    }
}

/// The audit record of a call through the virtual server to `member` (tool `original`),
/// decision allow, outcome not known yet: what the request knows (it came at `started`),
/// formatted by the audit writer.
fn call_entry(
    context: &Context<'_>,
    message: &Message<'_>,
    member: &Arc<ServerConfig>,
    original: &str,
    started: Instant,
) -> CallEntry {
    CallEntry {
        started,
        server: member.clone(),
        via_virtual: Some(context.config.clone()),
        claims: context.claims.clone(),
        names: CallNames::new(original, message.id_text()),
        peer: context.peer,
        arguments: (context.config.audit_arguments || member.audit_arguments)
            .then(|| message.arguments.map(|a| Box::from(a.get())))
            .flatten(),
        decision: AuditDecision::Allow,
        status: 0,
        error_code: None,
        is_error: None,
        duration: std::time::Duration::ZERO,
    }
}
