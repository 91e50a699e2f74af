//! The gateway through the real `mcpd`: rmcp clients of both protocol generations against
//! supervised `mcp-echo` servers (tools, progress streamed one by one, sessions, bearer
//! tokens from `mcpctl token`), the official TypeScript server and Python client, a backend
//! killed mid-stream, and the error answers (401/403/404/413/503) with their JSON bodies.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::mcp_support::{
    CALL, Client, Generation, Progress, arguments, call_progress, call_text, connect, connect_with,
};
use mcpd_tests::{GatewayUrls, lazy, wait_for, wait_for_value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use rmcp::transport::common::client_side_sse::FixedInterval;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
const ACCEPT_MCP: &str = "application/json, text/event-stream";

/// Two echo servers: `open` without OAuth, `secure` requiring the `tools` scope (or `admin`).
const ECHO_SERVERS: &str = "mcp_servers:
  open:
    binary: mcp-echo
    description: open echo
    env: {RUST_LOG: warn}
  secure:
    binary: mcp-echo
    description: echo behind OAuth
    env: {RUST_LOG: warn}
    oauth: {required: true, scopes: [tools]}
";

// ---------------------------------------------------------------------------------------------
// rmcp clients (mcpd_tests::mcp_support)

/// Everything a client does through the gateway: list the tools, call several on one
/// session, and receive `progress` notifications one by one while the call runs.
async fn exercise(client: &Client, progress: &mut Progress, what: &str) {
    let mut names: Vec<String> = tokio::time::timeout(CALL, client.list_all_tools())
        .await
        .expect("tools/list in time")
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "progress", "sleep"], "{what}");
    assert_eq!(
        call_text(client, "echo", json!({"text": "via mcpd"})).await,
        "via mcpd"
    );
    assert_eq!(
        call_text(client, "add", json!({"a": 2, "b": 40})).await,
        "42"
    );

    // Each notification is sent `INTERVAL` after the previous one; arriving spread out
    // (not in one burst with the result) shows that nothing buffers the stream.
    const STEPS: u32 = 4;
    const INTERVAL: Duration = Duration::from_millis(200);
    let (result, answered) = call_progress(client, STEPS, INTERVAL).await;
    let mut arrivals = Vec::new();
    for step in 1..=STEPS {
        let (at, params) = tokio::time::timeout(CALL, progress.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: progress step {step} did not arrive"))
            .expect("the client is still running");
        assert_eq!(params.progress, f64::from(step), "{what}: in order");
        assert_eq!(params.total, Some(f64::from(STEPS)));
        arrivals.push(at);
    }
    let content = serde_json::to_value(&result.content).expect("content serializes");
    assert_eq!(content[0]["text"], format!("completed {STEPS} steps"));
    // A buffered stream would deliver them together with the result; a loaded machine may
    // delay one, so the check is on their spread, at half the time the server took.
    let half = INTERVAL * (STEPS - 1) / 2;
    let spread = arrivals[arrivals.len() - 1] - arrivals[0];
    assert!(
        spread >= half,
        "{what}: notifications within {spread:?}: buffered"
    );
    assert!(
        answered - arrivals[0] >= half,
        "{what}: the first notification came with the result"
    );

    // Still the same session (the server refuses requests of sessions it does not know).
    assert_eq!(
        call_text(client, "echo", json!({"text": "after"})).await,
        "after"
    );
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL)
        .build()
        .expect("HTTP client")
}

fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "gateway-e2e", "version": "0"}
        }
    })
}

/// POSTs an `initialize` to `url` with `headers`; returns the status, headers and body text.
async fn post_initialize(url: &str, headers: HeaderMap) -> (StatusCode, HeaderMap, String) {
    let response = http()
        .post(url)
        .header("accept", ACCEPT_MCP)
        .headers(headers)
        .json(&initialize_body())
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    (status, headers, body)
}

/// Asserts a JSON error body of the gateway: `{"error": <non-empty>, "server": server}`.
fn assert_error_body(body: &str, server: Option<&str>) -> Value {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"));
    assert!(
        value["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "no error message: {body}"
    );
    match server {
        Some(server) => assert_eq!(value["server"], server, "{body}"),
        None => assert!(value.get("server").is_none(), "{body}"),
    }
    value
}

fn header(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().expect("header value"));
    }
    map
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn rmcp_clients_of_both_generations_through_the_daemon() {
    let daemon = GwDaemon::start(ECHO_SERVERS, "").await;
    daemon.wait_running(&["open"]).await;
    for generation in [Generation::Session, Generation::Stateless] {
        let (client, mut progress) = connect(&daemon.mcp_url("open"), None, generation)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let info = client.peer_info().expect("server info after connect");
        assert_eq!(
            info.server_info.as_ref().map(|server| server.name.as_str()),
            Some("mcp-echo")
        );
        exercise(&client, &mut progress, &format!("open, {generation:?}")).await;
        client.cancel().await.expect("close the client");
    }
}

