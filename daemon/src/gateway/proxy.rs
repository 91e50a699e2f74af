//! The MCP proxy: forwards `ANY /api/v1/mcp/{server}/mcp` to `http://127.0.0.1:<port><path>`
//! over pooled keep-alive connections (`upstream`), streaming both bodies, rewriting headers,
//! and mapping upstream failures to JSON errors.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, LengthLimitError, Limited};
use tokio::sync::Notify;

use super::auth::Claims;
use super::conn::ClientBody;
use super::response::{self, Body, UpstreamBody};
use super::upstream::{Pool, UpstreamError};

pub static X_MCP_SUBJECT: HeaderName = HeaderName::from_static("x-mcp-subject");
pub static X_MCP_SCOPES: HeaderName = HeaderName::from_static("x-mcp-scopes");
pub static X_MCP_CLIENT_ID: HeaderName = HeaderName::from_static("x-mcp-client-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Everything the proxy needs about one request besides the request itself.
pub struct Upstream<'a> {
    pub server: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub peer: SocketAddr,
    /// `http` or `https`, from `public_url`: what the client used to reach the gateway.
    pub proto: &'static str,
    pub max_body: u64,
    pub header_timeout: Duration,
    /// `Retry-After` of a 503 when no upstream connection came free.
    pub retry_after_secs: u64,
    pub claims: Option<&'a Claims>,
    /// Woken when the server's port refuses a connection: its supervisor probes it at once.
    pub check_now: &'a Notify,
}

/// Forwards `request` and returns the upstream response with its body streaming.
pub async fn forward(
    pool: &Arc<Pool>,
    upstream: Upstream<'_>,
    request: Request<ClientBody>,
) -> Response<Body> {
    let server = upstream.server;
    let (mut parts, body) = request.into_parts();

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > upstream.max_body) {
        return too_large(server);
    }

    // Origin form: the connection already says which host and port.
    let uri = match parts.uri.query() {
        Some(query) => Uri::try_from(format!("{}?{query}", upstream.path)),
        None => Uri::try_from(upstream.path),
    };
    let Ok(uri) = uri else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "invalid request target",
            Some(server),
        );
    };
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });

    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    for name in [
        &header::AUTHORIZATION,
        &X_MCP_SUBJECT,
        &X_MCP_SCOPES,
        &X_MCP_CLIENT_ID,
        &X_FORWARDED_HOST,
        &X_FORWARDED_PROTO,
    ] {
        headers.remove(name);
    }
    if let Some(host) = original_host {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    append_forwarded_for(headers, upstream.peer);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(upstream.proto));
    if let Ok(host) = HeaderValue::try_from(format!("127.0.0.1:{}", upstream.port)) {
        headers.insert(header::HOST, host);
    }
    if let Some(claims) = upstream.claims {
        for (name, value) in [
            (&X_MCP_SUBJECT, &claims.subject_header),
            (&X_MCP_SCOPES, &claims.scopes_header),
            (&X_MCP_CLIENT_ID, &claims.client_header),
        ] {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;

    let limit = usize::try_from(upstream.max_body).unwrap_or(usize::MAX);
    let request = Request::from_parts(parts, Limited::new(body, limit));
    let result =
        tokio::time::timeout(upstream.header_timeout, pool.send(upstream.port, request)).await;
    match result {
        Err(_elapsed) => response::error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream did not answer in time",
            Some(server),
        ),
        Ok(Err(UpstreamError::Http(err))) if caused_by_length_limit(&err) => too_large(server),
        Ok(Err(err)) if err.is_refused() => {
            // The server died (or closed its listener) and its supervisor has not noticed
            // yet: the same answer as for any server that is not running, and a nudge so the
            // supervisor checks now rather than at the next probe.
            upstream.check_now.notify_one();
            tracing::info!(server, "upstream refused the connection; checking it now");
            response::unavailable(
                "server is not accepting connections",
                server,
                upstream.retry_after_secs,
            )
        }
        Ok(Err(err @ UpstreamError::Busy { .. })) => {
            tracing::warn!(server, cause = %err, "no upstream connection available");
            response::unavailable(
                "too many upstream connections; try again",
                server,
                upstream.retry_after_secs,
            )
        }
        Ok(Err(err)) if err.is_connect() => {
            upstream.check_now.notify_one();
            tracing::warn!(server, cause = %err, "cannot connect to the upstream");
            response::error(
                StatusCode::BAD_GATEWAY,
                "cannot connect to the upstream",
                Some(server),
            )
        }
        Ok(Err(err)) => {
            tracing::warn!(server, cause = %err, "upstream request failed");
            response::error(
                StatusCode::BAD_GATEWAY,
                "upstream request failed",
                Some(server),
            )
        }
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Right(UpstreamBody::new(body)))
        }
    }
}

fn too_large(server: &str) -> Response<Body> {
    response::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body is larger than gateway.max_body",
        Some(server),
    )
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip();
    let value = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
    {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

fn caused_by_length_limit(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, X-Custom-Hop".parse().unwrap(),
        );
        headers.insert("x-custom-hop", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert("proxy-connection", "keep-alive".parse().unwrap());
        headers.insert("mcp-session-id", "abc".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["mcp-session-id"], "abc");
    }
}
