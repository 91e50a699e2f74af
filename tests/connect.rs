//! `mcpctl connect` against a real daemon: each client's document has the shape that client
//! documents, tokens are minted for OAuth servers on request, and the Claude Code and VS Code
//! entries, fed as they are to the official Python SDK client, reach the server through the
//! gateway.

use std::time::Duration;

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use serde_json::{Value, json};

/// `open` without OAuth, `secure` requiring the `tools` scope with its own audience.
const SERVERS: &str = "mcp_servers:
  open:
    binary: mcp-echo
    description: open echo
    env: {RUST_LOG: warn}
  secure:
    binary: mcp-echo
    description: echo behind OAuth
    env: {RUST_LOG: warn}
    oauth: {required: true, scopes: [tools], audience: echo-api}
";

fn connect_json(daemon: &GwDaemon, args: &[&str]) -> Value {
    let mut all = vec!["--json", "connect"];
    all.extend_from_slice(args);
    let output = daemon.mcpctl(&all);
    assert!(
        output.status.success(),
        "mcpctl {all:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "mcpctl {all:?} printed no JSON document ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn every_client_gets_its_documented_shape() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    let open = daemon.mcp_url("open");
    let secure = daemon.mcp_url("secure");

    let claude = connect_json(&daemon, &["claude-code"]);
    assert_eq!(
        claude,
        json!({"mcpServers": {
            "open": {"type": "http", "url": open},
            "secure": {"type": "http", "url": secure,
                       "headers": {"Authorization": "Bearer ${MCPD_SECURE_TOKEN}"}},
        }})
    );
    let vscode = connect_json(&daemon, &["vscode"]);
    assert_eq!(
        vscode["servers"]["open"],
        json!({"type": "http", "url": open})
    );
    assert_eq!(
        vscode["servers"]["secure"]["headers"]["Authorization"],
        "Bearer ${input:mcpd-secure-token}"
    );
    assert_eq!(vscode["inputs"][0]["id"], "mcpd-secure-token");
    assert_eq!(vscode["inputs"][0]["password"], true);
    let cursor = connect_json(&daemon, &["cursor", "open"]);
    assert_eq!(cursor, json!({"mcpServers": {"open": {"url": open}}}));
    let desktop = connect_json(&daemon, &["claude-desktop", "secure"]);
    let entry = &desktop["mcpServers"]["secure"];
    assert_eq!(entry["command"], "npx");
    assert_eq!(
        entry["args"],
        json!([
            "-y",
            "mcp-remote",
            secure,
            "--header",
            "Authorization:${AUTH_HEADER}"
        ])
    );
    assert_eq!(entry["env"]["AUTH_HEADER"], "Bearer <MCPD_SECURE_TOKEN>");
    let generic = connect_json(&daemon, &["generic", "secure"]);
    assert_eq!(generic["servers"]["secure"]["transport"], "streamable-http");
    assert_eq!(generic["servers"]["secure"]["scopes"], json!(["tools"]));

    // For people: the command, the file, and how to get a token.
    let output = daemon.mcpctl(&["connect", "claude-code", "secure"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("claude mcp add --transport http secure {secure}")),
        "{text}"
    );
    assert!(
        text.contains("mcpctl token --scope tools --aud echo-api"),
        "{text}"
    );

    // Usage errors: an unknown client, --ttl without --token-scope; an unknown server fails.
    for args in [
        &["connect", "emacs"][..],
        &["connect", "cursor", "--ttl", "1h"][..],
    ] {
        let output = daemon.mcpctl(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    let output = daemon.mcpctl(&["connect", "cursor", "nope"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

/// Feeds one entry to tests/interop/connect_client.py and returns what it printed.
async fn python_client(entry: &Value) -> Value {
    mcpd_tests::interop::python_json(
        "connect_client.py",
        &[&entry.to_string()],
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test]
async fn claude_code_and_vscode_entries_reach_the_server_with_the_python_sdk() {
    mcpd_tests::interop::require_python_sdk();
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["open", "secure"]).await;

    let claude = connect_json(
        &daemon,
        &["claude-code", "--token-scope", "tools", "--ttl", "10m"],
    );
    let vscode = connect_json(&daemon, &["vscode", "secure", "--token-scope", "tools"]);
    assert!(
        vscode.get("inputs").is_none(),
        "a minted token needs no prompt: {vscode}"
    );
    let entries = [
        ("claude-code open", &claude["mcpServers"]["open"]),
        ("claude-code secure", &claude["mcpServers"]["secure"]),
        ("vscode secure", &vscode["servers"]["secure"]),
    ];
    for (what, entry) in entries {
        let result = python_client(entry).await;
        assert_eq!(result["echo"], json!(["through mcpd"]), "{what}: {result}");
        assert!(
            result["tools"]
                .as_array()
                .is_some_and(|tools| tools.contains(&json!("echo"))),
            "{what}: {result}"
        );
    }
    // The minted token carries the server's audience: the same entry without it is refused.
    let token = claude["mcpServers"]["secure"]["headers"]["Authorization"]
        .as_str()
        .expect("a header")
        .trim_start_matches("Bearer ")
        .to_owned();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["echo-api"]);
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(b"gateway-e2e-secret-0123456789abcdef"),
        &validation,
    )
    .expect("a token signed with the daemon's key, for the server's audience")
    .claims;
    assert_eq!(claims["aud"], json!("echo-api"), "{claims}");
    assert_eq!(claims["scope"], "tools", "{claims}");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 600, "{claims}");
    // The open server got no header even with --token-scope.
    assert!(claude["mcpServers"]["open"].get("headers").is_none());
}
