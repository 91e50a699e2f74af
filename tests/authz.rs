//! Authorization per tool through the real daemon: built-in scope meanings, per-tool rules,
//! filtered `tools/list` (SSE answers to session clients, JSON answers to stateless ones),
//! the 403 step-up challenge, the 2026-07-28 routing headers, hostile bodies, and the audit
//! log those calls leave.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::mcp_support::{BOTH, Generation, connect};
use mcpd_tests::{GatewayUrls, wait_for_value};

const CALL: Duration = Duration::from_secs(20);

/// The issue's example policy over mcp-echo's tools (echo, add, sleep, progress).
const GUARDED: &str = r#"mcp_servers:
  guarded:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    oauth:
      required: true
      scopes: [user, tools:read, tools:write]
      tools:
        "add": [admin]
        "echo": [tools:read, user]
        "*": [tools:write]
    audit: {arguments: true}
"#;

async fn start() -> GwDaemon {
    let daemon = GwDaemon::start(GUARDED, "").await;
    daemon.wait_running(&["guarded"]).await;
    daemon
}

async fn listed(url: &str, token: &str, generation: Generation) -> Vec<String> {
    let (client, _) = connect(url, Some(token), generation)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = tokio::time::timeout(CALL, client.list_all_tools())
        .await
        .expect("tools/list in time")
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    let _ = client.cancel().await;
    names
}

#[tokio::test]
async fn each_token_lists_exactly_the_tools_it_may_call() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let all = ["add", "echo", "progress", "sleep"];
    let table: &[(&str, &[&str])] = &[
        ("admin", &all),
        // Reading the catalog is what tools:read is for.
        ("tools:read", &all),
        ("user", &["echo"]),
        ("tools:write", &["progress", "sleep"]),
    ];
    for generation in BOTH {
        for (scope, expected) in table {
            let token = daemon.token(&[scope]);
            assert_eq!(
                listed(&url, &token, generation).await,
                *expected,
                "{scope} over {generation:?}"
            );
        }
    }
    // The registry still counts every tool.
    let registry = daemon.registry().await;
    assert_eq!(registry["data"][0]["tools_count"], 4, "{registry}");
}

/// The per-request `_meta` of a 2026-07-28 (stateless) request.
fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "authz-test", "version": "0"},
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    })
}

/// One raw JSON-RPC POST with a bearer token. Without routing headers in `extra` it is sent
/// as a 2026-07-28 client sends it (stateless, routing headers from the body).
async fn post(
    url: &str,
    token: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if extra.is_empty() {
        let method = body["method"].as_str().unwrap_or_default().to_owned();
        request = request
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = body["params"]["name"].as_str() {
            request = request.header("mcp-name", name);
        }
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"text": "hi", "a": 1, "b": 2},
                      "_meta": stateless_meta()}})
}

#[tokio::test]
async fn a_denied_call_gets_403_with_the_step_up_challenge_and_never_reaches_the_server() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let metadata = daemon.url("/.well-known/oauth-protected-resource/api/v1/mcp/guarded/mcp");
    let reader = daemon.token(&["tools:read"]);

    let (status, headers, body) = post(&url, &reader, &call(1, "sleep"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"admin tools:write\", resource_metadata=\"{metadata}\""
        )
    );
    let answer: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(answer["tool"], "sleep", "{answer}");
    assert_eq!(answer["server"], "guarded");

    // The same name hidden behind a unicode escape is the same tool.
    let user = daemon.token(&["user"]);
    let escaped = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"\u0061dd","arguments":{"a":1,"b":2}}}"#;
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&user)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(escaped)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // What the rules allow goes through.
    let (status, _, body) = post(&url, &reader, &call(3, "echo"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("hi"), "{body}");

    // mcp-echo prints one line per call it ran: the refused ones never reached it.
    let logs = wait_for_value(CALL, "mcp-echo's line for the echo call", || async {
        let output = daemon.mcpctl(&["logs", "guarded", "-n", "100"]);
        let logs = String::from_utf8_lossy(&output.stdout).into_owned();
        logs.contains("call echo").then_some(logs)
    })
    .await;
    assert!(!logs.contains("call sleep"), "{logs}");
    assert!(!logs.contains("call add"), "{logs}");
}

