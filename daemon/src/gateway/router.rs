//! Routing of one request: `Host`/`Origin` checks, then the registry, metadata, health,
//! metrics, or the MCP proxy behind the bearer-token checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, ORIGIN};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;

use super::auth::{self, Claims};
use super::authority;
use super::conn::ClientBody;
use super::inspect::{self, Caller};
use super::proxy::{self, ForwardBody, Upstream};
use super::registry::{self, resource_metadata_url};
use super::response::{self, Body};
use super::tap::Tap;
use super::upstream::Pool;
use super::{Live, MAX_HEAD_BYTES, MAX_URI_BYTES, Shared, guard, query, web};
use crate::config::OAuthConfig;
use crate::directory::ServerState;
use crate::metrics::ReasonLabel;

const MCP_PREFIX: &str = "/api/v1/mcp/";
const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource/api/v1/mcp/";

/// Where a request path leads; the names are borrowed from the path, undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Metrics,
    Registry,
    Metadata(&'a str),
    Mcp(&'a str),
    Web(web::WebRoute<'a>),
    NotFound,
}

/// `{prefix}{name}/mcp` -> `name` (one path segment, not empty).
fn server_segment<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let name = path.strip_prefix(prefix)?.strip_suffix("/mcp")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The route of a request path (the path alone: no query, no percent-decoding).
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/api/v1/mcp/registry" => Route::Registry,
        _ => {
            if let Some(page) = web::route(path) {
                Route::Web(page)
            } else if let Some(name) = server_segment(path, METADATA_PREFIX) {
                Route::Metadata(name)
            } else if let Some(name) = server_segment(path, MCP_PREFIX) {
                Route::Mcp(name)
            } else {
                Route::NotFound
            }
        }
    }
}

