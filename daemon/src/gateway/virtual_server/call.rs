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
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Limited};
use serde_json::{Value, json};

use mcpd_protocol::{AuditDecision, AuditRecord};

use super::backchannel;
use super::links::MemberAddress;
use super::{
    CALLER_BUSY, Context, INVALID_PARAMS, MEMBER_UNAVAILABLE, STATELESS_VERSION, access,
    error_message, json_answer, passed_on, rpc_error, slots,
};
use crate::audit;
use crate::authz::Decision;
use crate::config::{PrefixMode, ServerConfig, VirtualConfig};
use crate::directory::{Directory, ServerEntry, ServerState};
use crate::envelope::Message;
use crate::gateway::inspect;
use crate::gateway::proxy::{self, ForwardBody, Upstream};
use crate::gateway::registry::resource_metadata_url;
use crate::gateway::response::Body;
use crate::gateway::tap::{CallAudit, Tap};
use crate::probe_client::Link;

/// The keys of the per-request metadata of 2026-07-28.
const STATELESS_META_PREFIX: &str = "io.modelcontextprotocol/";

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
            let mut record = audit_record(context, message, &member_config, &tool.original);
            record.decision = AuditDecision::Deny;
            record.status = answer.status().as_u16();
            record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            log.record(&record);
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
    member_config: &ServerConfig,
    route: &Route<'_>,
    started: Instant,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let id = message.id;
    let member = route.member;
    let claims = context.claims.as_deref();
    let slot = match context.shared.virtuals.slots.take(
        name,
        context.caller(),
        context.config.max_calls_per_caller,
    ) {
        Ok(slot) => slot,
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
        let remote = member_config.remote.as_ref();
        let Some(port) = status.port.or(member_config.port).or(remote.map(|_| 0)) else {
            return rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &format!("member server \"{member}\" of virtual server {name} has no port yet"),
            );
        };
        let address = MemberAddress {
            name: member,
            port,
            path: &member_config.path,
            started_at: status.started_at,
            timeout: member_config.health.timeout,
            remote,
            roots: context.capabilities.roots,
        };
        let link = match links.get(context.session, &address).await {
            Ok(link) => link,
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
        if let Some(request_id) = message.id_text() {
            links.note_call(context.session, request_id, member, &link);
        }
        let Some(rewritten) = rewrite(body, route.rename.then_some(route.target), &link) else {
            return rpc_error(
                id,
                INVALID_PARAMS,
                &format!("{} needs params", route.method),
            );
        };
        let request = member_request(headers, &link, route.method, route.target, rewritten);
        let live = context.live;
        let public_url = &live.config.gateway.public_url;
        let upstream = Upstream {
            server: member,
            port,
            path: &member_config.path,
            peer: context.peer,
            host: context.host.clone(),
            trusted_peer: live.config.gateway.trusts(context.peer.ip()),
            proto: if public_url.starts_with("https:") {
                "https"
            } else {
                "http"
            },
            max_body: live.config.gateway.max_body,
            header_timeout: context.shared.options.upstream_header_timeout,
            retry_after_secs: context.shared.options.retry_after_secs,
            claims,
            check_now: &entry.check_now,
            remote: remote.map(|remote| &**remote),
        };
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
        let answer = backchannel::relay(
            context,
            id,
            backchannel::route(context, headers, entry, member_config, port, link),
            backchannel::caller_side(context),
            answer,
        )
        .await;
        let answer = finish(context, message, member_config, route, answer, started).await;
        return slots::hold(answer, slot);
    }
}

fn down_message(name: &str, member: &str, state: ServerState, error: Option<&str>) -> String {
    let mut text = format!("member server \"{member}\" of virtual server {name} is {state}");
    if let Some(error) = error {
        text.push_str(": ");
        text.push_str(error);
    }
    text
}

