//! A virtual server's endpoint `/api/v1/mcp/<virtual>/mcp`, served by mcpd itself: the
//! lifecycle (`initialize`, `ping`, 2026-07-28 `server/discover`: `handshake`) and
//! `tools/list` (`listing`) are answered here from the members' cached tools (a slow member
//! never delays a list);
//! `tools/call` is authorized against the member's and the virtual server's rules and
//! forwarded to the member with its own tool name (`call`); a listening GET stream gets
//! `notifications/tools/list_changed` when the caller's view changes (`listen`). Prompts and
//! resources are listed from the members' cached lists and `prompts/get`/`resources/read`
//! routed to the member that offers them (`offered`). Each caller has at most
//! `max_calls_per_caller` requests in flight at members (`slots`).
//!
//! Sessions: a 2025-11-25 client gets a sealed session id (`crate::virtuals::seal`) holding
//! the negotiated version and the caller's identity, so nothing is stored per session: any
//! mcpd with the same key continues it. An id that does not open, or was issued to another
//! caller, is answered 404 (session not found), as the protocol says.

mod access;
#[cfg(test)]
mod allocations;
mod backchannel;
mod call;
mod cancel;
mod ended;
mod handshake;
mod links;
mod listen;
mod listing;
mod offered;
mod opened;
mod refresh;
mod slots;
mod splice;
mod subscriptions;
mod unavailable;
mod watch;

use listing::visible;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::auth::Claims;
use super::conn::ClientBody;
use super::response::{self, Body};
use super::upstream::Pool;
use super::{Live, Shared, inspect};
use crate::config::VirtualConfig;
use crate::envelope::{self, INVALID_REQUEST};
pub use crate::virtuals::catalog_of;
use crate::virtuals::seal::{self, SessionKey};

/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC "invalid params": also an unknown tool.
const INVALID_PARAMS: i64 = -32602;
/// A member is not running, could not be reached, or broke off: the message names it.
pub const MEMBER_UNAVAILABLE: i64 = -32011;
/// The caller already has `max_calls_per_caller` requests in flight through the virtual
/// server: refused at once, never queued.
pub const CALLER_BUSY: i64 = -32012;
/// MCP's "resource not found".
const RESOURCE_NOT_FOUND: i64 = -32002;
/// Session-based versions a client may negotiate.
const SESSION_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const STATELESS_VERSION: &str = "2026-07-28";

/// What the gateway keeps for virtual servers: the session key (loaded once) and the member
/// sessions.
#[derive(Debug, Default)]
pub struct VirtualState {
    key: OnceLock<Result<Arc<SessionKey>, String>>,
    /// Session ids that opened, so later requests skip the AEAD.
    opened: opened::Opened,
    links: links::Links,
    catalogs: crate::virtuals::CatalogCache,
    slots: slots::Slots,
    /// Requests of members relayed to callers, waiting for their answers.
    relays: Arc<backchannel::Relays>,
    /// Resource subscriptions, by session (or 2026-07-28 listen request).
    subscriptions: Arc<subscriptions::Subscriptions>,
    /// Member processes whose session streams are read for their own list changes.
    watches: watch::Watches,
    /// Sessions their clients ended with DELETE (on this mcpd; bounded).
    ended: std::sync::Mutex<std::collections::HashSet<u64>>,
}

/// Most ended sessions remembered; past it the oldest knowledge is dropped (an ended id then
/// works again until it expires, which a client that ended it has no reason to try).
const MAX_ENDED: usize = 100_000;