pub(super) async fn handle(
    shared: &Shared,
    upstream: &Arc<Pool>,
    bound: SocketAddr,
    peer: SocketAddr,
    request: Request<ClientBody>,
) -> Response<Body> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return response::error(StatusCode::URI_TOO_LONG, "request target is too long", None);
    }
    // hyper caps its read buffer, but a head read in one go can be larger: hold every
    // request to the same limit.
    let head_len: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if head_len > MAX_HEAD_BYTES {
        return response::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers are too large",
            None,
        );
    }
    // The target shares the buffer hyper read the head into: owning it costs no copy, and
    // the server's name borrowed from it outlives the request handed on below.
    let target = request.uri().path_and_query().cloned();
    let route = route(target.as_ref().map_or("", |target| target.path()));
    let live = shared.live.load_full();
    let server = match route {
        Route::Metadata(name) | Route::Mcp(name) => Some(name),
        _ => None,
    };
    // Health checks come from load balancers that may use any Host; the answer reveals nothing.
    let host = if matches!(route, Route::Healthz) {
        None
    } else {
        match check_rebinding(&live, bound, &request, server) {
            Ok(host) => Some(host),
            Err(refusal) => return *refusal,
        }
    };

    let is_get = matches!(*request.method(), Method::GET | Method::HEAD);
    match route {
        Route::Healthz => response::json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Route::Registry if is_get => registry::registry(&shared.directory),
        Route::Metadata(name) if is_get => {
            registry::resource_metadata(&shared.directory, &live.config, name)
        }
        Route::Metrics if is_get => match &shared.metrics {
            Some(metrics) => {
                let mut response = Response::new(response::full(metrics.render()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            None => response::error(StatusCode::NOT_FOUND, "not found", None),
        },
        Route::Web(page) if is_get => web::respond(&shared.directory, &live.config, page),
        Route::Registry | Route::Metadata(_) | Route::Metrics | Route::Web(_) => {
            let mut response =
                response::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", server);
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        Route::Mcp(name) => {
            let started = Instant::now();
            let mut response =
                mcp(shared, upstream, &live, peer, host, name, request, started).await;
            record(shared, name, &mut response, started);
            response
        }
        Route::NotFound => response::error(StatusCode::NOT_FOUND, "not found", None),
    }
}

/// The Host/Origin checks (DNS-rebinding protection): 400 when the host a request names is
/// missing, doubled or not `uri-host [":" port]`, 403 when it is not one the gateway answers
/// or when `Origin` is doubled or not allowed. Returns the checked host, as a header value.
fn check_rebinding(
    live: &Live,
    bound: SocketAddr,
    request: &Request<ClientBody>,
    server: Option<&str>,
) -> Result<HeaderValue, Box<Response<Body>>> {
    let gateway = &live.config.gateway;
    let authority = request.uri().authority().map(|a| a.as_str());
    let host = guard::request_host(request.version(), authority, request.headers())
        .map_err(|why| Box::new(response::error(StatusCode::BAD_REQUEST, why, server)))?;
    let parsed = authority::parse(host).map_err(|err| {
        Box::new(response::error(
            StatusCode::BAD_REQUEST,
            &format!("invalid Host: {err}"),
            server,
        ))
    })?;
    if !guard::host_allowed(&parsed, gateway, bound) {
        return Err(Box::new(response::error(
            StatusCode::FORBIDDEN,
            "Host not allowed (add it to gateway.allowed_hosts)",
            server,
        )));
    }
    let mut origins = request.headers().get_all(ORIGIN).iter();
    if let Some(origin) = origins.next()
        && (origins.next().is_some()
            || !origin
                .to_str()
                .is_ok_and(|origin| guard::origin_allowed(origin, gateway, bound)))
    {
        return Err(Box::new(response::error(
            StatusCode::FORBIDDEN,
            "Origin not allowed (add it to gateway.allowed_origins; send one Origin)",
            server,
        )));
    }
    // Usually the client's own `Host` value: a clone of it shares its bytes.
    if let Some(value) = request.headers().get(http::header::HOST)
        && value.as_bytes() == host.as_bytes()
    {
        return Ok(value.clone());
    }
    HeaderValue::from_str(host).map_err(|_| {
        Box::new(response::error(
            StatusCode::BAD_REQUEST,
            "invalid Host",
            server,
        ))
    })
}

/// Counts the request, its time to response headers and, while it streams, its body.
fn record(shared: &Shared, name: &str, response: &mut Response<Body>, started: Instant) {
    let Some(metrics) = &shared.metrics else {
        return;
    };
    // Names of unknown servers come from clients: never let them mint label sets.
    if shared.directory.get(name).is_none() && shared.directory.get_virtual(name).is_none() {
        return;
    }
    let server = metrics.server(name);
    server.count(response.status().as_u16());
    server.latency.observe(started.elapsed().as_secs_f64());
    if let Either::Right(body) = response.body_mut() {
        body.track(server.active_streams.clone());
    }
}

fn auth_failed(shared: &Shared, reason: &'static str) {
    if let Some(metrics) = &shared.metrics {
        metrics
            .auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

#[allow(clippy::too_many_arguments)]
async fn mcp(
    shared: &Shared,
    pool: &Arc<Pool>,
    live: &Live,
    peer: SocketAddr,
    host: Option<HeaderValue>,
    name: &str,
    request: Request<ClientBody>,
    started: Instant,
) -> Response<Body> {
    let Some(entry) = shared.directory.get(name) else {
        if let Some(config) = shared.directory.get_virtual(name) {
            return super::virtual_server::serve(shared, pool, live, peer, host, config, request)
                .await;
        }
        return response::error(StatusCode::NOT_FOUND, "unknown server", Some(name));
    };
    let config = entry.config.load_full();
    if !config.enabled {
        return response::error(StatusCode::NOT_FOUND, "server is disabled", Some(name));
    }
    let claims = match admit(
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

    // A POST carries JSON-RPC: read it, check it and decide on it before anything is sent.
    let (mut parts, body) = request.into_parts();
    let mut tap = None;
    let body = if parts.method == Method::POST {
        let max_body = live.config.gateway.max_body;
        let bytes = match inspect::read_body(body, max_body, name).await {
            Ok(bytes) => bytes,
            Err(answer) => return *answer,
        };
        let caller = Caller {
            claims: claims.as_ref(),
            peer,
            started,
        };
        let metadata = || resource_metadata_url(&live.config.gateway.public_url, name);
        match inspect::inspect(
            bytes,
            &parts.headers,
            &config,
            &caller,
            shared.audit.as_ref(),
            metadata,
        ) {
            Ok(inspected) => {
                tap = inspected.tap;
                ForwardBody::Read(inspected.body)
            }
            Err(answer) => return *answer,
        }
    } else {
        ForwardBody::Stream(body)
    };
    if tap.as_ref().is_some_and(Tap::filters) {
        // A filtered answer is read and rewritten: ask for it uncompressed.
        parts.headers.remove(ACCEPT_ENCODING);
    }
    let request = Request::from_parts(parts, body);

    let status = entry.status.load();
    if status.state != ServerState::Running {
        let message = format!("server is {}", status.state);
        return finish(
            tap,
            response::unavailable(&message, name, shared.options.retry_after_secs),
        );
    }
    if let Some(target) = entry.stdio.load_full() {
        drop(status);
        let gateway = &live.config.gateway;
        let options = crate::stdio::Options {
            retry_after_secs: shared.options.retry_after_secs,
            slot_wait: gateway.limits.upstream_wait,
            answer_timeout: gateway.limits.body_idle_timeout,
            keep_alive: super::conn::sse_keep_alive(gateway.limits.body_idle_timeout),
        };
        let answer =
            super::bridged::forward(&target, name, gateway.max_body, &options, request).await;
        return finish(tap, answer);
    }
    // A remote server has no port: the URL in its config says where it is.
    let remote = config.remote.as_deref();
    let Some(port) = status.port.or(config.port).or(remote.map(|_| 0)) else {
        return finish(
            tap,
            response::unavailable(
                "server has no port yet",
                name,
                shared.options.retry_after_secs,
            ),
        );
    };
    drop(status);

    let public_url = &live.config.gateway.public_url;
    let upstream = Upstream {
        server: name,
        port,
        path: &config.path,
        peer,
        host,
        trusted_peer: live.config.gateway.trusts(peer.ip()),
        proto: if public_url.starts_with("https:") {
            "https"
        } else {
            "http"
        },
        max_body: live.config.gateway.max_body,
        header_timeout: shared.options.upstream_header_timeout,
        retry_after_secs: shared.options.retry_after_secs,
        claims: claims.as_deref(),
        check_now: &entry.check_now,
        remote,
    };
    finish(tap, proxy::forward(pool, upstream, request).await)
}

/// Hands the answer to the request's tap, when there is one (`response::tapped`).
fn finish(tap: Option<Tap>, response: Response<Body>) -> Response<Body> {
    match tap {
        Some(tap) => response::tapped(tap, response),
        None => response,
    }
}

/// Who may send `request` to `name`: no access token in the query string, and, when the
/// server requires OAuth, a valid bearer token for it (its claims). `Err`: the refusal.
pub(super) fn admit(
    shared: &Shared,
    live: &Live,
    name: &str,
    oauth: &OAuthConfig,
    endpoint: &str,
    request: &Request<ClientBody>,
) -> Result<Option<Arc<Claims>>, Box<Response<Body>>> {
    if let Some(refusal) = refuse_query_token(shared, live, name, oauth.required, request) {
        return Err(Box::new(refusal));
    }
    if !oauth.required {
        return Ok(None);
    }
    authenticate(shared, live, name, oauth, endpoint, request.headers()).map(Some)
}

/// 400 for a request with an access token in its query string (with the OAuth challenge when
/// the server requires a token); counted as an auth failure.
fn refuse_query_token(
    shared: &Shared,
    live: &Live,
    name: &str,
    oauth_required: bool,
    request: &Request<ClientBody>,
) -> Option<Response<Body>> {
    if !request.uri().query().is_some_and(query::has_access_token) {
        return None;
    }
    auth_failed(shared, "token_in_query");
    let message = "access tokens are not accepted in the query string; send Authorization: Bearer";
    if oauth_required {
        let challenge = format!(
            "Bearer error=\"invalid_request\", resource_metadata=\"{}\"",
            resource_metadata_url(&live.config.gateway.public_url, name)
        );
        return Some(response::challenge(
            StatusCode::BAD_REQUEST,
            message,
            name,
            challenge,
        ));
    }
    Some(response::error(
        StatusCode::BAD_REQUEST,
        message,
        Some(name),
    ))
}

/// The bearer token of `Authorization`: `None` when there is no bearer credential at all.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    auth::bearer_token(headers.get(AUTHORIZATION)?)
}

/// Verifies the bearer token and checks it against the server: 401 without a valid token,
/// 403 when the token is valid but not for this server.
fn authenticate(
    shared: &Shared,
    live: &Live,
    name: &str,
    oauth: &OAuthConfig,
    endpoint: &str,
    headers: &HeaderMap,
) -> Result<Arc<Claims>, Box<Response<Body>>> {
    let metadata = || resource_metadata_url(&live.config.gateway.public_url, name);
    let Some(token) = bearer_token(headers) else {
        auth_failed(shared, "missing");
        let challenge = format!("Bearer resource_metadata=\"{}\"", metadata());
        return Err(Box::new(response::challenge(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
            name,
            challenge,
        )));
    };
    let claims = match live.auth.verify(token) {
        Ok(claims) => claims,
        Err(err) => {
            auth_failed(shared, err.reason());
            tracing::debug!(server = name, reason = err.reason(), "token refused");
            let challenge = format!(
                "Bearer error=\"invalid_token\", resource_metadata=\"{}\"",
                metadata()
            );
            return Err(Box::new(response::challenge(
                StatusCode::UNAUTHORIZED,
                &err.to_string(),
                name,
                challenge,
            )));
        }
    };
    if let Err(denied) = auth::authorize(&claims, oauth, endpoint) {
        auth_failed(shared, denied.reason());
        tracing::debug!(
            server = name,
            reason = denied.reason(),
            "token not allowed on this server"
        );
        let challenge = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
            oauth.scopes.join(" "),
            metadata()
        );
        return Err(Box::new(response::challenge(
            StatusCode::FORBIDDEN,
            &denied.to_string(),
            name,
            challenge,
        )));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/healthz"), Route::Healthz));
        assert!(matches!(route("/api/v1/mcp/registry"), Route::Registry));
        assert!(matches!(route("/api/v1/mcp/echo/mcp"), Route::Mcp("echo")));
        assert!(matches!(
            route("/api/v1/mcp/registry/mcp"),
            Route::Mcp("registry")
        ));
        assert!(matches!(
            route("/.well-known/oauth-protected-resource/api/v1/mcp/echo/mcp"),
            Route::Metadata("echo")
        ));
        for other in [
            "/api/v1/mcp//mcp",
            "/api/v1/mcp/a/b/mcp",
            "/api/v1/mcp/echo",
            "/mcp",
            "/ui/servers/",
            "/ui/servers/a/b",
        ] {
            assert!(matches!(route(other), Route::NotFound), "{other}");
        }
    }
}
