//! Virtual servers through the real daemon: one endpoint offering the tools of many mcp-echo
//! servers (both protocol generations, as members and as clients), per-token lists, conflicts
//! reported, a member killed mid-call, a member added by a new file (with `list_changed` to a
//! GET stream and to a `subscriptions/listen` stream), mcpd restarted in the middle of a session, and hostile session ids.

use std::time::Duration;

use nix::sys::signal::Signal;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, Implementation,
    ProtocolVersion, Request, ServerResult, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use mcpd_tests::gw_support::{GW_START, GwDaemon};
use mcpd_tests::mcp_support::{BOTH, Client, Generation, arguments, call_text, connect};
use mcpd_tests::{GatewayUrls, lazy, server_entry, wait_for, wait_for_value};

const CALL: Duration = Duration::from_secs(20);

/// Two members of different generations and a virtual server over every server.
const TWO_MEMBERS: &str = r#"mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  two:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: "1"}
  all:
    aggregate: ["*"]
    description: every tool of this host
"#;

async fn start(servers: &str, members: &[&str]) -> GwDaemon {
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(members).await;
    daemon
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = tokio::time::timeout(CALL, client.list_all_tools())
        .await
        .expect("tools/list in time")
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    names
}

async fn listed(url: &str, token: Option<&str>, generation: Generation) -> Vec<String> {
    let (client, _) = connect(url, token, generation)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names = tool_names(&client).await;
    let _ = client.cancel().await;
    names
}

/// The error message of a call that must fail.
async fn call_error(client: &Client, tool: &str, args: Value) -> String {
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments(args));
    match tokio::time::timeout(CALL, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} did not answer within {CALL:?}"))
    {
        Ok(result) => panic!("{tool} succeeded: {result:?}"),
        Err(error) => error.to_string(),
    }
}

/// A raw JSON-RPC POST; returns the status, the session header and the body as JSON (the
/// last `data:` line of an SSE answer).
async fn post(
    url: &str,
    session: Option<&str>,
    token: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().expect("visible session id").to_owned());
    let text = response.text().await.expect("body");
    let json_text = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .map_or(text.as_str(), |data| data);
    let value = serde_json::from_str(json_text).unwrap_or(Value::String(text.clone()));
    (status, session, value)
}

fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

fn call_body(tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
}

