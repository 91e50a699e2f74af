//! What the gateway decides from an MCP POST body before forwarding it: the body is read whole
//! (within `gateway.max_body`, copied at most once), its envelope read, the 2026-07-28 routing
//! headers checked against it, and each message authorized. A refused body gets a JSON-RPC
//! error and never reaches the server; a denied `tools/call` is audited here.
//!
//! What comes back tells the response side ([`super::tap`]) which answers to filter
//! (`tools/list` for a caller who may not call every tool) and which calls to audit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use mcpd_protocol::AuditDecision;

use super::auth::Claims;
use super::conn::{BoxError, ClientBody};
use super::response::{self, Body};
use super::tap::{CallAudit, Calls, ListFilter, Tap};
use crate::audit::{AuditLog, CallEntry, CallNames};
use crate::authz::{self, Decision};
use crate::config::ServerConfig;
use crate::envelope::{self, EnvelopeError, Message};

/// Who is asking, for decisions and audit records.
pub struct Caller<'a> {
    pub claims: Option<&'a Arc<Claims>>,
    pub peer: SocketAddr,
    /// When the gateway took the request (its router's clock reading, shared so that a call
    /// reads the clock once): the start of an audit record's duration.
    pub started: Instant,
}

/// A body the gateway may forward, and what to watch in its answer.
pub struct Inspected {
    pub body: Bytes,
    pub tap: Option<Tap>,
}

/// Reads the whole body, refusing one over `max_body` with 413.
pub async fn read_body(
    body: ClientBody,
    max_body: u64,
    server: &str,
) -> Result<Bytes, Box<Response>> {
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    match collect(Limited::new(body, limit)).await {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.is::<LengthLimitError>() => Err(Box::new(response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than gateway.max_body",
            Some(server),
        ))),
        Err(err) => {
            tracing::debug!(server, error = %err, "request body was not received whole");
            Err(Box::new(response::error(
                StatusCode::BAD_REQUEST,
                "the request body was not received whole",
                Some(server),
            )))
        }
    }
}