impl VirtualState {
    fn ended(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl VirtualState {
    fn key(&self, live: &Live) -> Option<Arc<SessionKey>> {
        let loaded = self.key.get_or_init(|| {
            SessionKey::load_or_create(&live.config.state_dir)
                .map(Arc::new)
                .map_err(|err| {
                    tracing::error!(error = %err, "cannot load the session key of virtual servers; their clients get no session id");
                    err.to_string()
                })
        });
        loaded.as_ref().ok().cloned()
    }
}

/// One request to a virtual server, with what every step needs.
struct Context<'a> {
    shared: &'a Shared,
    pool: &'a Arc<Pool>,
    live: &'a Live,
    peer: SocketAddr,
    host: Option<HeaderValue>,
    config: Arc<VirtualConfig>,
    claims: Option<Arc<Claims>>,
    /// Member sessions are cached under this: the caller's session, or its identity.
    session: u64,
    /// The caller speaks 2026-07-28.
    stateless: bool,
    /// The caller has a (sealed) session, and what it declared it can answer.
    has_session: bool,
    capabilities: crate::stdio::Capabilities,
}

pub(super) async fn serve(
    shared: &Shared,
    pool: &Arc<Pool>,
    live: &Live,
    peer: SocketAddr,
    host: Option<HeaderValue>,
    config: Arc<VirtualConfig>,
    request: Request<ClientBody>,
) -> Response<Body> {
    let name = config.name.as_str();
    if !config.enabled {
        return response::error(StatusCode::NOT_FOUND, "server is disabled", Some(name));
    }
    let claims = match super::router::admit(
        shared,
        live,
        name,
        &config.oauth,
        &config.endpoint,
        &request,
    ) {
        Ok(claims) => claims,
        Err(refusal) => return *refusal,
    };
    let principal = principal_of(claims.as_deref());
    let key = shared.virtuals.key(live);
    // A session id that does not open is no session of ours: 404, whatever the method.
    let facts = match request.headers().get("mcp-session-id") {
        None => None,
        Some(id) => {
            let opened = key.as_ref().and_then(|key| {
                shared
                    .virtuals
                    .opened
                    .open(key, name, id.to_str().ok()?, SystemTime::now())
                    .filter(|facts| facts.principal == principal)
                    .filter(|facts| !shared.virtuals.ended().contains(&facts.nonce))
            });
            match opened {
                Some(facts) => Some(facts),
                None => {
                    return response::error(
                        StatusCode::NOT_FOUND,
                        "session not found (start a new one with initialize)",
                        Some(name),
                    );
                }
            }
        }
    };
    let stateless = request
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| envelope::is_stateless_version(v.trim()));
    let session = facts
        .as_ref()
        .map_or_else(|| identity_number(&principal), |facts| facts.nonce);
    let context = Context {
        shared,
        pool,
        live,
        peer,
        host,
        config: config.clone(),
        claims,
        session,
        stateless,
        has_session: facts.is_some(),
        capabilities: facts.as_ref().map_or_else(Default::default, |facts| {
            crate::stdio::Capabilities::from_bits(facts.capabilities)
        }),
    };
    match *request.method() {
        Method::POST => post(&context, key.as_deref(), &principal, request).await,
        Method::GET if facts.is_some() => {
            shared.virtuals.watches.ensure_members(&context).await;
            listen::open(&context)
        }
        Method::DELETE if facts.is_some() => {
            let member_sessions = shared.virtuals.links.end(session);
            shared.virtuals.subscriptions.end(session);
            {
                let mut ended = shared.virtuals.ended();
                if ended.len() >= MAX_ENDED {
                    ended.clear();
                }
                ended.insert(session);
            }
            ended::end_member_sessions(&context, request.headers(), member_sessions).await;
            Response::new(response::full(Bytes::new()))
        }
        _ => {
            let mut answer = response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "a virtual server takes POST (and GET or DELETE with a session)",
                Some(name),
            );
            answer
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            answer
        }
    }
}

impl Context<'_> {
    /// Who the per-caller cap counts: the token's subject (or client), else the peer's
    /// address.
    fn caller(&self) -> Caller<'_> {
        let claims = self.claims.as_deref();
        if let Some(subject) = claims.and_then(|c| c.subject.as_deref()) {
            return Caller::Subject(subject);
        }
        if let Some(client) = claims.and_then(|c| c.client_id.as_deref()) {
            return Caller::Client(client);
        }
        Caller::Peer(self.peer.ip())
    }

    /// The catalog of the virtual server now.
    fn catalog(&self) -> Arc<crate::virtuals::Catalog> {
        self.shared
            .virtuals
            .catalogs
            .get(&self.shared.directory, &self.config)
    }
}

/// The principal of `claims` (see [`seal::principal`]); a caller without a token's is worked
/// out once.
fn principal_of(claims: Option<&Claims>) -> std::borrow::Cow<'static, str> {
    static ANONYMOUS: OnceLock<String> = OnceLock::new();
    match claims {
        Some(claims) if claims.subject.is_some() || claims.client_id.is_some() => {
            std::borrow::Cow::Owned(seal::principal(
                claims.subject.as_deref(),
                claims.client_id.as_deref(),
            ))
        }
        _ => std::borrow::Cow::Borrowed(ANONYMOUS.get_or_init(|| seal::principal(None, None))),
    }
}

