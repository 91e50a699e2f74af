//! Changes a member makes itself, through a virtual server: a member's own
//! `notifications/tools/list_changed` (mcp-echo's `toggle_late` adds or removes a tool at run
//! time) reaches a client listening on the virtual server, whose next `tools/list` shows the
//! change; and resource subscriptions at members of each generation: one that speaks both
//! takes them in a member session kept for the subscribing session, one that speaks only
//! 2026-07-28 is refused with an error saying why.

use serde_json::{Value, json};

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::sse::{self, Caller, Events};

/// A POST of one JSON-RPC message: in `session`, or as a 2026-07-28 client without one.
async fn rpc(url: &str, session: Option<&str>, body: Value) -> (Value, Option<String>) {
    let caller = session.map_or(Caller::Stateless, Caller::Session);
    sse::rpc(url, caller, &body).await
}

/// A 2026-07-28 `tools/call`.
fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        },
    }})
}

async fn tool_names(url: &str, session: &str) -> Vec<String> {
    let (list, _) = rpc(
        url,
        Some(session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tool list: {list}"))
        .iter()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_members_own_list_changed_reaches_a_listening_client() {
    let servers = r#"mcp_servers:
  grow:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_TOOL_CHANGES: "1"}
    # Its probe lists the tools every 30th probe (15 minutes here): only the member's own
    # list_changed can show the change within the test.
    health: {interval: 30s}
  all:
    aggregate: [grow]
"#;
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["grow"]).await;
    let url = daemon.mcp_url("all");
    let session = mcpd_tests::stdio_support::open_session(&url).await;
    let names = tool_names(&url, &session).await;
    assert!(names.iter().any(|n| n == "grow_toggle_late"), "{names:?}");
    assert!(!names.iter().any(|n| n == "grow_late"), "{names:?}");
    let mut events = Events::get(&url, &session).await;

    // A caller makes the member add a tool, then remove it; the member says so with its own
    // list_changed: on the call's own stream to a 2026-07-28 caller (reached statelessly),
    // on the member session's standalone stream when the caller has a session (the member
    // session kept for it; mcpd watches a session stream of each such member).
    let toggle = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "grow_toggle_late", "arguments": {}}});
    for (added, text, caller) in [
        (true, "added late", None),
        (false, "removed late", Some(session.as_str())),
    ] {
        let request = match caller {
            None => call("grow_toggle_late", json!({})),
            Some(_) => toggle.clone(),
        };
        let (answer, _) = rpc(&url, caller, request).await;
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
        let heard = events.next().await;
        assert_eq!(
            heard["method"], "notifications/tools/list_changed",
            "{heard}"
        );
        let names = tool_names(&url, &session).await;
        assert_eq!(
            names.iter().any(|n| n == "grow_late"),
            added,
            "{text}: {names:?}"
        );
    }
    // Added once more, the new tool is called through the virtual server like any other.
    rpc(&url, Some(&session), toggle).await;
    assert_eq!(
        events.next().await["method"],
        "notifications/tools/list_changed"
    );
    let (answer, _) = rpc(&url, None, call("grow_late", json!({"text": "hi"}))).await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

#[tokio::test]
async fn subscriptions_reach_a_member_of_both_generations_and_are_refused_by_a_2026_only_one() {
    let servers = r#"mcp_servers:
  both:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SUBSCRIBE: "1", MCP_ECHO_RESOURCES: "both://a", MCP_ECHO_LABEL: both}
  new:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_STATELESS_ONLY: "1", MCP_ECHO_SUBSCRIBE: "1", MCP_ECHO_RESOURCES: "new://a", MCP_ECHO_LABEL: new}
  all:
    aggregate: [both, new]
"#;
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["both", "new"]).await;
    let url = daemon.mcp_url("all");
    let session = mcpd_tests::stdio_support::open_session(&url).await;
    let mut events = Events::get(&url, &session).await;
    let subscribe = |uri: &str| json!({"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": uri}});
    // A member that speaks 2026-07-28 too is subscribed to in a member session of its own.
    let (answer, _) = rpc(&url, Some(&session), subscribe("both://a")).await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let touch = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "both_touch", "arguments": {"uri": "both://a"}}});
    let (touched, _) = rpc(&url, Some(&session), touch).await;
    assert!(touched.get("result").is_some(), "{touched}");
    loop {
        let message = events.next().await;
        if message["method"] == "notifications/resources/updated" {
            assert_eq!(message["params"]["uri"], "both://a", "{message}");
            break;
        }
        assert!(
            message["method"]
                .as_str()
                .is_some_and(|m| m.ends_with("/list_changed")),
            "{message}"
        );
    }
    // One that speaks only 2026-07-28 has no session to subscribe in: a clear error.
    let (refused, _) = rpc(&url, Some(&session), subscribe("new://a")).await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"new\"") && message.contains("without sessions"),
        "{refused}"
    );
    // A call to it still works (statelessly) from the same session.
    let (answer, _) = rpc(
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "new_echo", "arguments": {"text": "still here"}}}),
    )
    .await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "still here",
        "{answer}"
    );
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}