#[tokio::test]
async fn hostile_bodies_get_the_right_answer_and_the_daemon_keeps_serving() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let admin = daemon.token(&["admin"]);
    let user = daemon.token(&["user"]);

    let raw = |token: &str, body: &'static str| {
        let url = url.clone();
        let token = token.to_owned();
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // Not JSON: -32700.
    let (status, body) = raw(&admin, "this is not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], -32700, "{body}");
    // Duplicate method keys: the gateway will not guess which one the server reads.
    let (status, body) = raw(
        &admin,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"add"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], -32600, "{body}");
    // A batch with one forbidden call is refused whole.
    let (status, body) = raw(
        &user,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["tools"], json!(["add"]));
    // Nesting 10,000 deep in the arguments: passed over without recursion.
    let deep: &'static str = Box::leak(
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2,"x":{}{}}}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        )
        .into_boxed_str(),
    );
    let (status, _) = raw(&user, deep).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Arguments of 4 MiB: over this daemon's max_body (64 KiB), refused from the head.
    let answer = raw_exchange(
        &daemon,
        &admin,
        &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
            "a".repeat(4 << 20)
        ),
        usize::MAX,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body split across many TCP segments is read whole, then decided on.
    let answer = raw_exchange(&daemon, &user, &call(9, "add").to_string(), 1).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // And the daemon still serves.
    let (status, _, body) = post(&url, &admin, &call(10, "add"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains('3'), "{body}");
}

