//! Streamable HTTP in front of a stdio server: `POST` carries one JSON-RPC message (answered
//! as JSON, or as an SSE stream when the caller asked for progress), `GET` opens the
//! session's notification stream, `DELETE` ends the session.
//!
//! Toward clients this speaks both generations: the session-based one (2024-11-05 to
//! 2025-11-25, `initialize` + `Mcp-Session-Id`) and the stateless one (2026-07-28,
//! `server/discover`, metadata in each request's `_meta`, no session). `initialize`,
//! `server/discover`, `ping` and `notifications/initialized` are answered here from the
//! child's own `initialize` answer; every other request goes to the child through the
//! [`Bridge`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::value::RawValue;

use super::Options;
use super::body::{BridgeBody, sse_event};
use super::bridge::{AnswerRefused, Bridge, Caller, Capabilities};
use super::envelope::{self, Envelope, Kind};
use super::sessions::Session;

pub(super) const SESSION_HEADER: &str = "mcp-session-id";
/// Protocol versions a client may negotiate with mcpd for a stdio server.
pub const CLIENT_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The stateless generation: `server/discover`, no session, metadata in every request.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// Answers one request to a stdio server; `body` is the whole request body.
pub async fn serve(
    bridge: &Arc<Bridge>,
    parts: &http::request::Parts,
    body: Bytes,
    options: &Options,
) -> Response<BridgeBody> {
    match parts.method {
        Method::POST => post(bridge, parts, body, options).await,
        Method::GET => get(bridge, parts, options.keep_alive),
        Method::DELETE => delete(bridge, parts),
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            response
        }
    }
}

pub(super) fn plain(status: StatusCode, message: &str) -> Response<BridgeBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, Bytes::from(body))
}

