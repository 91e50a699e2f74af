//! Proxying against a real upstream: header rewriting, streaming, status mapping, rebinding
//! checks, h2c, limits and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use crate::config::AuthConfig;
use crate::directory::{Directory, ServerState};
use crate::gateway::GatewayOptions;

struct Setup {
    _dir: TempDir,
    upstream: Upstream,
    gateway: Gateway,
    directory: Arc<Directory>,
}

/// Opens the `sse` server's event stream through the gateway; returns the response head.
async fn open_sse(s: &Setup) -> Response<Incoming> {
    let request = Request::get(s.gateway.url("/api/v1/mcp/sse/mcp"))
        .body(empty())
        .unwrap();
    open(&client(), request).await
}

async fn setup(options: GatewayOptions) -> Setup {
    setup_with(options, |_| {}).await
}

async fn setup_with(
    options: GatewayOptions,
    adjust: impl FnOnce(&mut crate::config::GatewayLimits),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = daemon_config(dir.path(), AuthConfig::default());
    config.gateway.limits.header_timeout = Duration::from_millis(500);
    adjust(&mut config.gateway.limits);
    let upstream = Upstream::start().await;
    let port = Some(upstream.port);
    let running = |name: &str, path: &str| {
        (
            server_config(&config, name, path, no_oauth()),
            status(ServerState::Running, port),
        )
    };
    let mut off = server_config(&config, "off", "/echo", no_oauth());
    off.enabled = false;
    let servers = vec![
        running("echo", "/echo"),
        running("sse", "/sse"),
        running("slow", "/slow"),
        running("hold", "/hold"),
        (
            server_config(&config, "starting", "/echo", no_oauth()),
            status(ServerState::Starting, port),
        ),
        (
            server_config(&config, "refused", "/echo", no_oauth()),
            status(ServerState::Running, Some(closed_port().await)),
        ),
        (off, status(ServerState::Disabled, None)),
    ];
    let directory = directory(servers);
    let gateway = Gateway::start(directory.clone(), config, options).await;
    Setup {
        _dir: dir,
        upstream,
        gateway,
        directory,
    }
}

fn fast_options() -> GatewayOptions {
    GatewayOptions {
        upstream_header_timeout: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(5),
        ..GatewayOptions::default()
    }
}

fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn proxy_rewrites_headers_both_ways() {
    let s = setup(fast_options()).await;
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp?x=1"))
        .header("host", "mcp.internal:8443")
        .header("authorization", "Bearer client-secret-token")
        .header("mcp-session-id", "client-session")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", "42")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("x-mcp-subject", "spoofed")
        .header("x-mcp-scopes", "admin")
        .header("x-mcp-client-id", "spoofed")
        .header("x-forwarded-for", "10.1.1.1")
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .body(body("{\"jsonrpc\":\"2.0\"}"))
        .unwrap();
    let (status, headers, bytes) = send(&client(), request).await;
    assert_ok(status, &bytes);
    let echo = json(&bytes);
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body_len"], 17);
    assert_eq!(echo["version"], "HTTP/1.1");
    let port = s.upstream.port;
    assert_eq!(header_values(&echo, "host"), [format!("127.0.0.1:{port}")]);
    assert_eq!(
        header_values(&echo, "x-forwarded-host"),
        ["mcp.internal:8443"]
    );
    // The peer is not in gateway.trusted_proxies: the client's value is replaced.
    assert_eq!(header_values(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        header_values(&echo, "forwarded"),
        ["for=127.0.0.1;host=\"mcp.internal:8443\";proto=http"]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_values(&echo, "mcp-session-id"), ["client-session"]);
    assert_eq!(header_values(&echo, "mcp-protocol-version"), ["2025-06-18"]);
    assert_eq!(header_values(&echo, "last-event-id"), ["42"]);
    assert_eq!(header_values(&echo, "mcp-method"), ["tools/call"]);
    assert_eq!(header_values(&echo, "mcp-name"), ["echo"]);
    for dropped in [
        "authorization",
        "x-mcp-subject",
        "x-mcp-scopes",
        "x-mcp-client-id",
        "x-client-hop",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            header_values(&echo, dropped).is_empty(),
            "{dropped} reached upstream: {echo}"
        );
    }
    // Hyper's own connection management may add `connection` upstream only as keep-alive.
    assert!(
        header_values(&echo, "connection")
            .iter()
            .all(|v| !v.contains("x-client-hop"))
    );

    assert_eq!(headers["mcp-session-id"], "upstream-session");
    assert!(headers.get("x-upstream-hop").is_none(), "{headers:?}");
    assert!(headers.get("keep-alive").is_none(), "{headers:?}");
    assert!(
        headers
            .get_all("connection")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("x-upstream-hop"))
    );
}

