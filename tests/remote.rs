//! Remote servers (`url:`) end to end: an outer mcpd fronting an inner mcpd's `mcp-echo`
//! through a TLS listener whose certificate a CA made in the test signed (`tls.ca_file`),
//! with the operator's credential from a file (the inner requires a bearer token), the
//! caller's own token and cookies kept from the inner, a changed credential picked up on
//! reload, the remote going away and coming back, and a certificate no trusted CA signed.

use std::time::Duration;

use mcpd_tests::gw_support::{GW_START, GwDaemon};
use mcpd_tests::mcp_support::{Generation, call_text, connect};
use mcpd_tests::remote_support::{Front, Hostile, Pki};
use mcpd_tests::{GatewayUrls, TestDir, lazy, port_block, server_entry, wait_for};
use serde_json::{Value, json};

/// The inner daemon: an echo that requires a token and can show the headers it received.
const INNER: &str = "mcp_servers:
  echo:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_REFLECT_HEADERS: \"1\"}
    oauth: {required: true, scopes: [tools]}
";

/// A token of `daemon`'s key with `sub`.
fn mint(daemon: &GwDaemon, sub: &str) -> String {
    let output = daemon.mcpctl(&["token", "--scope", "tools", "--sub", sub]);
    assert!(output.status.success(), "mcpctl token: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The outer daemon's server file: `remote` at the front's port, over TLS.
fn outer_servers(front: u16, secrets: &TestDir) -> String {
    format!(
        "mcp_servers:
  remote:
    url: https://localhost:{front}/api/v1/mcp/echo/mcp
    tls: {{ca_file: {ca}}}
    upstream_auth: {{bearer_file: {token}}}
    oauth: {{required: true, scopes: [tools]}}
  all:
    aggregate: [remote]
    oauth: {{required: true, scopes: [tools]}}
",
        ca = secrets.path().join("ca.pem").display(),
        token = secrets.path().join("remote.token").display(),
    )
}

/// The state and last error of `name` in `mcpctl --json status`.
fn state_of(daemon: &GwDaemon, name: &str) -> (String, String) {
    let status = daemon.status();
    let entry = server_entry(&status, name).unwrap_or_else(|| panic!("no {name} in {status}"));
    (
        entry["state"].as_str().unwrap_or_default().to_owned(),
        entry["last_error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn wait_state(daemon: &GwDaemon, name: &str, wanted: &str) -> String {
    let mut last = String::new();
    wait_for(
        GW_START,
        lazy(|| format!("{name} to be {wanted}; stderr: {}", daemon.process.stderr())),
        || {
            let (state, error) = state_of(daemon, name);
            last = error;
            async move { state == wanted }
        },
    )
    .await;
    last
}

/// The headers the inner echo received for a request through the outer gateway.
async fn reflected(outer: &GwDaemon, token: &str) -> Value {
    let response = reqwest::Client::new()
        .get(outer.url("/api/v1/mcp/remote/mcp?reflect-headers"))
        .bearer_auth(token)
        .header("cookie", "session=caller-cookie")
        .send()
        .await
        .expect("GET through the outer gateway");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.expect("reflected headers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_mcpd_over_tls_with_the_operators_credential() {
    let inner = GwDaemon::start(INNER, "").await;
    inner.wait_running(&["echo"]).await;
    let secrets = TestDir::new();
    let pki = Pki::new();
    secrets.write("ca.pem", &pki.ca_pem);
    secrets.write("remote.token", format!("{}\n", mint(&inner, "outer-gw")));
    let ports = port_block(1);
    let front_port = ports.port(0);
    let front = Front::start(
        front_port,
        Some(pki.server_config()),
        inner.gateway_port(),
        Hostile::None,
    )
    .await;
    let outer = GwDaemon::start(&outer_servers(front_port, &secrets), "").await;
    outer.wait_running(&["remote"]).await;

    // Listed and called through the outer gateway with the outer's JWT auth.
    let caller = mint(&outer, "caller");
    let (client, _) = connect(&outer.mcp_url("remote"), Some(&caller), Generation::Session)
        .await
        .expect("connect through the outer gateway");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "echo"), "{tools:?}");
    let answer = call_text(&client, "echo", json!({"text": "over TLS"})).await;
    assert_eq!(answer, "over TLS");
    let status = outer.status();
    let remote = server_entry(&status, "remote").unwrap();
    assert!(remote["tools_count"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(remote["pid"], Value::Null, "{status}");
    assert_eq!(remote["port"], Value::Null, "{status}");

    // `mcpctl test` reaches it with its TLS settings and credential.
    let test = outer.mcpctl(&["--json", "test", "remote"]);
    assert!(test.status.success(), "{test:?}");
    let test: Value = serde_json::from_slice(&test.stdout).expect("test JSON");
    assert_eq!(test["ok"], true, "{test}");
    assert!(test["tools_count"].as_u64().unwrap_or(0) >= 1, "{test}");
    // `mcpctl call` too, and the call is audited like any other.
    let call = outer.mcpctl(&["call", "remote", "echo", "--args", r#"{"text": "via ctl"}"#]);
    assert!(call.status.success(), "{call:?}");
    assert!(
        String::from_utf8_lossy(&call.stdout).contains("via ctl"),
        "{call:?}"
    );

    // A virtual server with the remote as a member lists and calls its tools.
    let (virtual_client, _) = connect(&outer.mcp_url("all"), Some(&caller), Generation::Session)
        .await
        .expect("connect to the virtual server");
    let tools = virtual_client.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().any(|tool| tool.name == "remote_echo"),
        "{tools:?}"
    );
    let answer = call_text(&virtual_client, "remote_echo", json!({"text": "via all"})).await;
    assert_eq!(answer, "via all");

    // A caller without a token is refused by the outer; with one, the inner sees the
    // operator's credential (its subject), never the caller's token or cookie.
    let refused = reqwest::Client::new()
        .post(outer.mcp_url("remote"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let headers = reflected(&outer, &caller).await;
    assert_eq!(headers["x-mcp-subject"], json!(["outer-gw"]), "{headers}");
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
    assert!(!headers.to_string().contains(&caller), "{headers}");
    assert_eq!(
        headers["x-forwarded-host"],
        json!([format!("localhost:{front_port}")]),
        "the outer sends the remote's own Host (the inner forwards it): {headers}"
    );

    // The credential is never shown.
    let show = outer.mcpctl(&["--json", "show", "remote"]);
    let token_text = std::fs::read_to_string(secrets.path().join("remote.token")).unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(!shown.contains(token_text.trim()), "{shown}");
    assert!(
        !outer
            .registry()
            .await
            .to_string()
            .contains(token_text.trim())
    );
    assert!(!outer.process.stderr().contains(token_text.trim()));

    // A new credential file is read on reload.
    secrets.write("remote.token", format!("{}\n", mint(&inner, "outer-gw-2")));
    let reload = outer.mcpctl(&["reload"]);
    assert!(reload.status.success(), "{reload:?}");
    let headers = reflected(&outer, &caller).await;
    assert_eq!(headers["x-mcp-subject"], json!(["outer-gw-2"]), "{headers}");

    // A credential file that became unusable is an error at reload; the server keeps its
    // last good credential.
    secrets.write("remote.token", "two\nlines\n");
    let reload = outer.mcpctl(&["reload"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&reload.stdout),
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(said.contains("more than one line"), "{said}");
    let headers = reflected(&outer, &caller).await;
    assert_eq!(headers["x-mcp-subject"], json!(["outer-gw-2"]), "{headers}");

    // The remote goes away: unreachable, and calls get an error naming the server.
    front.stop().await;
    let reason = wait_state(&outer, "remote", "unreachable").await;
    assert!(reason.contains("localhost"), "{reason}");
    let answer = reqwest::Client::new()
        .post(outer.mcp_url("remote"))
        .bearer_auth(&caller)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["server"], "remote", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    let metrics = reqwest::get(outer.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("server=\"remote\",state=\"unreachable\"} 1")
            || metrics.contains("state=\"unreachable\",server=\"remote\"} 1"),
        "{metrics}"
    );

    // It comes back on the same port: running again, and calls work.
    let front = Front::start(
        front_port,
        Some(pki.server_config()),
        inner.gateway_port(),
        Hostile::None,
    )
    .await;
    wait_state(&outer, "remote", "running").await;
    let (client, _) = connect(
        &outer.mcp_url("remote"),
        Some(&caller),
        Generation::Stateless,
    )
    .await
    .expect("connect again");
    assert_eq!(
        call_text(&client, "echo", json!({"text": "back"})).await,
        "back"
    );
    front.stop().await;

    // A certificate no trusted authority signed: refused, and the reason is in the status.
    let front = Front::start(
        front_port,
        Some(Pki::rogue_config()),
        inner.gateway_port(),
        Hostile::None,
    )
    .await;
    let reason = wait_state(&outer, "remote", "unreachable").await;
    let reason = if reason.contains("certificate") {
        reason
    } else {
        let mut reason = String::new();
        wait_for(
            Duration::from_secs(20),
            "a certificate error in the status",
            || {
                reason = state_of(&outer, "remote").1;
                let found = reason.contains("certificate");
                async move { found }
            },
        )
        .await;
        reason
    };
    assert!(reason.contains("not trusted"), "{reason}");
    front.stop().await;
}
