//! Resource subscriptions and list changes through a virtual server, by raw HTTP so every
//! event on a stream is seen: `resources/subscribe` of a session routed to the member that
//! offers the URI, its updates on that session's GET stream and on no other; a 2026-07-28
//! `subscriptions/listen` with `resourceSubscriptions`; hostile callers and members
//! (unsubscribing another's subscription, updates for URIs nobody subscribed to, floods,
//! bogus URIs); and `notifications/prompts/list_changed` and
//! `notifications/resources/list_changed` when a member with prompts and resources comes.
//!
//! Absence is shown by order, never by waiting: after an event that must not come, one that
//! must is caused, and it has to be the next one on the stream.

use serde_json::{Value, json};

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::sse::{self, Caller, Events};

/// `docs` takes subscriptions (sessions only); `plain` offers a resource without them.
const SERVERS: &str = r#"mcp_servers:
  docs:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: "1", MCP_ECHO_SUBSCRIBE: "1", MCP_ECHO_RESOURCES: "docs://a,docs://b", MCP_ECHO_LABEL: docs}
  plain:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: "1", MCP_ECHO_RESOURCES: "plain://x"}
  all:
    aggregate: [docs, plain]
"#;

/// A POST of one JSON-RPC message: in `session`, or opening one.
async fn rpc(url: &str, session: Option<&str>, body: Value) -> (Value, Option<String>) {
    let caller = session.map_or(Caller::Opening, Caller::Session);
    sse::rpc(url, caller, &body).await
}

async fn open_session(url: &str) -> (String, Value) {
    let (answer, session) = rpc(
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
    )
    .await;
    (session.expect("a session id"), answer)
}

fn subscribe(uri: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": uri}})
}

fn unsubscribe(uri: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "resources/unsubscribe", "params": {"uri": uri}})
}

fn touch(arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "docs_touch", "arguments": arguments}})
}

/// The next message of `events` that is not a list change (those come when members start).
async fn next_update(events: &mut Events) -> Value {
    loop {
        let message = events.next().await;
        let method = message["method"].as_str().unwrap_or_default();
        if !method.ends_with("/list_changed") {
            return message;
        }
    }
}

fn updated(message: &Value) -> &str {
    assert_eq!(
        message["method"], "notifications/resources/updated",
        "{message}"
    );
    message["params"]["uri"].as_str().expect("a URI")
}

#[tokio::test]
async fn a_sessions_subscription_reaches_that_session_and_no_other() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["docs", "plain"]).await;
    let url = daemon.mcp_url("all");
    let (a, init) = open_session(&url).await;
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"], true,
        "{init}"
    );
    let (b, _) = open_session(&url).await;
    let mut a_events = Events::get(&url, &a).await;
    let mut b_events = Events::get(&url, &b).await;

    let (answer, _) = rpc(&url, Some(&a), subscribe("docs://a")).await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    let (answer, _) = rpc(&url, Some(&b), subscribe("docs://b")).await;
    assert_eq!(answer["result"], json!({}), "{answer}");

    // docs://a changes: A hears it; B, which did not subscribe to it, hears docs://b first.
    rpc(&url, Some(&b), touch(json!({"uri": "docs://a"}))).await;
    assert_eq!(updated(&next_update(&mut a_events).await), "docs://a");
    rpc(&url, Some(&a), touch(json!({"uri": "docs://b"}))).await;
    assert_eq!(updated(&next_update(&mut b_events).await), "docs://b");

    // The member sends an update of a URI nobody subscribed to, to every session with a
    // subscription, many times: dropped. Then a real one is the next event of each.
    let (flood, _) = rpc(
        &url,
        Some(&a),
        touch(json!({"uri": "docs://bogus", "everyone": true, "times": 500})),
    )
    .await;
    assert!(
        flood["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("notified 2 sessions")),
        "{flood}"
    );
    // A also hears of docs://b (the member sends it to everyone) though it did not subscribe.
    rpc(
        &url,
        Some(&a),
        touch(json!({"uri": "docs://b", "everyone": true})),
    )
    .await;
    rpc(&url, Some(&a), touch(json!({"uri": "docs://a"}))).await;
    assert_eq!(updated(&next_update(&mut a_events).await), "docs://a");
    assert_eq!(updated(&next_update(&mut b_events).await), "docs://b");

    // A flood of updates of a subscribed URI is coalesced and the stream goes on.
    rpc(
        &url,
        Some(&b),
        touch(json!({"uri": "docs://b", "times": 2000})),
    )
    .await;
    rpc(&url, Some(&a), touch(json!({"uri": "docs://a"}))).await;
    assert_eq!(updated(&next_update(&mut a_events).await), "docs://a");
    // B hears docs://b (coalesced: fewer events than updates), nothing else.
    assert_eq!(updated(&next_update(&mut b_events).await), "docs://b");
    let (answer, _) = rpc(&url, Some(&b), unsubscribe("docs://b")).await;
    assert_eq!(answer["result"], json!({}), "{answer}");

    // B cannot unsubscribe A's subscription: it is not B's.
    let (refused, _) = rpc(&url, Some(&b), unsubscribe("docs://a")).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not subscribed")),
        "{refused}"
    );
    rpc(&url, Some(&b), touch(json!({"uri": "docs://a"}))).await;
    assert_eq!(updated(&next_update(&mut a_events).await), "docs://a");

    // A unsubscribes: docs://a no longer reaches it; docs://b, now subscribed, does.
    let (answer, _) = rpc(&url, Some(&a), unsubscribe("docs://a")).await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    rpc(&url, Some(&a), subscribe("docs://b")).await;
    rpc(&url, Some(&a), touch(json!({"uri": "docs://a"}))).await;
    rpc(&url, Some(&a), touch(json!({"uri": "docs://b"}))).await;
    assert_eq!(updated(&next_update(&mut a_events).await), "docs://b");
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