fn json(status: StatusCode, body: Bytes) -> Response<BridgeBody> {
    let mut response = Response::new(BridgeBody::Full(Some(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON-RPC error answered over HTTP `status`.
fn rpc_error(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response<BridgeBody> {
    let id = id.map_or("null", RawValue::get);
    json(
        status,
        Bytes::from(envelope::render_error(id, code, message)),
    )
}

fn accepts_sse(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

/// The session the request names: 400 without `Mcp-Session-Id`, 404 for an unknown one.
#[allow(clippy::result_large_err)]
fn session(
    bridge: &Bridge,
    parts: &http::request::Parts,
) -> Result<Arc<Session>, Response<BridgeBody>> {
    let Some(id) = parts.headers.get(SESSION_HEADER) else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "Mcp-Session-Id is required (send initialize first)",
        ));
    };
    let session = id
        .to_str()
        .ok()
        .and_then(|id| bridge.sessions.get(id))
        .ok_or_else(|| {
            plain(
                StatusCode::NOT_FOUND,
                "unknown or expired session; initialize again",
            )
        })?;
    session.touch();
    Ok(session)
}

async fn post(
    bridge: &Arc<Bridge>,
    parts: &http::request::Parts,
    body: Bytes,
    options: &Options,
) -> Response<BridgeBody> {
    if envelope::too_deep(&body, envelope::MAX_DEPTH) {
        let why = format!(
            "the message nests deeper than {} levels",
            envelope::MAX_DEPTH
        );
        return rpc_error(StatusCode::BAD_REQUEST, None, -32600, &why);
    }
    let message = match Envelope::parse(&body) {
        Ok(message) => message,
        Err(why) => return rpc_error(StatusCode::BAD_REQUEST, None, -32700, &why),
    };
    let kind = match message.kind() {
        Ok(kind) => kind,
        Err(why) => return rpc_error(StatusCode::BAD_REQUEST, None, -32600, &why),
    };
    let method = message.method.as_deref().unwrap_or_default();
    if kind == Kind::Request && method == "initialize" {
        return initialize(bridge, &message);
    }
    if kind == Kind::Request && method == "server/discover" {
        return discover(bridge, &message);
    }
    // The stateless generation: no session; each request carries its own metadata.
    let has_session = parts.headers.contains_key(SESSION_HEADER);
    let stateless = !has_session
        && envelope::stateless_version(message.params).is_some_and(|v| v == STATELESS_VERSION);
    let session = if stateless || (kind != Kind::Request && !has_session) {
        None
    } else {
        match session(bridge, parts) {
            Ok(session) => Some(session),
            Err(refusal) => return refusal,
        }
    };
    let session_id = session.as_ref().map(|session| session.id.clone());
    match kind {
        Kind::Notification => {
            if method == "notifications/cancelled"
                && let Some(session) = &session_id
                && let Some(request) = envelope::cancelled_request(message.params)
            {
                bridge.cancel(session, &request, None);
            }
            // `initialized` was said once by mcpd; other client notifications concern
            // server-to-client requests, which mcpd does not relay.
            accepted()
        }
        // An answer to a request of the child that mcpd relayed to this caller.
        Kind::Response => match bridge.answer_relayed(session_id.as_deref(), &message) {
            Ok(()) => accepted(),
            Err(refused) => {
                tracing::info!(server = %bridge.name(), ?refused, "refused a client's answer to a request it was not sent");
                let why = match refused {
                    AnswerRefused::Unknown => {
                        "no request of the server is waiting for an answer with this id"
                    }
                    AnswerRefused::OtherSession => {
                        "this request of the server was sent to another session"
                    }
                };
                plain(StatusCode::BAD_REQUEST, why)
            }
        },
        Kind::Request => {
            let Some(id) = message.id else {
                return accepted();
            };
            if method == "ping" {
                return json(
                    StatusCode::OK,
                    Bytes::from(envelope::render_response(id.get(), Some("{}"), None)),
                );
            }
            let wants_progress = envelope::progress_token(message.params).is_some();
            let sse = accepts_sse(parts);
            let caller = Caller {
                capabilities: session
                    .as_ref()
                    .map(|session| session.capabilities)
                    .unwrap_or_default(),
                cannot_take: if stateless {
                    Some("speaks 2026-07-28, whose servers send no requests on a stream")
                } else if !sse {
                    Some("does not accept text/event-stream")
                } else {
                    None
                },
            };
            let call = bridge
                .call(session_id, Some(caller), id, method, message.params)
                .await;
            let mut call = match call {
                Ok(call) => call,
                Err(answer) => return json(StatusCode::OK, answer),
            };
            if wants_progress && sse {
                return stream_call(call, None, options.keep_alive);
            }
            // Answered as JSON, unless the child asks the caller something first: then the
            // answer becomes an SSE stream that starts with the child's request.
            let first = tokio::time::timeout(options.answer_timeout, async {
                tokio::select! {
                    biased;
                    answer = &mut call.done => Ok(answer),
                    Some(request) = call.requests.recv() => Err(request),
                }
            })
            .await;
            match first {
                Ok(Err(request)) => stream_call(call, Some(request), options.keep_alive),
                Ok(Ok(answer)) => {
                    call.finish();
                    json(StatusCode::OK, answer.unwrap_or_default())
                }
                // Dropping the call cancels it at the child.
                Err(_) => rpc_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    Some(id),
                    -32603,
                    &format!(
                        "server \"{}\" did not answer within {:?} (gateway.body_idle_timeout)",
                        bridge.name(),
                        options.answer_timeout
                    ),
                ),
            }
        }
    }
}

fn accepted() -> Response<BridgeBody> {
    let mut response = Response::new(BridgeBody::Full(None));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn sse_response(stream: BridgeBody) -> Response<BridgeBody> {
    let mut response = Response::new(stream);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// An SSE comment that keeps a quiet stream from being taken for a stalled one.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The call's progress notifications and the child's requests to the caller (after `first`,
/// one already taken), then its answer, as SSE events; a keep-alive comment whenever nothing
/// came for `keep_alive` (the child may be waiting on a person's answer).
fn stream_call(
    call: super::bridge::Call,
    first: Option<Bytes>,
    keep_alive: Duration,
) -> Response<BridgeBody> {
    let first = futures::stream::iter(first.map(|request| Bytes::from(sse_event(&request))));
    let events = futures::stream::unfold(Some(call), move |call| async move {
        let mut call = call?;
        tokio::select! {
            biased;
            Some(progress) = call.progress.recv() => Some((Bytes::from(sse_event(&progress)), Some(call))),
            Some(request) = call.requests.recv() => Some((Bytes::from(sse_event(&request)), Some(call))),
            () = tokio::time::sleep(keep_alive) => Some((Bytes::from_static(KEEP_ALIVE), Some(call))),
            answer = &mut call.done => {
                call.finish();
                let answer = answer.unwrap_or_default();
                let mut out = Vec::new();
                while let Ok(progress) = call.progress.try_recv() {
                    out.extend(sse_event(&progress));
                }
                out.extend(sse_event(&answer));
                Some((Bytes::from(out), None))
            }
        }
    });
    sse_response(BridgeBody::Stream(Box::pin(futures::StreamExt::chain(
        first, events,
    ))))
}

fn initialize(bridge: &Arc<Bridge>, message: &Envelope<'_>) -> Response<BridgeBody> {
    let id = message.id;
    let Some(init) = bridge.init_info() else {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            -32603,
            &format!("server \"{}\" is not initialized yet; retry", bridge.name()),
        );
    };
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(rename = "protocolVersion", borrow)]
        protocol_version: Option<std::borrow::Cow<'a, str>>,
    }
    let asked = message
        .params
        .and_then(|params| serde_json::from_str::<Params<'_>>(params.get()).ok())
        .and_then(|params| params.protocol_version)
        .filter(|version| CLIENT_VERSIONS.contains(&version.as_ref()))
        .map(|version| version.into_owned());
    let version = asked.unwrap_or_else(|| init.protocol_version.clone());
    let version_json = serde_json::to_string(&version).unwrap_or_default();
    let Some(result) = envelope::replace_key(&init.result, "protocolVersion", &version_json) else {
        return rpc_error(
            StatusCode::BAD_GATEWAY,
            id,
            -32603,
            "the server's initialize result is not an object",
        );
    };
    let capabilities = Capabilities::of_initialize(message.params);
    let (session, evicted) = bridge.sessions.open(version, capabilities);
    if let Some(evicted) = evicted {
        bridge.cancel_session(&evicted);
    }
    let id = id.map_or("null", RawValue::get);
    let mut response = json(
        StatusCode::OK,
        Bytes::from(envelope::render_response(id, Some(&result), None)),
    );
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// `server/discover` (2026-07-28): the child's capabilities and identity from its own
/// `initialize` answer, with every version mcpd speaks toward clients.
fn discover(bridge: &Arc<Bridge>, message: &Envelope<'_>) -> Response<BridgeBody> {
    let id = message.id;
    let Some(init) = bridge.init_info() else {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            -32603,
            &format!("server \"{}\" is not initialized yet; retry", bridge.name()),
        );
    };
    let child: serde_json::Value = serde_json::from_str(init.result.get()).unwrap_or_default();
    let mut versions: Vec<&str> = CLIENT_VERSIONS.to_vec();
    versions.push(STATELESS_VERSION);
    let mut result = serde_json::json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": child.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
        "ttlMs": 0,
        "cacheScope": "public",
        "_meta": {"io.modelcontextprotocol/serverInfo": child.get("serverInfo").cloned().unwrap_or_default()},
    });
    if let Some(instructions) = child.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = instructions.clone();
    }
    let id = id.map_or("null", RawValue::get);
    json(
        StatusCode::OK,
        Bytes::from(envelope::render_response(
            id,
            Some(&result.to_string()),
            None,
        )),
    )
}

fn get(
    bridge: &Arc<Bridge>,
    parts: &http::request::Parts,
    keep_alive: Duration,
) -> Response<BridgeBody> {
    let session = match session(bridge, parts) {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    if !accepts_sse(parts) {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            "GET needs Accept: text/event-stream",
        );
    }
    let receiver = session.open_stream();
    let events = futures::stream::unfold(receiver, move |mut receiver| async move {
        tokio::select! {
            message = receiver.recv() => Some((Bytes::from(sse_event(&message?)), receiver)),
            () = tokio::time::sleep(keep_alive) => Some((Bytes::from_static(KEEP_ALIVE), receiver)),
        }
    });
    sse_response(BridgeBody::Stream(Box::pin(events)))
}

fn delete(bridge: &Arc<Bridge>, parts: &http::request::Parts) -> Response<BridgeBody> {
    let session = match session(bridge, parts) {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    bridge.sessions.close(&session.id);
    bridge.cancel_session(&session.id);
    let mut response = Response::new(BridgeBody::Full(None));
    *response.status_mut() = StatusCode::OK;
    response
}