#[tokio::test]
async fn lists_and_calls_through_one_endpoint_with_both_generations() {
    let daemon = start(TWO_MEMBERS, &["one", "two"]).await;
    let url = daemon.mcp_url("all");
    let expected: Vec<String> = ["one", "two"]
        .iter()
        .flat_map(|m| ["add", "echo", "progress", "sleep"].map(|t| format!("{m}_{t}")))
        .collect();
    for generation in BOTH {
        let (client, mut progress) = connect(&url, None, generation)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tool_names(&client).await, expected, "{generation:?}");
        assert_eq!(
            call_text(&client, "one_echo", json!({"text": "hi one"})).await,
            "hi one"
        );
        assert_eq!(
            call_text(&client, "two_add", json!({"a": 2, "b": 3})).await,
            "5"
        );
        // Progress notifications of a member reach the caller through the virtual server.
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("two_progress")
                .with_arguments(arguments(json!({"steps": 3, "interval_ms": 20}))),
        ));
        let handle = client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send the progress call");
        let response = tokio::time::timeout(CALL, handle.await_response())
            .await
            .expect("progress in time")
            .expect("progress");
        let ServerResult::CallToolResult(result) = response else {
            panic!("unexpected {response:?}")
        };
        assert_eq!(mcpd_tests::mcp_support::text(&result), "completed 3 steps");
        let mut steps = 0;
        while let Ok((_, note)) = progress.try_recv() {
            steps += 1;
            assert_eq!(note.total, Some(3.0));
        }
        assert_eq!(steps, 3, "{generation:?}: progress notifications relayed");
        // An unknown exposed name is a clear error, not an empty success.
        let error = call_error(&client, "three_echo", json!({"text": "x"})).await;
        assert!(error.contains("unknown tool \"three_echo\""), "{error}");
        let _ = client.cancel().await;
    }

    // Each tool is the member's own, under its exposed name (title, annotations, output
    // schema and all).
    let (direct, _) = connect(&daemon.mcp_url("two"), None, Generation::Session)
        .await
        .unwrap();
    let (through, _) = connect(&url, None, Generation::Session).await.unwrap();
    let through_tools = through.list_all_tools().await.unwrap();
    for mut tool in direct.list_all_tools().await.unwrap() {
        let exposed = format!("two_{}", tool.name);
        let found = through_tools
            .iter()
            .find(|t| t.name == exposed)
            .unwrap_or_else(|| panic!("{exposed} listed"));
        tool.name = exposed.into();
        assert_eq!(
            serde_json::to_value(found).unwrap(),
            serde_json::to_value(&tool).unwrap()
        );
    }
    let _ = (direct.cancel().await, through.cancel().await);

    // Listed with its members; mcpctl shows it.
    let registry = daemon.registry().await;
    let entry = registry["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "all")
        .expect("all in the registry")
        .clone();
    assert_eq!(entry["members"], json!(["one", "two"]), "{entry}");
    assert_eq!(entry["tools_count"], 8);
    assert_eq!(entry["status"], "running");
    let status = daemon.status();
    let all = server_entry(&status, "all").expect("all in status");
    assert_eq!(all["state"], "running");
    assert_eq!(all["pid"], Value::Null);
    assert_eq!(all["members"][1]["name"], "two");
    assert_eq!(all["members"][1]["state"], "running");
    assert_eq!(all["members"][1]["stale"], false);
    let show = daemon.mcpctl(&["show", "all"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("member:") && text.contains("two (running)"),
        "{text}"
    );
    let tools = daemon.mcpctl(&["tools", "all"]);
    assert!(String::from_utf8_lossy(&tools.stdout).contains("two_sleep"));
    // RFC 9728 metadata of its own.
    let metadata: Value =
        reqwest::get(daemon.url("/.well-known/oauth-protected-resource/api/v1/mcp/all/mcp"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(
        metadata["resource"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/mcp/all/mcp")
    );
}

/// The records of the audit file (`logs/audit*.log`).
fn audit_records(daemon: &GwDaemon) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(daemon.dir.path().join("logs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("audit.") && name.ends_with(".log")
        })
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// A token for `subject` with one scope.
fn token_for(daemon: &GwDaemon, subject: &str, scope: &str) -> String {
    let output = daemon.mcpctl(&["token", "--sub", subject, "--scope", scope]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn each_token_sees_what_both_rule_sets_allow() {
    let servers = r#"mcp_servers:
  guarded:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    oauth:
      required: true
      scopes: [user]
      tools: {"add": [admin], "*": [user]}
  open:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: [guarded, open]
    oauth:
      required: true
      scopes: [user, tools:read]
      tools: {"open_sleep": [admin]}
"#;
    let daemon = start(servers, &["guarded", "open"]).await;
    let url = daemon.mcp_url("all");
    let user = daemon.token(&["user"]);
    let reader = daemon.token(&["tools:read"]);
    let other_user = token_for(&daemon, "someone-else", "user");
    for generation in BOTH {
        assert_eq!(
            listed(&url, Some(&user), generation).await,
            [
                "guarded_echo",
                "guarded_progress",
                "guarded_sleep",
                "open_add",
                "open_echo",
                "open_progress"
            ],
            "user over {generation:?}"
        );
        // tools:read sees the whole catalog of the members that admit it, and `guarded`
        // admits only `user`.
        assert_eq!(
            listed(&url, Some(&reader), generation).await,
            ["open_add", "open_echo", "open_progress", "open_sleep"],
            "tools:read over {generation:?}"
        );
    }
    // Calls are decided by both rule sets: 403 with the scopes that would allow them.
    let (_, session, _) = post(&url, None, Some(&user), initialize_body()).await;
    let session = session.expect("a session id");
    for (tool, scope) in [("guarded_add", "admin"), ("open_sleep", "admin")] {
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&user)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .body(call_body(tool, json!({"a": 1, "b": 2, "ms": 1})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{tool}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("insufficient_scope") && challenge.contains(scope),
            "{challenge}"
        );
    }
    let (status, _, answer) = post(
        &url,
        Some(&session),
        Some(&user),
        call_body("guarded_echo", json!({"text": "ok"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
    // The audit log names the virtual server and the member, for calls made and refused.
    let records = wait_for_value(CALL, "audit records of the virtual server", || async {
        let records: Vec<Value> = audit_records(&daemon)
            .into_iter()
            .filter(|r| r["server"] == "all")
            .collect();
        (records.len() >= 3).then_some(records)
    })
    .await;
    let echo = records
        .iter()
        .find(|r| r["tool"] == "echo")
        .expect("the echo call audited");
    assert_eq!(echo["member"], "guarded", "{echo}");
    assert_eq!(echo["decision"], "allow", "{echo}");
    assert_eq!(echo["is_error"], false, "{echo}");
    let add = records
        .iter()
        .find(|r| r["tool"] == "add")
        .expect("the refused add audited");
    assert_eq!(add["member"], "guarded", "{add}");
    assert_eq!(add["decision"], "deny", "{add}");
    assert_eq!(add["status"], 403, "{add}");
    // The session belongs to its caller: another subject's requests with it find none.
    let (status, _, _) = post(
        &url,
        Some(&session),
        Some(&other_user),
        call_body("open_echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    // No token: 401 with the virtual server's own metadata.
    let (status, _, _) = post(&url, None, None, initialize_body()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn names_that_collide_or_break_the_rules_are_left_out_and_reported() {
    let long = "t".repeat(70);
    let servers = format!(
        r#"mcp_servers:
  a:
    binary: mcp-echo
    env: {{RUST_LOG: warn, MCP_ECHO_EXTRA_TOOLS: "b_echo,{long},dotted.name"}}
  a_b:
    binary: mcp-echo
    env: {{RUST_LOG: warn}}
  all:
    aggregate: ["a*"]
    tools: ["!*_sleep", "!*_progress"]
"#
    );
    let daemon = start(&servers, &["a", "a_b"]).await;
    let url = daemon.mcp_url("all");
    for generation in BOTH {
        assert_eq!(
            listed(&url, None, generation).await,
            ["a_add", "a_b_add", "a_echo"],
            "{generation:?}"
        );
    }
    let (client, _) = connect(&url, None, Generation::Session).await.unwrap();
    let error = call_error(&client, "a_b_echo", json!({"text": "x"})).await;
    assert!(error.contains("both are left out"), "{error}");
    let _ = client.cancel().await;

    let status = daemon.mcpctl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(
            "\"a_b_echo\" is produced by tool \"b_echo\" of server \"a\" and tool \"echo\" of server \"a_b\""
        ),
        "{text}"
    );
    assert!(text.contains(&format!("a_{long}")), "{text}");
    assert!(text.contains("a_dotted.name"), "{text}");
    let validate = daemon.mcpctl(&["validate"]);
    let text = String::from_utf8_lossy(&validate.stdout);
    assert!(text.contains("a_b_echo"), "{text}");
}

#[tokio::test]
async fn a_member_killed_mid_call_gives_an_error_naming_it_and_the_others_answer() {
    let servers = r#"mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    restart: {policy: never}
  two:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: "1"}
    restart: {policy: never}
  three:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  four:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_STATELESS_ONLY: "1"}
    restart: {policy: never}
  all:
    aggregate: ["*"]
"#;
    let daemon = start(servers, &["one", "two", "three", "four"]).await;
    let url = daemon.mcp_url("all");
    // A member of both generations under a session client (a kept member session), a
    // session member under a stateless one, a 2026-07-28 member under a session client.
    for (generation, victim) in [
        (Generation::Session, "one"),
        (Generation::Stateless, "two"),
        (Generation::Session, "four"),
    ] {
        let (client, mut progress) = connect(&url, None, generation).await.unwrap();
        let request = ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new(format!("{victim}_progress"))
                .with_arguments(arguments(json!({"steps": 1000, "interval_ms": 50}))),
        ));
        let handle = client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send");
        // The call runs in the member once its first notification arrives.
        tokio::time::timeout(CALL, progress.recv())
            .await
            .expect("a first progress notification")
            .expect("progress channel open");
        let pid = daemon.server_pid(victim).expect("the victim's pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let outcome = tokio::time::timeout(CALL, handle.await_response())
            .await
            .expect("the call ends");
        let error = match outcome {
            Ok(response) => panic!("{generation:?}: a killed member answered {response:?}"),
            Err(error) => error.to_string(),
        };
        let named = format!("member server \"{victim}\"");
        assert!(error.contains(&named), "{error}");
        // The other members keep answering; calls to the dead one say which it is.
        assert_eq!(
            call_text(&client, "three_echo", json!({"text": "still here"})).await,
            "still here"
        );
        let error = call_error(&client, &format!("{victim}_echo"), json!({"text": "x"})).await;
        assert!(error.contains(&named), "{error}");
        let _ = client.cancel().await;
    }
    // Once the supervisor has seen it, the error says the member's state.
    let (client, _) = connect(&url, None, Generation::Session).await.unwrap();
    let error = wait_for_value(GW_START, "one's state in the error", || async {
        let error = call_error(&client, "one_echo", json!({"text": "x"})).await;
        (error.contains("is failed") || error.contains("is stopped")).then_some(error)
    })
    .await;
    assert!(
        error.contains("member server \"one\" of virtual server all"),
        "{error}"
    );
    let _ = client.cancel().await;
}

/// A client that reports `notifications/tools/list_changed`.
#[derive(Clone)]
struct Watching {
    changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Watching {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("watching", "0"),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.changed.send(());
    }
}

#[tokio::test]
async fn a_member_added_by_a_new_file_appears_and_listening_clients_hear_of_it() {
    let servers = r#"mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: ["*"]
"#;
    let daemon = start(servers, &["one"]).await;
    let url = daemon.mcp_url("all");
    let (changed, mut heard) = mpsc::unbounded_channel();
    let client: RunningService<RoleClient, Watching> = Watching { changed }
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url.clone()),
            ),
            ClientLifecycleMode::Initialize,
        )
        .await
        .expect("connect");
    let names = |client: &RunningService<RoleClient, Watching>| {
        let peer = client.peer().clone();
        async move {
            let mut names: Vec<String> = peer
                .list_all_tools()
                .await
                .expect("tools/list")
                .into_iter()
                .map(|t| t.name.into_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        names(&client).await,
        ["one_add", "one_echo", "one_progress", "one_sleep"]
    );
    // A 2026-07-28 client listens with subscriptions/listen.
    let (stateless, _) = connect(&url, None, Generation::Stateless).await.unwrap();
    let mut subscription = tokio::time::timeout(
        CALL,
        stateless
            .peer()
            .listen(SubscriptionFilter::builder().tools_list_changed().build()),
    )
    .await
    .expect("subscriptions/listen in time")
    .expect("subscriptions/listen acknowledged");
    assert_eq!(subscription.acknowledged().tools_list_changed, Some(true));
    daemon.dir.write(
        "mcp/more.yaml",
        "mcp_servers:\n  three:\n    binary: mcp-echo\n    env: {RUST_LOG: warn}\n",
    );
    tokio::time::timeout(GW_START, heard.recv())
        .await
        .expect("list_changed reaches the listening client")
        .expect("channel open");
    let notification = tokio::time::timeout(GW_START, subscription.next())
        .await
        .expect("list_changed reaches the subscription")
        .expect("the subscription stream")
        .expect("a notification");
    assert!(
        matches!(
            notification,
            rmcp::model::ServerNotification::ToolListChangedNotification(_)
        ),
        "{notification:?}"
    );
    let _ = stateless.cancel().await;
    wait_for_value(GW_START, "three's tools through all", || async {
        let now = names(&client).await;
        now.contains(&"three_echo".to_owned()).then_some(())
    })
    .await;
    let _ = client.cancel().await;
}

#[tokio::test]
async fn a_session_continues_across_a_restart_of_mcpd() {
    let mut daemon = start(TWO_MEMBERS, &["one", "two"]).await;
    let url = daemon.mcp_url("all");
    let (status, session, _) = post(&url, None, None, initialize_body()).await;
    assert_eq!(status, 200);
    let session = session.expect("a sealed session id");
    echoed(&url, &session, "two_echo", "before").await;

    // Stop mcpd (its servers go with it) and start it again on the same state directory.
    daemon.restart().await;
    daemon.wait_running(&["one", "two"]).await;
    for tool in ["two_echo", "one_echo"] {
        let (status, _, answer) = post(
            &url,
            Some(&session),
            None,
            call_body(tool, json!({"text": "after"})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "after", "{answer}");
    }

    // The same session with an rmcp client of the session generation after a member restart:
    // the member's new process gets a new member session.
    let pid = daemon.server_pid("two").expect("two's pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for(GW_START, lazy(|| "two restarted".to_owned()), || async {
        daemon.server_pid("two").is_some_and(|now| now != pid)
    })
    .await;
    daemon.wait_running(&["two"]).await;
    echoed(&url, &session, "two_echo", "again").await;
}

#[tokio::test]
async fn hostile_session_ids_and_bodies_get_clear_answers() {
    let servers = format!("{TWO_MEMBERS}  other:\n    aggregate: [one]\n    prefix: never\n");
    let daemon = start(&servers, &["one", "two"]).await;
    let url = daemon.mcp_url("all");
    let (_, session, _) = post(&url, None, None, initialize_body()).await;
    let session = session.expect("a session id");
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});

    let mut tampered = session.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_key = mcpd::virtuals::seal::SessionKey::from_bytes(&[7; 32]).seal(
        "all",
        &mcpd::virtuals::seal::SessionFacts {
            protocol_version: "2025-11-25".into(),
            principal: mcpd::virtuals::seal::principal(None, None),
            issued_at: mcpd::virtuals::seal::unix_secs(std::time::SystemTime::now()),
            nonce: 1,
            capabilities: 0,
        },
    );
    let bad: Vec<(&str, String)> = vec![
        ("tampered", tampered),
        ("truncated", session[..session.len() / 2].to_owned()),
        ("another key", other_key),
        ("empty", String::new()),
        ("junk", "not-base64-!!".to_owned()),
        ("huge", "A".repeat(4000)),
    ];
    for (what, id) in &bad {
        let (status, _, body) = post(&url, Some(id), None, list.clone()).await;
        assert_eq!(status, 404, "{what}: {body}");
    }
    // An id of one virtual server is no session of another.
    let (status, _, _) = post(&daemon.mcp_url("other"), Some(&session), None, list.clone()).await;
    assert_eq!(status, 404);
    // `prefix: never` publishes the one member under a second name, with its own names.
    let (_, _, body) = post(&daemon.mcp_url("other"), None, None, list.clone()).await;
    let mut names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["add", "echo", "progress", "sleep"]);
    // The daemon is unharmed and the real id still works.
    let (status, _, body) = post(&url, Some(&session), None, list.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"].as_array().map(Vec::len), Some(8));

    // Bodies: a batch, not JSON, a call without a name, an unknown method.
    let (status, _, body) = post(&url, Some(&session), None, json!([list, list])).await;
    assert_eq!(body["error"]["code"], -32600, "{status} {body}");
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, _, body) = post(
        &url,
        Some(&session),
        None,
        json!({"jsonrpc": "2.0", "id": 9, "method": "no/such/method"}),
    )
    .await;
    assert_eq!(body["error"]["code"], -32601, "{body}");
    // A session its client ended is gone.
    assert_eq!(end_session(&url, &session).await, 200);
    let (status, _, _) = post(&url, Some(&session), None, list.clone()).await;
    assert_eq!(status, 404);
    // A GET without a session is not a stream.
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_in_the_member() {
    let daemon = start(TWO_MEMBERS, &["one", "two"]).await;
    let url = daemon.mcp_url("all");
    let (_, session, _) = post(&url, None, None, initialize_body()).await;
    let session = session.expect("a session id");
    // A call that would run for ten minutes in the session-based member.
    let call = {
        let (url, session) = (url.clone(), session.clone());
        tokio::spawn(async move {
            let body = json!({"jsonrpc": "2.0", "id": "long-1", "method": "tools/call",
                "params": {"name": "two_sleep", "arguments": {"ms": 600_000}}});
            post(&url, Some(&session), None, body).await
        })
    };
    wait_for(GW_START, "the member to start the call", || async {
        let logs = daemon.mcpctl(&["logs", "two", "-n", "50"]);
        String::from_utf8_lossy(&logs.stdout).contains("call sleep")
    })
    .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "long-1", "reason": "the user gave up"}});
    let (status, _, _) = post(&url, Some(&session), None, cancel).await;
    assert_eq!(status, 202);
    // The member stops the call, so its answer stream ends long before ten minutes.
    tokio::time::timeout(CALL, call)
        .await
        .expect("the cancelled call ends")
        .expect("the call task");
}

/// Lines of `mcpctl logs NAME` that contain `needle`.
fn log_lines(daemon: &GwDaemon, name: &str, needle: &str) -> usize {
    let logs = daemon.mcpctl(&["logs", name, "-n", "1000"]);
    String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

/// Ends `session` with DELETE; the answer's status.
async fn end_session(url: &str, session: &str) -> u16 {
    reqwest::Client::new()
        .delete(url)
        .header("mcp-session-id", session)
        .send()
        .await
        .expect("DELETE answered")
        .status()
        .as_u16()
}

/// Calls `tool` (an echo) with `text` in `session` and checks the answer says it back.
async fn echoed(url: &str, session: &str, tool: &str, text: &str) {
    let (status, _, answer) = post(
        url,
        Some(session),
        None,
        call_body(tool, json!({ "text": text })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
}

/// A daemon with a session-only member `two` (`extra_env` added to its `env:`) that logs each
/// session it opens and ends, under a virtual server `all`; its URL, and a session opened on
/// it.
async fn session_logging_member(extra_env: &str) -> (GwDaemon, String, String) {
    let servers = format!(
        r#"mcp_servers:
  two:
    binary: mcp-echo
    env:
      MCP_ECHO_SESSION_ONLY: "1"
      RUST_LOG: "warn,rmcp::transport::streamable_http_server::session::local=info,rmcp::transport::worker=debug"
      {extra_env}
  all:
    aggregate: [two]
"#
    );
    let daemon = start(&servers, &["two"]).await;
    let url = daemon.mcp_url("all");
    let (_, session, _) = post(&url, None, None, initialize_body()).await;
    (daemon, url, session.expect("a session id"))
}

#[tokio::test]
async fn a_member_session_the_member_forgot_is_opened_again() {
    // `two` forgets a session idle for 300 ms.
    let (daemon, url, session) = session_logging_member(r#"MCP_ECHO_SESSION_IDLE_MS: "300""#).await;
    for round in 0..2 {
        let opened_before = log_lines(&daemon, "two", "create new session");
        echoed(&url, &session, "two_echo", &format!("round {round}")).await;
        // Each call opened a member session: the first had none, the second found its
        // session forgotten (404) and opened a new one.
        wait_for(
            GW_START,
            "the member's log of the session the call opened",
            || async { log_lines(&daemon, "two", "create new session") > opened_before },
        )
        .await;
        // Wait until the member has ended every session but the probe's: the one this call
        // used is gone, so the next call meets a 404 and must open a new one.
        wait_for(
            GW_START,
            "the member to forget the call's session",
            || async {
                let opened = log_lines(&daemon, "two", "create new session");
                let ended = log_lines(&daemon, "two", "IdleTimeout");
                opened >= 2 && opened == ended + 1
            },
        )
        .await;
    }
}

#[tokio::test]
async fn ending_a_session_ends_its_member_sessions() {
    // `two` keeps sessions until they are ended.
    let (daemon, url, session) = session_logging_member("").await;
    let opened_before = log_lines(&daemon, "two", "create new session");
    echoed(&url, &session, "two_echo", "hello").await;
    wait_for(GW_START, "the member session the call opened", || async {
        log_lines(&daemon, "two", "create new session") > opened_before
    })
    .await;
    let ended_before = log_lines(&daemon, "two", "worker quit");

    assert_eq!(end_session(&url, &session).await, 200);
    // The member ended the session the call used (its probe's and the watch's live on).
    wait_for(
        GW_START,
        "the member to end the caller's session",
        || async { log_lines(&daemon, "two", "worker quit") > ended_before },
    )
    .await;
    // Ending it twice is a 404 and tells the member nothing more.
    assert_eq!(end_session(&url, &session).await, 404);
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}