/// Whom the per-caller cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller<'a> {
    Subject(&'a str),
    Client(&'a str),
    Peer(std::net::IpAddr),
}

/// A number naming a caller without a session (its member sessions are shared).
fn identity_number(principal: &str) -> u64 {
    u64::from_str_radix(principal.get(..16).unwrap_or("0"), 16).unwrap_or(0)
}

async fn post(
    context: &Context<'_>,
    key: Option<&SessionKey>,
    principal: &str,
    request: Request<ClientBody>,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let (parts, body) = request.into_parts();
    let bytes = match inspect::read_body(body, context.live.config.gateway.max_body, name).await {
        Ok(bytes) => bytes,
        Err(answer) => return *answer,
    };
    let envelope = match envelope::parse(&bytes) {
        Ok(envelope) => envelope,
        Err(err) => return inspect::rpc_error(None, &err),
    };
    if let Err(err) = envelope::check_headers(&parts.headers, &envelope.messages, envelope.batch) {
        let id = envelope.messages.first().and_then(|m| m.id_text());
        return inspect::rpc_error(id, &err);
    }
    let Some(message) = envelope.messages.first().filter(|_| !envelope.batch) else {
        let err = envelope::EnvelopeError {
            code: INVALID_REQUEST,
            message: "a virtual server takes one JSON-RPC message per request, not a batch".into(),
        };
        return inspect::rpc_error(None, &err);
    };
    let id = message.id;
    let Some(method) = message.method.as_deref() else {
        // An answer to a member's request relayed to this caller.
        return backchannel::answer(context, context.has_session, &bytes).await;
    };
    if id.is_none() {
        if method == "notifications/cancelled" {
            cancel::cancel(context, &parts.headers, bytes.clone()).await;
        }
        // Other notifications (initialized, ...): nothing to do.
        return accepted();
    }
    match method {
        "initialize" => handshake::initialize(context, key, principal, id, &bytes),
        "ping" => rpc_result(id, json!({})),
        "server/discover" => rpc_result(id, handshake::discover(context)),
        "tools/list" => rpc_raw_result(id, &listing::list(context)),
        "subscriptions/listen" => {
            context
                .shared
                .virtuals
                .watches
                .ensure_members(context)
                .await;
            listen::subscribe(context, message, &bytes).await
        }
        "tools/call" => call::call(context, message, &parts.headers, bytes.clone()).await,
        "prompts/list" | "resources/list" | "resources/templates/list" => {
            offered::list(context, message)
        }
        "prompts/get" => offered::get_prompt(context, message, &parts.headers, &bytes).await,
        "resources/read" => offered::read(context, message, &parts.headers, &bytes).await,
        "resources/subscribe" | "resources/unsubscribe" => {
            subscription(context, message, method == "resources/subscribe").await
        }
        other => rpc_error(
            id,
            METHOD_NOT_FOUND,
            &format!("virtual server {name} does not offer {other:?}"),
        ),
    }
}

/// `resources/subscribe` or `resources/unsubscribe` of a session's caller.
async fn subscription(
    context: &Context<'_>,
    message: &envelope::Message<'_>,
    subscribe: bool,
) -> Response<Body> {
    let id = message.id;
    let name = context.config.name.as_str();
    if !context.has_session || context.stateless {
        return rpc_error(
            id,
            INVALID_REQUEST,
            &format!(
                "virtual server {name}: resources/subscribe needs a session (initialize first); a 2026-07-28 client subscribes with subscriptions/listen"
            ),
        );
    }
    let Some(uri) = message.uri.as_deref() else {
        return rpc_error(id, INVALID_PARAMS, "params.uri is missing");
    };
    let done = if subscribe {
        subscriptions::subscribe(context, message, context.session, uri).await
    } else {
        subscriptions::unsubscribe(context, context.session, uri).await
    };
    match done {
        Ok(()) => rpc_result(id, json!({})),
        Err((code, why)) => rpc_error(id, code, &why),
    }
}

fn accepted() -> Response<Body> {
    let mut answer = Response::new(response::full(Bytes::new()));
    *answer.status_mut() = StatusCode::ACCEPTED;
    answer
}

/// A JSON-RPC answer whose result is JSON text already written.
fn rpc_raw_result(id: Option<&RawValue>, result: &str) -> Response<Body> {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        jsonrpc: &'static str,
        id: Value,
        result: &'a RawValue,
    }
    match serde_json::from_str::<&RawValue>(result) {
        Ok(result) => json_answer(&Answer {
            jsonrpc: "2.0",
            id: id_value(id),
            result,
        }),
        Err(err) => rpc_error(id, -32603, &format!("cannot write the tool list: {err}")),
    }
}

pub(super) fn id_value(id: Option<&RawValue>) -> Value {
    id.and_then(|id| serde_json::from_str(id.get()).ok())
        .unwrap_or(Value::Null)
}

fn json_answer(value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"cannot write the answer"}}"#
            .to_owned()
    });
    let mut answer = Response::new(response::full(text));
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

fn rpc_result(id: Option<&RawValue>, result: Value) -> Response<Body> {
    json_answer(&json!({ "jsonrpc": "2.0", "id": id_value(id), "result": result }))
}

fn rpc_error(id: Option<&RawValue>, code: i64, message: &str) -> Response<Body> {
    json_answer(&error_message(id, code, message))
}

fn error_message(id: Option<&RawValue>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id_value(id),
        "error": { "code": code, "message": message },
    })
}

/// Headers of the client's request that go on to a member.
fn passed_on(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [http::header::USER_AGENT, http::header::ACCEPT_LANGUAGE] {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    out
}
