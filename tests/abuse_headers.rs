//! Identity and header abuse against the real `mcpd`: spoofed identity headers with
//! underscores, forged forwarding headers, hostile `Host` and `Origin` values over HTTP/1.1
//! and h2c, access tokens hidden in the query string, and JWTs with `crit` or an `iss`
//! array. The upstream is `mcp-echo` with `MCP_ECHO_REFLECT_HEADERS=1`, which answers
//! `/mcp?reflect-headers` with the headers it received. Results are in tests/RELIABILITY.md.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::rel_support::{raw_request, status_code};
use mcpd_tests::{GatewayUrls, lazy, wait_for};
use serde_json::{Value, json};

/// The HS256 secret `GwDaemon` configures.
const SECRET: &[u8] = b"gateway-e2e-secret-0123456789abcdef";

const SERVERS: &str = "mcp_servers:
  open:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_REFLECT_HEADERS: \"1\"}
  secure:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_REFLECT_HEADERS: \"1\"}
    oauth: {required: true, scopes: [tools]}
  anyscope:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    oauth: {required: true}
";

const REFLECT: &str = "/api/v1/mcp/open/mcp?reflect-headers";

/// A raw HTTP/1.1 request to the gateway with `head` (request line and headers, each line
/// ending in CRLF) and `Connection: close`; returns the status and the whole answer.
fn raw(port: u16, head: &str) -> (u16, String) {
    let answer = raw_request(port, &format!("{head}Connection: close\r\n\r\n"))
        .unwrap_or_else(|| panic!("no answer to {head:?}"));
    (status_code(&answer), answer)
}

/// The headers the upstream received, from the JSON body of a raw answer.
fn reflected(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not reflected headers: {answer:?}"))
}