/// The member (not running) whose tool the exposed name would be, to say so.
pub(super) fn member_down(
    directory: &Directory,
    config: &VirtualConfig,
    exposed: &str,
) -> Option<(String, ServerState)> {
    let all = directory.all();
    config
        .members
        .iter()
        .filter(|member| match config.prefix {
            PrefixMode::Always => exposed
                .strip_prefix(member.as_str())
                .is_some_and(|rest| rest.starts_with(&config.separator)),
            PrefixMode::Never => true,
        })
        .filter_map(|member| {
            let state = all.get(member)?.status.load().state;
            (state != ServerState::Running).then(|| (member.clone(), state))
        })
        .max_by_key(|(member, _)| member.len())
}

/// The call's body with the member's tool name, and for a 2026-07-28 member the per-request
/// metadata it needs (kept when the caller sent it).
fn rewrite(body: &[u8], name: Option<&str>, link: &Link) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let params = value.get_mut("params")?.as_object_mut()?;
    if let Some(name) = name {
        params.insert("name".into(), Value::String(name.to_owned()));
    }
    if *link != Link::Stateless {
        // The per-request metadata of 2026-07-28 would contradict the session's version.
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.retain(|key, _| !key.starts_with(STATELESS_META_PREFIX));
        }
    } else {
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            for (key, default) in [
                (
                    "io.modelcontextprotocol/protocolVersion",
                    json!(STATELESS_VERSION),
                ),
                (
                    "io.modelcontextprotocol/clientInfo",
                    json!({ "name": "mcpd", "version": env!("CARGO_PKG_VERSION") }),
                ),
                ("io.modelcontextprotocol/clientCapabilities", json!({})),
            ] {
                meta.entry(key).or_insert(default);
            }
        }
    }
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

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
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    match link {
        Link::Stateless => {
            out.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(STATELESS_VERSION),
            );
            out.insert("mcp-method", HeaderValue::from_static(method));
            if let Ok(value) = HeaderValue::try_from(crate::envelope::header_text(target).as_ref())
            {
                out.insert("mcp-name", value);
            }
        }
        Link::Session { id, version } => {
            if let Some(id) = id
                && let Ok(value) = HeaderValue::try_from(id.as_str())
            {
                out.insert("mcp-session-id", value);
            }
            if let Ok(value) = HeaderValue::try_from(version.as_str()) {
                out.insert("mcp-protocol-version", value);
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
    member: &ServerConfig,
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
                let error = error_message(
                    id,
                    MEMBER_UNAVAILABLE,
                    &format!(
                        "member server \"{}\" of virtual server {name} broke off its answer (it stopped or crashed)",
                        member.name
                    ),
                );
                upstream.on_cut(Bytes::from(format!(
                    "\n\nevent: message\ndata: {error}\n\n"
                )));
            }
            if let Some(log) = audit {
                let record = audit_record(context, message, member, original);
                let call = CallAudit::new(record);
                let mut tap = Tap::new(None, vec![call], Some(log.clone()), started);
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
                let mut record = audit_record(context, message, member, original);
                record.status = status.as_u16();
                record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                log.record(&record);
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

fn audit_record(
    context: &Context<'_>,
    message: &Message<'_>,
    member: &ServerConfig,
    original: &str,
) -> AuditRecord {
    let (time, ts) = audit::now();
    let claims = context.claims.as_deref();
    AuditRecord {
        time,
        ts,
        server: context.config.name.clone(),
        member: Some(member.name.clone()),
        tool: original.to_owned(),
        subject: claims.and_then(|c| c.subject.clone()),
        client_id: claims.and_then(|c| c.client_id.clone()),
        scopes: claims.map(|c| c.scopes.clone()).unwrap_or_default(),
        decision: AuditDecision::Allow,
        status: 0,
        error_code: None,
        is_error: None,
        duration_ms: 0.0,
        request_id: message.id_text().map(str::to_owned),
        caller: context.peer.to_string(),
        via: "gateway".into(),
        arguments: (context.config.audit_arguments || member.audit_arguments)
            .then(|| message.arguments.map(|a| a.get().to_owned()))
            .flatten(),
    }
}