/// The data of `body`, whole. A body that comes in one frame (a POST read with its head, the
/// usual case) is returned as that frame, without a copy or a buffer; trailers are dropped.
async fn collect(mut body: Limited<ClientBody>) -> Result<Bytes, BoxError> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(first), None) => {
                let mut joined = Vec::with_capacity(first.len() + data.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                more = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(match (first, more) {
        (_, Some(joined)) => Bytes::from(joined),
        (Some(first), None) => first,
        (None, None) => Bytes::new(),
    })
}

type Response = http::Response<Body>;

/// Decides on `body`: `Ok` to forward it (with the tap for its answer), `Err` with the answer.
pub fn inspect(
    body: Bytes,
    headers: &HeaderMap,
    config: &Arc<ServerConfig>,
    caller: &Caller<'_>,
    audit: Option<&Arc<AuditLog>>,
    metadata_url: impl FnOnce() -> String,
) -> Result<Inspected, Box<Response>> {
    let started = caller.started;
    let server = config.name.as_str();
    let envelope = match envelope::parse(&body) {
        Ok(envelope) => envelope,
        Err(err) => return Err(Box::new(rpc_error(None, &err))),
    };
    if let Err(err) = envelope::check_headers(headers, &envelope.messages, envelope.batch) {
        let id = envelope.messages.first().and_then(|m| m.id_text());
        return Err(Box::new(rpc_error(id, &err)));
    }
    let stateless = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| envelope::is_stateless_version(v.trim()));

    let scopes: &[String] = caller.claims.map_or(&[], |claims| &claims.scopes);
    if let Some(claims) = caller.claims {
        let denied: Vec<(&Message<'_>, Vec<String>)> = envelope
            .messages
            .iter()
            .filter_map(
                |message| match authz::decide(&claims.scopes, &config.oauth, message) {
                    Decision::Allow => None,
                    Decision::Deny { allowing } => Some((message, allowing)),
                },
            )
            .collect();
        if !denied.is_empty() {
            let answer = insufficient_scope(server, &denied, metadata_url());
            let Some(audit) = audit else {
                return Err(Box::new(answer));
            };
            // The whole body is refused: allowed calls of a batch did not run either. Their
            // records are queued once the refusal is written, like any answer's.
            let calls: Calls = envelope
                .messages
                .iter()
                .filter(|m| m.is_tool_call())
                .map(|message| {
                    let mut call = call_entry(config, caller, message, started);
                    call.decision = AuditDecision::Deny;
                    CallAudit::new(call)
                })
                .collect();
            if calls.is_empty() {
                return Err(Box::new(answer));
            }
            let tap = Tap::new(None, calls, Some(audit.clone()), started);
            return Err(Box::new(response::tapped(tap, answer)));
        }
    }

    // Only `tools/list` answers are filtered, and only for a caller who may not call every tool.
    let list_ids: Vec<Value> = envelope
        .messages
        .iter()
        .filter(|m| m.is_tool_list())
        .filter_map(|m| m.id.and_then(|id| serde_json::from_str(id.get()).ok()))
        .collect();
    let filter = caller
        .claims
        .filter(|claims| {
            !list_ids.is_empty() && authz::list_needs_filter(&claims.scopes, &config.oauth)
        })
        .map(|_| ListFilter {
            ids: list_ids,
            scopes: scopes.to_vec(),
            config: config.clone(),
            stateless,
        });
    let calls: Calls = match audit {
        Some(_) => envelope
            .messages
            .iter()
            .filter(|m| m.is_tool_call())
            .map(|message| CallAudit::new(call_entry(config, caller, message, started)))
            .collect(),
        None => Calls::default(),
    };
    let tap = (filter.is_some() || !calls.is_empty())
        .then(|| Tap::new(filter, calls, audit.cloned(), started));
    drop(envelope);
    Ok(Inspected { body, tap })
}

/// The audit record of `message` (a tools/call), decision allow, outcome not known yet: only
/// what the request knows, shared or moved, formatted later by the audit writer.
fn call_entry(
    config: &Arc<ServerConfig>,
    caller: &Caller<'_>,
    message: &Message<'_>,
    started: Instant,
) -> CallEntry {
    CallEntry {
        started,
        server: config.clone(),
        via_virtual: None,
        claims: caller.claims.cloned(),
        names: CallNames::new(
            message.name.as_deref().unwrap_or_default(),
            message.id_text(),
        ),
        peer: caller.peer,
        arguments: config
            .audit_arguments
            .then(|| message.arguments.map(|a| Box::from(a.get())))
            .flatten(),
        decision: AuditDecision::Allow,
        status: 0,
        error_code: None,
        is_error: None,
        duration: std::time::Duration::ZERO,
    }
}

/// 400 with a JSON-RPC error object (the id of the offending message when known).
pub fn rpc_error(id: Option<&str>, err: &EnvelopeError) -> Response {
    let id: Value = id
        .and_then(|id| serde_json::from_str(id).ok())
        .unwrap_or(Value::Null);
    response::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": err.code, "message": err.message },
        }),
    )
}

/// 403 with the MCP step-up challenge: every scope that would allow the refused calls.
pub(super) fn insufficient_scope(
    server: &str,
    denied: &[(&Message<'_>, Vec<String>)],
    metadata_url: String,
) -> Response {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in denied.iter().flat_map(|(_, allowing)| allowing) {
        if !scopes.contains(&scope.as_str()) {
            scopes.push(scope);
        }
    }
    let tools: Vec<&str> = denied
        .iter()
        .filter_map(|(message, _)| message.name.as_deref())
        .collect();
    let message = match tools.as_slice() {
        [tool] => format!("the token may not call the tool \"{tool}\""),
        _ => format!("the token may not call the tools {tools:?}"),
    };
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata_url}\"",
        scopes.join(" ")
    );
    let mut answer = response::json(
        StatusCode::FORBIDDEN,
        &serde_json::json!({
            "error": message,
            "server": server,
            "tool": tools.first(),
            "tools": tools,
            "required_scopes": scopes,
        }),
    );
    if let Ok(value) = http::HeaderValue::try_from(challenge) {
        answer
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    answer
}