#[tokio::test]
async fn sse_events_arrive_one_at_a_time() {
    let s = setup(fast_options()).await;
    let events = s.upstream.sse();
    let request = Request::get(s.gateway.url("/api/v1/mcp/sse/mcp"))
        .header("accept", "text/event-stream")
        .body(empty())
        .unwrap();
    let response = open(&client(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    for i in 0..5 {
        let event = format!("event-{i}");
        events.send(event.clone()).await.unwrap();
        // The next event is only sent after this one was read through the gateway.
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("event arrives while the stream stays open")
            .unwrap()
            .unwrap();
        let data = frame.into_data().unwrap();
        assert_eq!(data, Bytes::from(format!("data: {event}\n\n")));
    }
    drop(events);
    let end = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert!(end.is_none(), "stream ends when upstream ends it");
}

#[tokio::test]
async fn a_response_body_that_moves_no_byte_is_ended_at_the_body_idle_timeout() {
    let s = setup_with(fast_options(), |limits| {
        limits.body_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let events = s.upstream.sse();
    let mut body = open_sse(&s).await.into_body();
    events.send("first".into()).await.unwrap();
    let first = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert!(first.unwrap().unwrap().is_data());
    // The upstream stays open but sends nothing more: the gateway ends the stream.
    let end = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("the stalled stream is ended");
    assert!(
        !matches!(end, Some(Ok(_))),
        "no data after the stall: {end:?}"
    );
    drop(events);
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_the_upstream_stream() {
    let s = setup_with(fast_options(), |limits| {
        limits.body_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let events = s.upstream.sse();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(s.gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/mcp/sse/mcp HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The client never reads. Events go out until every buffer on the way is full; then the
    // stream stands still, the gateway closes the connection, and the upstream stream ends
    // (its receiver is dropped, so a send fails).
    let event = "x".repeat(64 * 1024);
    let ended = tokio::time::timeout(WAIT * 4, async {
        while events.send(event.clone()).await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "the upstream stream is still held");
    drop(stream);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let s = setup(fast_options()).await;
    let events = s.upstream.sse();
    let response = open_sse(&s).await;
    let mut body = response.into_body();
    events.send("first".into()).await.unwrap();
    tokio::time::timeout(WAIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(body);
    // The upstream notices when it writes into the closed connection: keep producing events
    // until the gateway has dropped the upstream stream.
    let closed = async {
        let mut i = 0u64;
        loop {
            tokio::select! {
                () = events.closed() => return,
                sent = events.send(format!("more-{i}")) => if sent.is_err() { return },
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, closed)
        .await
        .expect("upstream stream dropped after the client went away");
}

async fn expect_error(
    s: &Setup,
    method: Method,
    path: &str,
    status: StatusCode,
    server: Option<&str>,
) -> http::HeaderMap {
    let request = Request::builder()
        .method(method)
        .uri(s.gateway.url(path))
        .body(ping())
        .unwrap();
    let (got, headers, bytes) = send(&client(), request).await;
    assert_eq!(got, status, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(headers["content-type"], "application/json");
    let body = json(&bytes);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    match server {
        Some(server) => assert_eq!(body["server"], server),
        None => assert!(body.get("server").is_none()),
    }
    headers
}

/// A POST to server `name` is answered 503 with `Retry-After: 5`.
async fn expect_unavailable(s: &Setup, name: &str) {
    let path = format!("/api/v1/mcp/{name}/mcp");
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let headers = expect_error(s, Method::POST, &path, status, Some(name)).await;
    assert_eq!(headers["retry-after"], "5");
}

#[tokio::test]
async fn status_mapping() {
    let s = setup(fast_options()).await;
    for (method, path, status, server) in [
        (
            Method::POST,
            "/api/v1/mcp/nope/mcp",
            StatusCode::NOT_FOUND,
            Some("nope"),
        ),
        (
            Method::POST,
            "/api/v1/mcp/off/mcp",
            StatusCode::NOT_FOUND,
            Some("off"),
        ),
        (Method::GET, "/nothing/here", StatusCode::NOT_FOUND, None),
    ] {
        expect_error(&s, method, path, status, server).await;
    }
    expect_unavailable(&s, "starting").await;
    // Running, but nothing listens: down in fact, so 503 like any server not running, and the
    // supervisor's liveness loop is woken to check it now.
    let refused = s.directory.get("refused").unwrap();
    assert!(refused.check_now.notified().now_or_never().is_none());
    expect_unavailable(&s, "refused").await;
    assert!(
        refused.check_now.notified().now_or_never().is_some(),
        "the refused connection did not wake the server's check"
    );
    for (method, path, status, server) in [
        (
            Method::POST,
            "/api/v1/mcp/slow/mcp",
            StatusCode::GATEWAY_TIMEOUT,
            Some("slow"),
        ),
        (
            Method::POST,
            "/api/v1/mcp/registry",
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
    ] {
        expect_error(&s, method, path, status, server).await;
    }
}

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let s = setup(fast_options()).await;
    // Declared up front.
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp"))
        .body(body(vec![b'x'; 2048]))
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&bytes)["server"], "echo");

    // Streamed without a length: refused once the limit is crossed.
    let chunks = (0..8)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'y'; 512]))));
    let streamed = StreamBody::new(futures::stream::iter(chunks)).boxed();
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp"))
        .body(streamed)
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&bytes)
    );

    // Exactly at the limit passes.
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp"))
        .body(body(ping_of_len(1024)))
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&bytes)["body_len"], 1024);
}

async fn status_with(s: &Setup, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = Request::get(s.gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, _, _) = send(&client(), request.body(empty()).unwrap()).await;
    status
}

#[tokio::test]
async fn host_and_origin_checks() {
    let s = setup(fast_options()).await;
    let mcp = "/api/v1/mcp/echo/mcp";
    let registry = "/api/v1/mcp/registry";
    for path in [mcp, registry] {
        for host in [
            "evil.com",
            "evil.com:8080",
            "localhost.evil.com",
            "mcp.internal.evil.com",
        ] {
            assert_eq!(
                status_with(&s, path, &[("host", host)]).await,
                StatusCode::FORBIDDEN,
                "{host}"
            );
        }
        for host in [
            "localhost:1",
            "127.0.0.1:9",
            "[::1]:80",
            "localhost:8080",
            "mcp.internal:443",
        ] {
            assert_eq!(
                status_with(&s, path, &[("host", host)]).await,
                StatusCode::OK,
                "{host}"
            );
        }
        for origin in ["https://evil.com", "null", "http://app.example.com"] {
            assert_eq!(
                status_with(&s, path, &[("origin", origin)]).await,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        for origin in ["https://app.example.com", "http://localhost:8080"] {
            assert_eq!(
                status_with(&s, path, &[("origin", origin)]).await,
                StatusCode::OK,
                "{origin}"
            );
        }
        // A page the gateway itself serves, reached at its listen address while public_url
        // says localhost: its origin is the gateway's own. Another local port is not.
        let port = s.gateway.addr.port();
        for (origin, expected) in [
            (format!("http://127.0.0.1:{port}"), StatusCode::OK),
            (format!("http://localhost:{port}"), StatusCode::OK),
            (
                format!("http://127.0.0.1:{}", port + 1),
                StatusCode::FORBIDDEN,
            ),
        ] {
            assert_eq!(
                status_with(&s, path, &[("origin", &origin)]).await,
                expected,
                "{origin}"
            );
        }
    }
    let forbidden = expect_error_with_origin(&s).await;
    assert_eq!(forbidden["server"], "echo");
    // Health checks answer whatever the Host.
    assert_eq!(
        status_with(&s, "/healthz", &[("host", "evil.com")]).await,
        StatusCode::OK
    );
}

async fn expect_error_with_origin(s: &Setup) -> serde_json::Value {
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp"))
        .header("origin", "https://evil.com")
        .body(empty())
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    json(&bytes)
}

#[tokio::test]
async fn h2c_is_served_and_proxied_over_http1() {
    let s = setup(fast_options()).await;
    let h2 = h2c_client();
    let request = Request::post(s.gateway.url("/api/v1/mcp/echo/mcp"))
        .header("mcp-session-id", "h2-session")
        .body(ping())
        .unwrap();
    let (status, headers, bytes) = send(&h2, request).await;
    assert_ok(status, &bytes);
    let echo = json(&bytes);
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(header_values(&echo, "mcp-session-id"), ["h2-session"]);
    assert_eq!(
        header_values(&echo, "x-forwarded-host"),
        [s.gateway.addr.to_string()]
    );
    assert_eq!(headers["mcp-session-id"], "upstream-session");

    let request = Request::get(s.gateway.url("/healthz"))
        .body(empty())
        .unwrap();
    let response = h2.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_targets_get_414() {
    let s = setup(fast_options()).await;
    let long = format!("/api/v1/mcp/echo/mcp?pad={}", "a".repeat(9000));
    let request = Request::get(s.gateway.url(&long)).body(empty()).unwrap();
    let (status, _, _) = send(&client(), request).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let s = setup(fast_options()).await;
    let mut stream = tokio::net::TcpStream::connect(s.gateway.addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Never finish the head: the gateway must close the connection on its own.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header read timeout"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut s = setup(fast_options()).await;
    let request = Request::post(s.gateway.url("/api/v1/mcp/hold/mcp"))
        .body(ping())
        .unwrap();
    let in_flight = tokio::spawn(async move { send(&client(), request).await });
    tokio::time::timeout(WAIT, s.upstream.held.notified())
        .await
        .expect("upstream got the request");
    s.gateway.shutdown.cancel();
    // New connections are refused once the gateway stops accepting.
    let addr = s.gateway.addr;
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, refused)
        .await
        .expect("listener closed");
    s.upstream.release.notify_one();
    let (status, _, bytes) = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&bytes[..], b"released");
    s.gateway.stop().await;
}

#[tokio::test]
async fn drain_is_bounded() {
    let mut options = fast_options();
    options.drain_timeout = Duration::from_millis(200);
    let mut s = setup(options).await;
    let _events = s.upstream.sse();
    let response = open_sse(&s).await;
    assert_eq!(response.status(), StatusCode::OK);
    // An endless stream is open; shutdown still completes after the drain timeout.
    s.gateway.stop().await;
    drop(response);
}

#[tokio::test]
async fn metrics_count_requests_and_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), AuthConfig::default());
    let upstream = Upstream::start().await;
    let running = status(ServerState::Running, Some(upstream.port));
    let directory = directory(vec![
        (
            server_config(&config, "echo", "/echo", no_oauth()),
            running.clone(),
        ),
        (server_config(&config, "sse", "/sse", no_oauth()), running),
    ]);
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(directory.clone()));
    let auth = crate::gateway::Authenticator::load(&config.auth).unwrap();
    let ctx = crate::gateway::GatewayContext::from_parts(
        directory,
        config,
        auth,
        fast_options(),
        Some(metrics.clone()),
    );
    let gateway = Gateway::start_with(ctx).await;

    let request = Request::post(gateway.url("/api/v1/mcp/echo/mcp"))
        .body(ping())
        .unwrap();
    assert_eq!(send(&client(), request).await.0, StatusCode::OK);
    let events = upstream.sse();
    let request = Request::get(gateway.url("/api/v1/mcp/sse/mcp"))
        .body(empty())
        .unwrap();
    let stream = open(&client(), request).await;

    let (status_code, headers, bytes) = send(
        &client(),
        Request::get(gateway.url("/metrics")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(status_code, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains("mcpd_gateway_requests_total{server=\"echo\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mcpd_gateway_active_streams{server=\"sse\"} 1"),
        "{text}"
    );

    drop(stream);
    drop(events);
    let closed = async {
        while !metrics
            .render()
            .contains("mcpd_gateway_active_streams{server=\"sse\"} 0")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, closed)
        .await
        .expect("stream no longer counted once the client went away");
}

#[tokio::test]
async fn client_disconnect_before_headers_cancels_the_upstream_request() {
    let s = setup(fast_options()).await;
    let request = Request::post(s.gateway.url("/api/v1/mcp/hold/mcp"))
        .body(ping())
        .unwrap();
    let in_flight = tokio::spawn(async move { client().request(request).await });
    tokio::time::timeout(WAIT, s.upstream.held.notified())
        .await
        .expect("upstream got the request");
    in_flight.abort();
    tokio::time::timeout(WAIT, s.upstream.dropped.notified())
        .await
        .expect("upstream request cancelled after the client went away");
}