#[tokio::test]
async fn bogus_subscriptions_are_refused_with_clear_errors() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["docs", "plain"]).await;
    let url = daemon.mcp_url("all");
    let (session, _) = open_session(&url).await;
    let long = format!("docs://{}", "x".repeat(5000));
    for (body, code, says) in [
        (subscribe("docs://nope"), -32002, "offers the resource"),
        (subscribe(""), -32602, "1 to"),
        (subscribe(&long), -32602, "1 to"),
        (
            subscribe("plain://x"),
            -32601,
            "does not offer resource subscriptions",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {}}),
            -32602,
            "params.uri",
        ),
        (unsubscribe("docs://a"), -32602, "not subscribed"),
    ] {
        let (answer, _) = rpc(&url, Some(&session), body.clone()).await;
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{body}: {answer}"
        );
    }
    // Without a session there is nothing to deliver updates to.
    let (answer, _) = rpc(&url, None, subscribe("docs://a")).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs a session")),
        "{answer}"
    );
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

#[tokio::test]
async fn a_2026_listen_request_gets_the_updates_of_its_own_resources() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["docs", "plain"]).await;
    let url = daemon.mcp_url("all");
    let listen = json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {"notifications": {"resourceSubscriptions": ["docs://a", "docs://nope", "plain://x"]},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(listen.to_string())
        .send()
        .await
        .expect("POST");
    let mut events = Events::new(response);
    let ack = events.next().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    // Only the URI that could be subscribed to is acknowledged.
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["docs://a"]),
        "{ack}"
    );
    let (session, _) = open_session(&url).await;
    rpc(
        &url,
        Some(&session),
        touch(json!({"uri": "docs://b", "everyone": true})),
    )
    .await;
    rpc(&url, Some(&session), touch(json!({"uri": "docs://a"}))).await;
    let update = next_update(&mut events).await;
    assert_eq!(updated(&update), "docs://a");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{update}"
    );
}

#[tokio::test]
async fn prompts_and_resources_list_changes_reach_listening_callers() {
    let servers = "mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: [\"*\"]
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["one"]).await;
    let url = daemon.mcp_url("all");
    let (session, _) = open_session(&url).await;
    let mut events = Events::get(&url, &session).await;
    // A 2026-07-28 listener that asked for prompt changes only.
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen",
                "params": {"notifications": {"promptsListChanged": true}}})
            .to_string(),
        )
        .send()
        .await
        .expect("POST");
    let mut prompts_only = Events::new(response);
    let ack = prompts_only.next().await;
    assert_eq!(
        ack["params"]["notifications"],
        json!({"promptsListChanged": true}),
        "{ack}"
    );

    // A member with prompts and resources comes.
    daemon.dir.write(
        "mcp/more.yaml",
        "mcp_servers:\n  more:\n    binary: mcp-echo\n    env: {RUST_LOG: warn, MCP_ECHO_PROMPTS: greet, MCP_ECHO_RESOURCES: \"more://r\"}\n",
    );
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < 3 {
        let message = events.next().await;
        heard.insert(message["method"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        heard.into_iter().collect::<Vec<_>>(),
        [
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
            "notifications/tools/list_changed"
        ]
    );
    let message = prompts_only.next().await;
    assert_eq!(
        message["method"], "notifications/prompts/list_changed",
        "{message}"
    );
    assert_eq!(
        message["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    // The session's capabilities say the lists change.
    let (_, init) = open_session(&url).await;
    assert_eq!(
        init["result"]["capabilities"]["prompts"]["listChanged"], true,
        "{init}"
    );
}