#[tokio::test]
async fn the_session_id_travels_through_the_gateway_both_ways() {
    let daemon = GwDaemon::start(ECHO_SERVERS, "").await;
    daemon.wait_running(&["open"]).await;
    let url = daemon.mcp_url("open");
    let (status, answer, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = header(&answer, "mcp-session-id");
    assert!(!session.is_empty(), "no Mcp-Session-Id in {answer:?}");
    assert!(body.contains("\"serverInfo\""), "{body}");

    let post = |session: String, body: Value| {
        http()
            .post(&url)
            .header("accept", ACCEPT_MCP)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
    };
    let initialized = post(
        session.clone(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .expect("POST initialized");
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let listed = post(session.clone(), list.clone())
        .await
        .expect("POST tools/list");
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(listed.text().await.expect("body").contains("\"progress\""));
    // A session the server never issued is refused by the server itself, so the id the
    // gateway forwarded above was really the one in use.
    let unknown = post("not-a-session".to_owned(), list).await.expect("POST");
    assert!(
        unknown.status().is_client_error(),
        "an unknown session passed: {}",
        unknown.status()
    );

    let deleted = http()
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("DELETE the session");
    assert!(deleted.status().is_success(), "{}", deleted.status());
}

#[tokio::test]
async fn the_secure_server_takes_bearer_tokens_minted_by_mcpctl() {
    let daemon = GwDaemon::start(ECHO_SERVERS, "").await;
    daemon.wait_running(&["secure"]).await;
    let url = daemon.mcp_url("secure");
    let metadata = daemon.url("/.well-known/oauth-protected-resource/api/v1/mcp/secure/mcp");

    // No token: 401 pointing at the RFC 9728 metadata.
    let (status, answer, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        header(&answer, WWW_AUTHENTICATE),
        format!("Bearer resource_metadata=\"{metadata}\"")
    );
    assert_error_body(&body, Some("secure"));
    assert!(
        connect(&url, None, Generation::Session).await.is_err(),
        "an rmcp client without a token got in"
    );

    // A token that does not verify: 401 with error="invalid_token".
    let (status, answer, body) =
        post_initialize(&url, headers(&[("authorization", "Bearer not.a.jwt")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        header(&answer, WWW_AUTHENTICATE),
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"")
    );
    assert_error_body(&body, Some("secure"));

    // A valid token without the scope: 403 naming the scopes that would pass.
    let other = daemon.token(&["other"]);
    let (status, answer, body) = post_initialize(
        &url,
        headers(&[("authorization", &format!("Bearer {other}"))]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        header(&answer, WWW_AUTHENTICATE),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"tools\", resource_metadata=\"{metadata}\""
        )
    );
    assert_error_body(&body, Some("secure"));

    // The metadata the challenge points at.
    let described: Value = http()
        .get(&metadata)
        .send()
        .await
        .expect("GET metadata")
        .json()
        .await
        .expect("metadata JSON");
    assert_eq!(described["resource"], url);
    assert_eq!(described["scopes_supported"], json!(["tools"]));
    assert_eq!(described["bearer_methods_supported"], json!(["header"]));

    // `admin` passes every server; the server's own scope passes too.
    for scope in ["admin", "tools"] {
        let token = daemon.token(&[scope]);
        let (client, mut progress) = connect(&url, Some(&token), Generation::Session)
            .await
            .unwrap_or_else(|error| panic!("scope {scope}: {error}"));
        exercise(&client, &mut progress, &format!("secure, scope {scope}")).await;
        client.cancel().await.expect("close the client");
    }
}

/// The official TypeScript "everything" server, supervised by mcpd, driven through the
/// gateway by the official Python SDK's streamable HTTP client with a bearer token.
#[tokio::test]
async fn official_python_client_reaches_the_typescript_everything_server() {
    let server = mcpd_tests::interop::everything_server();
    mcpd_tests::interop::require_python_sdk();

    let servers = format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [streamableHttp]
    description: the official TypeScript test server
    oauth: {{required: true, scopes: [tools]}}
",
        server.display()
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");

    let (status, answer, _) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&answer, WWW_AUTHENTICATE).starts_with("Bearer resource_metadata="));

    let token = daemon.token(&["tools"]);
    let result =
        mcpd_tests::interop::python_json("client.py", &[&url, &token], Duration::from_secs(60))
            .await;
    assert_eq!(result["server_name"], "mcp-servers/everything", "{result}");
    assert!(
        result["protocol_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("20")),
        "{result}"
    );
    let tools: Vec<&str> = result["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"echo") && tools.len() > 5, "{tools:?}");
    assert_eq!(result["echo"], json!(["Echo: through mcpd"]), "{result}");
    assert_eq!(result["is_error"], false);

    let registry = daemon.registry().await;
    let entry = &registry["data"][0];
    assert_eq!(entry["name"], "everything");
    // The registry counts what the server lists to mcpd's probe, which declares sampling and
    // elicitation (so members' conditional tools reach virtual servers); this client declares
    // neither, and server-everything offers it fewer tools.
    let counted = entry["tools_count"].as_u64().expect("tools_count");
    assert!(counted >= tools.len() as u64, "{registry} vs {tools:?}");
}

/// Reads one MCP call's SSE response. `Ok` with the progress values seen when the stream
/// ended cleanly, `Err` with them when it ended with an error.
async fn read_progress_stream(
    mut response: reqwest::Response,
    mut seen: Vec<f64>,
    on_progress: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<f64>, (Vec<f64>, String)> {
    let mut buffer = String::new();
    loop {
        match tokio::time::timeout(CALL, response.chunk()).await {
            Err(_) => return Err((seen, format!("no data for {CALL:?}"))),
            Ok(Err(error)) => return Err((seen, error.to_string())),
            Ok(Ok(None)) => return Ok(seen),
            Ok(Ok(Some(chunk))) => {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    for data in event.lines().filter_map(|line| line.strip_prefix("data:")) {
                        let Ok(message) = serde_json::from_str::<Value>(data.trim()) else {
                            continue;
                        };
                        if let Some(value) = message["params"]["progress"].as_f64() {
                            seen.push(value);
                            on_progress(seen.len());
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_backend_killed_mid_stream_ends_the_stream_then_503_until_it_is_back() {
    // A slower first restart keeps the not-running window wide enough to observe.
    let servers = "mcp_servers:
  open:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    restart: {backoff: 1s}
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["open"]).await;
    let url = daemon.mcp_url("open");
    let pid = daemon
        .server_pid("open")
        .expect("a pid in mcpctl status --json");

    // A session, then a long `progress` call whose SSE answer streams through the gateway.
    let (status, answer, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = header(&answer, "mcp-session-id");
    let client = reqwest::Client::new(); // no total timeout: the stream is long
    let send = |body: Value| {
        client
            .post(&url)
            .header("accept", ACCEPT_MCP)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
    };
    let initialized = send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .expect("POST initialized");
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);
    let response = send(json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "progress",
            "arguments": {"steps": 100, "interval_ms": 50},
            "_meta": {"progressToken": "kill-test"}
        }
    }))
    .await
    .expect("POST the progress call");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(response.headers(), "content-type").starts_with("text/event-stream"));

    // An rmcp client has a long call in flight on the same server too.
    // By default rmcp resumes a broken stream forever; this one gives up after one try.
    let mut transport = StreamableHttpClientTransportConfig::with_uri(url.clone());
    let mut give_up = FixedInterval::default();
    give_up.max_times = Some(1);
    give_up.duration = Duration::from_millis(50);
    transport.retry_config = Arc::new(give_up);
    let (rmcp_client, mut rmcp_progress) = connect_with(transport, Generation::Session)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("progress")
            .with_arguments(arguments(json!({"steps": 100, "interval_ms": 50}))),
    ));
    let in_flight = rmcp_client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send the rmcp progress call");
    tokio::time::timeout(CALL, rmcp_progress.recv())
        .await
        .expect("a first notification to the rmcp client")
        .expect("the rmcp client runs");

    // Kill the server with SIGKILL once two notifications came through.
    let mut killed = false;
    let mut kill_after_two = |count: usize| {
        if count == 2 && !killed {
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the server");
            killed = true;
        }
    };
    let outcome = read_progress_stream(response, Vec::new(), &mut kill_after_two).await;
    let (seen, error) = match outcome {
        Ok(seen) => panic!("the stream ended cleanly after the kill; progress {seen:?}"),
        Err(ended) => ended,
    };
    assert!(seen.len() >= 2 && seen.len() < 100, "{seen:?} ({error})");
    assert!(!error.starts_with("no data"), "the stream hung: {error}");
    let rmcp_outcome = tokio::time::timeout(CALL, in_flight.await_response())
        .await
        .expect("the rmcp call ended within {CALL:?} of the kill");
    assert!(
        rmcp_outcome.is_err(),
        "the rmcp call succeeded: {rmcp_outcome:?}"
    );
    drop(rmcp_client);

    // Until the server is back, the gateway answers 503 with Retry-After, even a request that
    // races the supervisor's noticing the death and finds the port closed.
    let unavailable = &RefCell::new(None);
    let url = url.as_str();
    let back = wait_for_value(
        Duration::from_secs(20),
        lazy(|| {
            format!(
                "the server to come back; stderr: {}",
                daemon.process.stderr()
            )
        }),
        || async move {
            let (status, answer, body) = post_initialize(url, HeaderMap::new()).await;
            let mut unavailable = unavailable.borrow_mut();
            match status {
                StatusCode::OK => return Some(answer),
                StatusCode::SERVICE_UNAVAILABLE => {
                    let retry = header(&answer, RETRY_AFTER);
                    assert!(
                        retry.parse::<u64>().is_ok_and(|secs| secs > 0),
                        "Retry-After {retry:?}"
                    );
                    unavailable.get_or_insert_with(|| assert_error_body(&body, Some("open")));
                }
                other => panic!("{other} while the server was down: {body}"),
            }
            None
        },
    )
    .await;
    let unavailable = unavailable
        .take()
        .expect("no 503 while the server was down");
    assert!(
        unavailable["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("server is ")),
        "{unavailable}"
    );
    assert!(!header(&back, "mcp-session-id").is_empty());
    let new_pid = daemon.server_pid("open").expect("a new pid");
    assert_ne!(new_pid, pid, "the same process");

    // And a fresh client works end to end again.
    let (client, _) = connect(url, None, Generation::Session)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        call_text(&client, "echo", json!({"text": "back"})).await,
        "back"
    );
    client.cancel().await.expect("close the client");
}

#[tokio::test]
async fn edge_errors_answer_json_and_the_registry_shows_live_status() {
    let servers = format!("{ECHO_SERVERS}  off:\n    binary: mcp-echo\n    enabled: false\n");
    let daemon = GwDaemon::start(&servers, "  allowed_origins: [http://app.example]").await;
    daemon.wait_running(&["open", "secure"]).await;
    let url = daemon.mcp_url("open");

    // The registry: enabled servers only, each with its live status and tool count.
    let registry = daemon.registry().await;
    let data = registry["data"].as_array().expect("data");
    let names: Vec<&str> = data.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["open", "secure"], "{registry}");
    for entry in data {
        let mut keys: Vec<&str> = entry
            .as_object()
            .expect("entry")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "description",
                "display_in_web",
                "enabled",
                "endpoint",
                "name",
                "oauth_required",
                "oauth_scopes",
                "port",
                "status",
                "tools_count"
            ]
        );
        assert_eq!(entry["status"], "running");
        assert_eq!(entry["tools_count"], 4);
        assert_eq!(entry["enabled"], true);
        assert_eq!(entry["display_in_web"], true);
        let port = entry["port"].as_u64().expect("port") as u16;
        assert!(
            (daemon.ports.port(1)..=daemon.ports.last()).contains(&port),
            "{entry}"
        );
        assert_eq!(
            entry["endpoint"],
            daemon.mcp_url(entry["name"].as_str().unwrap())
        );
    }
    assert_eq!(data[0]["description"], "open echo");
    assert_eq!(data[0]["oauth_required"], false);
    assert_eq!(data[0]["oauth_scopes"], json!([]));
    assert_eq!(data[1]["oauth_required"], true);
    assert_eq!(data[1]["oauth_scopes"], json!(["tools"]));
    assert!(
        registry["meta"]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(registry["meta"]["version"].as_str().is_some());

    // Unknown and disabled servers: 404.
    for name in ["nope", "off"] {
        let (status, _, body) = post_initialize(&daemon.mcp_url(name), HeaderMap::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
        assert_error_body(&body, Some(name));
    }
    let other = http()
        .get(daemon.url("/nothing/here"))
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert_error_body(&other.text().await.expect("body"), None);

    // A body over gateway.max_body (64 KiB): 413, declared or streamed without a length.
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(100 * 1024)}})
        .to_string();
    let declared = http()
        .post(&url)
        .header("accept", ACCEPT_MCP)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("POST a large body");
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_body(&declared.text().await.expect("body"), Some("open"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(8 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let streamed = http()
        .post(&url)
        .header("accept", ACCEPT_MCP)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST a large chunked body");
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_body(&streamed.text().await.expect("body"), Some("open"));

    // DNS-rebinding protection: a foreign Origin or Host gets 403; a listed Origin passes.
    let (status, _, body) =
        post_initialize(&url, headers(&[("origin", "http://evil.example")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        assert_error_body(&body, Some("open"))["error"]
            .as_str()
            .is_some_and(|error| error.contains("Origin"))
    );
    let (status, _, body) = post_initialize(
        &url,
        headers(&[("host", &format!("evil.example:{}", daemon.gateway_port()))]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        assert_error_body(&body, Some("open"))["error"]
            .as_str()
            .is_some_and(|error| error.contains("Host"))
    );
    let (status, _, body) =
        post_initialize(&url, headers(&[("origin", "http://app.example")])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a listed Origin was refused: {body}"
    );
    let (status, _, body) = post_initialize(
        &url,
        headers(&[("host", &format!("localhost:{}", daemon.gateway_port()))]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "localhost was refused: {body}");

    // A stopped server: the registry says so at once, and its endpoint answers 503.
    let stopped = daemon.mcpctl(&["stop", "open"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    wait_for(CALL, "the registry to show open stopped", || async {
        daemon.registry().await["data"][0]["status"] == "stopped"
    })
    .await;
    let (status, answer, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(!header(&answer, RETRY_AFTER).is_empty());
    assert_eq!(
        assert_error_body(&body, Some("open"))["error"],
        "server is stopped"
    );
    let started = daemon.mcpctl(&["start", "open"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    daemon.wait_running(&["open"]).await;
    let (status, _, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn without_public_url_endpoints_point_at_the_listen_port() {
    let daemon = GwDaemon::start_with(ECHO_SERVERS, "", false).await;
    daemon.wait_running(&["secure"]).await;
    let base = format!("http://localhost:{}", daemon.gateway_port());
    let registry = daemon.registry().await;
    assert_eq!(
        registry["data"][1]["endpoint"],
        format!("{base}/api/v1/mcp/secure/mcp"),
        "{registry}"
    );
    let (status, answer, _) = post_initialize(&daemon.mcp_url("secure"), HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&answer, WWW_AUTHENTICATE),
        format!(
            "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/api/v1/mcp/secure/mcp\""
        )
    );
}

#[tokio::test]
async fn a_refused_connection_answers_503_and_has_the_server_checked_at_once() {
    // The server's main process lives on while the MCP server inside it is gone (a wrapper
    // script whose child died): the supervisor sees no exit, and with a one-hour probe
    // interval it would not notice for an hour. The gateway's refused connection must make
    // it check now.
    let dir = mcpd_tests::TestDir::new();
    let pid_file = dir.path().join("echo.pid");
    let servers = format!(
        "mcp_servers:
  wrapped:
    binary: /bin/sh
    args: [\"-c\", \"{echo} & echo $! > {pid_file}; exec sleep 100000\"]
    env: {{RUST_LOG: warn}}
    health: {{interval: 1h, failures: 1}}
",
        echo = mcpd_tests::bin("mcp-echo").display(),
        pid_file = pid_file.display(),
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["wrapped"]).await;
    let wrapper = daemon.server_pid("wrapped").expect("the wrapper's pid");
    let echo: i32 = std::fs::read_to_string(&pid_file)
        .expect("the wrapper wrote mcp-echo's pid")
        .trim()
        .parse()
        .expect("a pid");
    let status = daemon.status();
    let entry = mcpd_tests::server_entry(&status, "wrapped").expect("wrapped in the status");
    let port = mcpd_tests::port_of(entry);
    kill(Pid::from_raw(echo), Signal::SIGKILL).expect("kill mcp-echo");
    // Gone once its port refuses connections (the kill is delivered, and the last of its
    // threads has closed the listener, some moments after `kill` returns).
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("the port {port} of the killed mcp-echo to refuse connections")),
        || async move {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionRefused)
        },
    )
    .await;

    let url = daemon.mcp_url("wrapped");
    let (status, answer, body) = post_initialize(&url, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        header(&answer, RETRY_AFTER)
            .parse::<u64>()
            .is_ok_and(|secs| secs > 0)
    );
    assert_error_body(&body, Some("wrapped"));

    // The check fails at once (failures: 1), so the supervisor restarts the server.
    let url = url.as_str();
    let daemon = &daemon;
    wait_for(
        Duration::from_secs(20),
        lazy(|| {
            format!(
                "the wrapped server to be restarted; status: {}; stderr: {}",
                daemon.status(),
                daemon.process.stderr()
            )
        }),
        || async move {
            let restarted = daemon
                .server_pid("wrapped")
                .is_some_and(|pid| pid != wrapper);
            restarted && post_initialize(url, HeaderMap::new()).await.0 == StatusCode::OK
        },
    )
    .await;
}
