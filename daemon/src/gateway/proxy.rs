//! The MCP proxy: forwards `ANY /api/v1/mcp/{server}/mcp` to `http://127.0.0.1:<port><path>`
//! over pooled keep-alive connections (`upstream`), streaming both bodies, rewriting headers,
//! and mapping upstream failures to JSON errors.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full, LengthLimitError, Limited};
use tokio::sync::Notify;

use super::auth::Claims;
use super::conn::ClientBody;
use super::headers::{self, Forwarding, remove_hop_by_hop};
use super::response::{self, Body, UpstreamBody};
use super::upstream::{Dest, Pool, UpstreamError};
use crate::remote::RemoteTarget;

/// Everything the proxy needs about one request besides the request itself.
pub struct Upstream<'a> {
    pub server: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub peer: SocketAddr,
    /// The host the client asked for, as checked by the router.
    pub host: Option<HeaderValue>,
    /// The peer is in `gateway.trusted_proxies` (its forwarding headers are kept).
    pub trusted_peer: bool,
    /// `http` or `https`, from `public_url`: what the client used to reach the gateway.
    pub proto: &'static str,
    pub max_body: u64,
    pub header_timeout: Duration,
    /// `Retry-After` of a 503 when no upstream connection came free.
    pub retry_after_secs: u64,
    pub claims: Option<&'a Claims>,
    /// Woken when the server's port refuses a connection: its supervisor probes it at once.
    pub check_now: &'a Notify,
    /// A remote server's target (`port` and `path` then unused: the URL says where).
    pub remote: Option<&'a RemoteTarget>,
}

/// A request body to forward: read whole already (an inspected POST), or streamed.
pub enum ForwardBody {
    Read(Bytes),
    Stream(ClientBody),
}

/// Forwards `request` and returns the upstream response with its body streaming.
pub async fn forward(
    pool: &Arc<Pool>,
    upstream: Upstream<'_>,
    request: Request<ForwardBody>,
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
    let path = upstream
        .remote
        .map_or(upstream.path, |remote| &remote.url.target);
    let uri = match parts.uri.query() {
        Some(query) if !path.contains('?') => Uri::try_from(format!("{path}?{query}")),
        Some(query) => Uri::try_from(format!("{path}&{query}")),
        None => super::head_memo::target(path),
    };
    let Ok(uri) = uri else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "invalid request target",
            Some(server),
        );
    };
    let headers = &mut parts.headers;
    headers::filter_request(headers, upstream.trusted_peer);
    super::head_memo::set_forwarding(
        headers,
        &Forwarding {
            peer: upstream.peer.ip(),
            host: upstream.host.as_ref(),
            proto: upstream.proto,
            trusted_peer: upstream.trusted_peer,
        },
    );
    if let Some(host) = super::head_memo::upstream_host(upstream.port) {
        headers.insert(header::HOST, host);
    }
    // The caller's identity: written by the gateway's own client as lines rendered once per
    // token (a local server), or put in the map for hyper's (a remote one).
    let mut identity: &[u8] = &[];
    if let Some(claims) = upstream.claims {
        if upstream.remote.is_some() {
            for (name, value) in claims.identity_headers() {
                headers.insert(name, value.clone());
            }
        } else {
            identity = &claims.identity_head;
        }
    }
    if let Some(remote) = upstream.remote {
        super::remote::prepare(&mut parts.headers, remote);
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;

    let limit = usize::try_from(upstream.max_body).unwrap_or(usize::MAX);
    let body = match body {
        ForwardBody::Read(bytes) => {
            // Sent with its exact length, whatever framing the client used (a single
            // `Content-Length` that already says so is kept as it is).
            parts.headers.remove(header::TRANSFER_ENCODING);
            let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
            let exact = lengths.next().is_some_and(|length| {
                length.as_bytes() == decimal(bytes.len() as u64, &mut [0; 20])
            }) && lengths.next().is_none();
            if !exact {
                let length = HeaderValue::from_bytes(decimal(bytes.len() as u64, &mut [0; 20]))
                    .expect("digits are a header value");
                parts.headers.insert(header::CONTENT_LENGTH, length);
            }
            Either::Left(Full::new(bytes))
        }
        ForwardBody::Stream(body) => Either::Right(Limited::new(body, limit)),
    };
    let request = Request::from_parts(parts, body);
    let dest = match upstream.remote {
        Some(remote) => Dest::Remote(remote),
        None => Dest::Port(upstream.port),
    };
    let deadline = tokio::time::Instant::now() + upstream.header_timeout;
    match pool.send(dest, request, deadline, identity).await {
        Err(err) if err.is_head_timeout() => response::error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream did not answer in time",
            Some(server),
        ),
        Err(err) if caused_by_length_limit(&err) => too_large(server),
        Err(err) if err.is_refused() => {
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
        Err(err @ UpstreamError::Busy { .. }) => {
            tracing::warn!(server, cause = %err, "no upstream connection available");
            response::unavailable(
                "too many upstream connections; try again",
                server,
                upstream.retry_after_secs,
            )
        }
        Err(err) if err.is_connect() => {
            upstream.check_now.notify_one();
            tracing::warn!(server, cause = %err, "cannot connect to the upstream");
            let message = match &err {
                // A remote's address and TLS failure are the operator's, and say what to fix.
                UpstreamError::Remote(err) => format!("cannot reach the remote server: {err}"),
                _ => "cannot connect to the upstream".to_owned(),
            };
            response::error(StatusCode::BAD_GATEWAY, &message, Some(server))
        }
        Err(err) => {
            tracing::warn!(server, cause = %err, "upstream request failed");
            response::error(
                StatusCode::BAD_GATEWAY,
                "upstream request failed",
                Some(server),
            )
        }
        Ok(response) => {
            if upstream.remote.is_some()
                && let Some(refusal) = super::remote::refuse_redirect(server, response.status())
            {
                return refusal;
            }
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Right(UpstreamBody::new(body)))
        }
    }
}

/// `n` in decimal, written into `buf` without an allocation.
pub(super) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// `127.0.0.1:<port>`, the `Host` of a request to a local server, written into `buf`.
pub(super) fn upstream_host(port: u16, buf: &mut [u8; 16]) -> &[u8] {
    const PREFIX: &[u8] = b"127.0.0.1:";
    let mut digits = [0; 20];
    let digits = decimal(u64::from(port), &mut digits);
    let len = PREFIX.len() + digits.len();
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..len].copy_from_slice(digits);
    &buf[..len]
}

fn too_large(server: &str) -> Response<Body> {
    response::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body is larger than gateway.max_body",
        Some(server),
    )
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
    fn numbers_are_written_without_allocating() {
        for n in [0, 7, 10, 95, 65_535, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        for port in [1, 80, 8080, 65_535] {
            assert_eq!(
                upstream_host(port, &mut [0; 16]),
                format!("127.0.0.1:{port}").as_bytes()
            );
        }
    }
}