fn values(headers: &Value, name: &str) -> Vec<String> {
    headers[name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|value| value.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A hand-made HS256 token with `header` fields merged into the JOSE header.
fn token(header_extra: Value, claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    if let Some(crit) = header_extra.get("crit") {
        header.crit = Some(serde_json::from_value(crit.clone()).expect("crit list"));
    }
    for (name, value) in header_extra.as_object().into_iter().flatten() {
        if name != "crit" {
            header.extras.insert(name.clone(), value.clone());
        }
    }
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).expect("sign")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Writes `with` in place of `what` in the daemon file, reloads, and checks it took.
fn edit_config_and_reload(daemon: &GwDaemon, what: &str, with: &str) {
    let text = std::fs::read_to_string(&daemon.config).expect("read mcpd.yaml");
    assert!(text.contains(what), "{what:?} not in mcpd.yaml");
    std::fs::write(&daemon.config, text.replacen(what, with, 1)).expect("write mcpd.yaml");
    let output = daemon.mcpctl(&["reload"]);
    assert!(
        output.status.success(),
        "reload failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_never_reach_a_server() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["open", "secure"]).await;
    let port = daemon.gateway_port();
    let spoof = "X_MCP_Subject: admin\r\nX_MCP_Scopes: admin\r\nX-MCP-Subject: admin\r\n\
                 X-MCP-Scopes: admin\r\nX-MCP-Client-Id: app\r\nX-MCP-Other: 1\r\n\
                 X-Forwarded-For: 10.6.6.6\r\nX_Forwarded_For: 10.6.6.6\r\n\
                 X-Forwarded-Host: evil.com\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Port: 443\r\nForwarded: for=10.6.6.6;host=evil.com\r\n\
                 X-Real-IP: 10.6.6.6\r\nMcp-Protocol-Version: 2025-06-18\r\n";

    // Auth off: nothing of the spoof arrives; the gateway's own forwarding headers do.
    let (status, answer) = raw(
        port,
        &format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost:{port}\r\n{spoof}"),
    );
    assert_eq!(status, 200, "{answer}");
    let headers = reflected(&answer);
    for gone in [
        "x_mcp_subject",
        "x_mcp_scopes",
        "x-mcp-subject",
        "x-mcp-scopes",
        "x-mcp-client-id",
        "x-mcp-other",
        "x_forwarded_for",
        "x-forwarded-port",
        "x-real-ip",
    ] {
        assert!(
            values(&headers, gone).is_empty(),
            "{gone} arrived: {headers}"
        );
    }
    assert_eq!(values(&headers, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        values(&headers, "x-forwarded-host"),
        [format!("localhost:{port}")]
    );
    assert_eq!(values(&headers, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        values(&headers, "forwarded"),
        [format!(
            "for=127.0.0.1;host=\"localhost:{port}\";proto=http"
        )]
    );
    assert_eq!(values(&headers, "mcp-protocol-version"), ["2025-06-18"]);

    // Auth on: the identity headers are the token's, never the client's.
    let bearer = daemon.token(&["tools"]);
    let (status, answer) = raw(
        port,
        &format!(
            "GET /api/v1/mcp/secure/mcp?reflect-headers HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {bearer}\r\n{spoof}"
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let headers = reflected(&answer);
    assert_eq!(values(&headers, "x-mcp-subject"), ["mcpctl"]);
    assert_eq!(values(&headers, "x-mcp-scopes"), ["tools"]);
    assert_eq!(values(&headers, "x-mcp-client-id"), ["mcpctl"]);
    assert!(values(&headers, "x_mcp_subject").is_empty(), "{headers}");
    assert!(values(&headers, "x-mcp-other").is_empty(), "{headers}");
    assert!(values(&headers, "authorization").is_empty(), "{headers}");

    // Through a trusted proxy, its forwarding headers are kept and extended; identities are
    // still dropped.
    edit_config_and_reload(
        &daemon,
        "  max_body: 64KiB\n",
        "  max_body: 64KiB\n  trusted_proxies: [127.0.0.0/8]\n",
    );
    let what = lazy(|| "the trusted proxy to take effect".to_owned());
    let answer = mcpd_tests::wait_for_value(Duration::from_secs(10), what, || async {
        let (_, answer) = raw(
            port,
            &format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\n{spoof}"),
        );
        let headers = reflected(&answer);
        (values(&headers, "x-real-ip") == ["10.6.6.6"]).then_some(headers)
    })
    .await;
    assert_eq!(values(&answer, "x-forwarded-for"), ["10.6.6.6, 127.0.0.1"]);
    assert_eq!(values(&answer, "x-forwarded-host"), ["evil.com"]);
    assert_eq!(values(&answer, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        values(&answer, "forwarded"),
        ["for=10.6.6.6;host=evil.com, for=127.0.0.1;host=\"localhost\";proto=http"]
    );
    assert!(values(&answer, "x_mcp_subject").is_empty(), "{answer}");
    assert!(values(&answer, "x-mcp-subject").is_empty(), "{answer}");
}

#[tokio::test]
async fn hostile_hosts_origins_and_query_tokens_are_refused() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["open"]).await;
    let port = daemon.gateway_port();

    for host in [
        "localhost:1@evil.com",
        "localhost:evil.com",
        "localhost:8080 evil",
        "127.0.0.1:8080:evil.com",
        "localhost:",
        "localhost:99999",
        "[::1",
        "[127.0.0.1]",
        "local%host",
        "",
    ] {
        let (status, answer) = raw(port, &format!("GET {REFLECT} HTTP/1.1\r\nHost: {host}\r\n"));
        assert_eq!(status, 400, "Host {host:?}: {answer}");
    }
    // hyper itself refuses some shapes (400 too); the gateway never lets them through.
    for head in [
        format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\nHost: evil.com\r\n"),
        format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n"),
        format!("GET {REFLECT} HTTP/1.1\r\n"),
        format!("GET http://localhost:1@evil.com{REFLECT} HTTP/1.1\r\nHost: localhost\r\n"),
    ] {
        let (status, answer) = raw(port, &head);
        assert_eq!(status, 400, "{head:?}: {answer}");
    }
    // Absolute form: the target's authority is the host checked, not the Host header.
    let (status, answer) = raw(
        port,
        &format!("GET http://evil.com{REFLECT} HTTP/1.1\r\nHost: localhost\r\n"),
    );
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = raw(
        port,
        &format!("GET http://localhost:{port}{REFLECT} HTTP/1.1\r\nHost: evil.com\r\n"),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        values(&reflected(&answer), "x-forwarded-host"),
        [format!("localhost:{port}")]
    );
    // Well-formed but foreign: 403 as before.
    let (status, _) = raw(
        port,
        &format!("GET {REFLECT} HTTP/1.1\r\nHost: evil.com\r\n"),
    );
    assert_eq!(status, 403);

    // Origin: one allowed value passes, two (even both allowed) do not.
    let origin = format!("Origin: http://127.0.0.1:{port}\r\n");
    let (status, answer) = raw(
        port,
        &format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\n{origin}"),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = raw(
        port,
        &format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\n{origin}{origin}"),
    );
    assert_eq!(status, 403, "{answer}");

    // Tokens in the query string, in every spelling a server could read as access_token.
    for query in [
        "access_token=x",
        "ACCESS_TOKEN=x",
        "Access_Token=x",
        "access%5Ftoken=x",
        "a=1;access_token=x",
        "a=1&b=2;ACCESS%5fTOKEN=x",
        "access.token=x",
        "access_token[]=x",
    ] {
        let (status, answer) = raw(
            port,
            &format!("GET /api/v1/mcp/open/mcp?{query} HTTP/1.1\r\nHost: localhost\r\n"),
        );
        assert_eq!(status, 400, "?{query}: {answer}");
        assert!(answer.contains("query string"), "?{query}: {answer}");
    }

    // The gateway is still serving.
    let (status, _) = raw(
        port,
        &format!("GET {REFLECT} HTTP/1.1\r\nHost: localhost\r\n"),
    );
    assert_eq!(status, 200);
}

/// One h2c request (prior knowledge) with the given URI authority and extra `host` header.
async fn h2_status(port: u16, authority: &str, host: Option<&str>) -> StatusCode {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::get(format!("http://{authority}{REFLECT}"));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = sender
        .send_request(request.body(String::new()).expect("request"))
        .await
        .expect("h2 response");
    response.status()
}

#[tokio::test]
async fn h2c_authority_is_the_host_and_a_different_host_header_is_refused() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["open"]).await;
    let port = daemon.gateway_port();
    let local = format!("localhost:{port}");
    assert_eq!(h2_status(port, &local, None).await, StatusCode::OK);
    assert_eq!(h2_status(port, &local, Some(&local)).await, StatusCode::OK);
    assert_eq!(
        h2_status(port, &local, Some("evil.com")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h2_status(port, &format!("evil.com:{port}"), Some(&local)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h2_status(port, &format!("evil.com:{port}"), None).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn crit_tokens_and_issuer_arrays_are_refused_and_open_scopes_are_flagged() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["secure", "anyscope"]).await;
    let port = daemon.gateway_port();
    let exp = now() + 600;
    let status_with = |bearer: String| {
        raw(
            port,
            &format!(
                "GET /api/v1/mcp/secure/mcp?reflect-headers HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {bearer}\r\n"
            ),
        )
    };
    let claims = json!({"sub": "u", "aud": "mcp", "scope": "tools", "exp": exp});
    let (status, answer) = status_with(token(json!({}), claims.clone()));
    assert_eq!(status, 200, "{answer}");
    for crit in [
        json!({"crit": ["exp"]}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": ["urn:example:unknown"]}),
        json!({"crit": []}),
    ] {
        let (status, answer) = status_with(token(crit.clone(), claims.clone()));
        assert_eq!(status, 401, "{crit}: {answer}");
        assert!(answer.contains("crit"), "{crit}: {answer}");
    }

    // The open-scope server is admitted any valid token, and says so everywhere.
    let show = daemon.mcpctl(&["show", "anyscope"]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("any valid token"), "{shown}");
    let check = std::process::Command::new(mcpd_tests::bin("mcpd"))
        .arg("check")
        .arg("--config")
        .arg(&daemon.config)
        .env_remove("MCPD_CONFIG")
        .output()
        .expect("run mcpd check");
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        checked.contains("warning: server anyscope: oauth.required with no oauth.scopes"),
        "{checked}"
    );
    assert!(!checked.contains("server secure:"), "{checked}");
    assert!(
        daemon
            .process
            .stderr()
            .contains("server anyscope: oauth.required with no oauth.scopes"),
        "daemon log: {}",
        daemon.process.stderr()
    );

    // With auth.issuer, `iss` must be that one string: an array holding it is refused.
    edit_config_and_reload(
        &daemon,
        "auth:\n  keys:",
        "auth:\n  issuer: https://issuer.example\n  keys:",
    );
    let with_iss =
        |iss: Value| json!({"sub": "u", "aud": "mcp", "scope": "tools", "exp": exp, "iss": iss});
    let what = lazy(|| "the issuer to take effect".to_owned());
    wait_for(Duration::from_secs(10), what, || async {
        status_with(token(json!({}), claims.clone())).0 == 401
    })
    .await;
    let (status, answer) = status_with(token(json!({}), with_iss(json!("https://issuer.example"))));
    assert_eq!(status, 200, "{answer}");
    for iss in [
        json!(["https://issuer.example"]),
        json!(["https://issuer.example", "https://evil.example"]),
        json!("https://evil.example"),
        json!(42),
    ] {
        let (status, answer) = status_with(token(json!({}), with_iss(iss.clone())));
        assert_eq!(status, 401, "iss {iss}: {answer}");
    }
}