/// Writes a POST by hand, its body in pieces of `piece` bytes (flushed one by one, so they
/// travel as separate segments), and reads the answer until the gateway closes. A write the
/// gateway refused midway (it answers a too-large body from its head) ends the writing.
async fn raw_exchange(daemon: &GwDaemon, token: &str, body: &str, piece: usize) -> String {
    let authority = daemon.url("").trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /api/v1/mcp/guarded/mcp HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n",
        len = body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in body.as_bytes().chunks(piece.min(body.len()).max(1)) {
        if stream.write_all(chunk).await.is_err() || stream.flush().await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(CALL, stream.read_to_end(&mut answer))
        .await
        .expect("answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn routing_headers_of_2026_07_28_must_agree_with_the_body() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let admin = daemon.token(&["admin"]);
    let v = ("mcp-protocol-version", "2026-07-28");
    let (status, _, body) = post(
        &url,
        &admin,
        &call(1, "add"),
        &[v, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32020, "{answer}");
    assert_eq!(answer["id"], 1);
    let (status, _, body) = post(&url, &admin, &call(2, "add"), &[v]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("-32020"), "{body}");
}

#[tokio::test]
async fn a_token_for_the_servers_resource_url_is_accepted() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let output = daemon.mcpctl(&["token", "--scope", "admin", "--aud", &url]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let (status, _, body) = post(&url, &token, &call(1, "add"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = daemon.mcpctl(&[
        "token",
        "--scope",
        "admin",
        "--aud",
        "https://elsewhere/mcp",
    ]);
    let other = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let (status, _, _) = post(&url, &other, &call(2, "add"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The audit file: `audit.log`, or `audit.<period>.log` with rotation (daily by default).
fn audit_file(daemon: &GwDaemon) -> Option<std::path::PathBuf> {
    std::fs::read_dir(daemon.dir.path().join("logs"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("audit.") && name.ends_with(".log")
        })
}

/// The one record of `records` whose `key` is `value`. Calls on different connections are
/// written in the order they finish, which the caller does not control, so records are found
/// by what they hold, never by their place in the file.
fn record_with<'a>(records: &'a [Value], key: &str, value: &str) -> &'a Value {
    let mut found = records.iter().filter(|record| record[key] == value);
    let record = found
        .next()
        .unwrap_or_else(|| panic!("no record with {key} {value}: {records:?}"));
    assert!(
        found.next().is_none(),
        "two records with {key} {value}: {records:?}"
    );
    record
}

fn audit_records(daemon: &GwDaemon) -> Vec<Value> {
    let text = audit_file(daemon)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Records of calls made just before the daemon is told to stop are in the file once it has
/// stopped: the audit writer's batch window is cut short by the stop, never lost to it.
#[tokio::test]
async fn calls_just_before_a_stop_are_in_the_audit_file_after_it() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let user = daemon.token(&["user"]);
    let (status, _, _) = post(&url, &user, &call(51, "echo"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = post(&url, &user, &call(52, "add"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // At once: no wait for the records to reach the file.
    daemon.process.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = daemon.process.wait_exit(CALL).await;
    assert!(exit.success(), "mcpd stopped with {exit:?}");
    let records = audit_records(&daemon);
    let mut calls: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap_or_default(),
                r["tool"].as_str().unwrap_or_default(),
                r["decision"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // In request order: the file holds them in the order the calls finished.
    calls.sort_unstable();
    assert_eq!(
        calls,
        [("51", "echo", "allow"), ("52", "add", "deny")],
        "{records:?}"
    );
}

#[tokio::test]
async fn every_call_leaves_one_audit_record_and_no_token() {
    let daemon = start().await;
    let url = daemon.mcp_url("guarded");
    let user = daemon.token(&["user"]);
    let (status, _, _) = post(&url, &user, &call(41, "echo"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = post(&url, &user, &call(42, "add"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A session client's call, answered over SSE.
    let writer = daemon.token(&["tools:write"]);
    let (client, _) = connect(&url, Some(&writer), Generation::Session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("sleep")
                .with_arguments(mcpd_tests::mcp_support::arguments(json!({"ms": 1}))),
        )
        .await
        .expect("sleep");
    assert_ne!(result.is_error, Some(true));
    let _ = client.cancel().await;

    let records = wait_for_value(CALL, "three audit records", || async {
        let records = audit_records(&daemon);
        (records.len() >= 3).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 3, "{records:?}");
    let allowed = record_with(&records, "request_id", "41");
    assert_eq!(allowed["server"], "guarded");
    assert_eq!(allowed["tool"], "echo");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["is_error"], false);
    assert_eq!(allowed["scopes"], json!(["user"]));
    assert_eq!(allowed["via"], "gateway");
    assert!(
        allowed["caller"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let arguments: Value =
        serde_json::from_str(allowed["arguments"].as_str().expect("arguments kept")).unwrap();
    assert_eq!(arguments, json!({"text": "hi", "a": 1, "b": 2}));
    assert!(allowed["duration_ms"].as_f64().unwrap() >= 0.0);
    let denied = record_with(&records, "request_id", "42");
    assert_eq!(
        (denied["tool"].as_str(), denied["decision"].as_str()),
        (Some("add"), Some("deny"))
    );
    assert_eq!(denied["status"], 403);
    let sse = record_with(&records, "tool", "sleep");
    assert_eq!(sse["status"], 200);
    assert_eq!(sse["is_error"], false, "{sse}");

    let file = audit_file(&daemon).expect("the audit file");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&user) && !text.contains(&writer),
        "a token reached the audit log"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// The official Python SDK client against the official TypeScript "everything" server, with
/// per-tool rules: a reader lists every tool and is refused the call with the step-up
/// challenge; a user sees and calls only what the rules give it; admin calls anything.
#[tokio::test]
async fn official_python_client_under_per_tool_rules() {
    let server = mcpd_tests::interop::everything_server();
    mcpd_tests::interop::require_python_sdk();
    let servers = format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [streamableHttp]
    oauth:
      required: true
      scopes: [user, tools:read]
      tools:
        \"echo\": [user]
        \"*\": [admin]
",
        server.display()
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let run = |scope: &'static str, tool: &'static str| {
        let token = daemon.token(&[scope]);
        let url = url.clone();
        async move {
            mcpd_tests::interop::python_json(
                "authz_client.py",
                &[&url, &token, tool, r#"{"message": "through mcpd"}"#],
                Duration::from_secs(60),
            )
            .await
        }
    };

    let reader = run("tools:read", "echo").await;
    let every: Vec<Value> = reader["tools"].as_array().unwrap().clone();
    assert!(
        every.len() > 5 && every.contains(&json!("echo")),
        "{reader}"
    );
    assert_eq!(reader["call_ok"], false, "{reader}");
    // The SDK reports the 403 as an error response (its challenge is checked with raw HTTP
    // above); the call never ran (see the audit records below).
    assert!(reader["call_error"].is_string(), "{reader}");

    let user = run("user", "echo").await;
    assert_eq!(user["tools"], json!(["echo"]), "{user}");
    assert_eq!(user["call_ok"], true, "{user}");

    let admin = run("admin", "echo").await;
    assert_eq!(admin["tools"].as_array().unwrap().len(), every.len());
    assert_eq!(admin["call_ok"], true, "{admin}");

    // The reader's refusal and the two calls that ran, in the audit log.
    let records = wait_for_value(CALL, "three audit records", || async {
        let records = audit_records(&daemon);
        (records.len() >= 3).then_some(records)
    })
    .await;
    let decisions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["decision"].as_str().unwrap(), r["tool"].as_str().unwrap()))
        .collect();
    assert_eq!(
        decisions,
        [("deny", "echo"), ("allow", "echo"), ("allow", "echo")]
    );
}
