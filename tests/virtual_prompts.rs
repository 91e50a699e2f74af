//! Virtual servers beyond tools, through the real daemon over mcp-echo members: prompts and
//! resources listed and routed with both protocol generations (conflicts left out and
//! reported in `mcpctl status` and `validate`, an ambiguous template match refused), the
//! capabilities declared only when a member has them; a member that hangs served from its
//! cached tools and shown stale; and the per-caller cap (`max_calls_per_caller`).

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use mcpd_tests::gw_support::{GW_START, GwDaemon};
use mcpd_tests::mcp_support::{BOTH, Client, Generation, arguments, connect};
use mcpd_tests::{GatewayUrls, lazy, wait_for, wait_for_value};

const CALL: Duration = Duration::from_secs(20);

/// Two members offering prompts and resources (one URI both offer, two templates that both
/// match `echo://one/items/N`), one member of tools only, and virtual servers over them.
const CONTENT: &str = r#"mcp_servers:
  one:
    binary: mcp-echo
    env:
      RUST_LOG: warn
      MCP_ECHO_LABEL: one
      MCP_ECHO_PROMPTS: greet
      MCP_ECHO_RESOURCES: "echo://one/readme,echo://shared/motd"
      MCP_ECHO_TEMPLATES: "echo://one/items/{id}"
  two:
    binary: mcp-echo
    env:
      RUST_LOG: warn
      MCP_ECHO_SESSION_ONLY: "1"
      MCP_ECHO_LABEL: two
      MCP_ECHO_PROMPTS: "greet,summary"
      MCP_ECHO_RESOURCES: "echo://two/readme,echo://shared/motd"
      MCP_ECHO_TEMPLATES: "echo://{host}/items/{id}"
  plain:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: [one, two, plain]
  tools-only:
    aggregate: [plain]
"#;

async fn sorted<T>(
    what: &str,
    names: impl Future<Output = Result<Vec<T>, rmcp::ServiceError>>,
    key: impl Fn(T) -> String,
) -> Vec<String> {
    let mut names: Vec<String> = tokio::time::timeout(CALL, names)
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .into_iter()
        .map(key)
        .collect();
    names.sort();
    names
}

async fn prompt_text(client: &Client, name: &str, who: &str) -> String {
    let params = GetPromptRequestParams::new(name).with_arguments(arguments(json!({"who": who})));
    let result = tokio::time::timeout(CALL, client.get_prompt(params))
        .await
        .expect("prompts/get in time")
        .unwrap_or_else(|e| panic!("prompts/get {name}: {e}"));
    serde_json::to_value(&result.messages[0].content).unwrap()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn read(client: &Client, uri: &str) -> Result<String, String> {
    let result = tokio::time::timeout(
        CALL,
        client.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await
    .expect("resources/read in time")
    .map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(&result.contents[0]).unwrap()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Waits until the members' prompts are in the virtual server's catalog (the probe lists
/// them with the tools, once the member is ready).
async fn wait_offered(daemon: &GwDaemon) {
    wait_for(GW_START, "the members' conflicts in mcpctl status", || {
        let text = String::from_utf8_lossy(&daemon.mcpctl(&["status"]).stdout).into_owned();
        std::future::ready(text.contains("echo://shared/motd"))
    })
    .await;
}

#[tokio::test]
async fn prompts_and_resources_are_listed_and_routed_with_both_generations() {
    let daemon = GwDaemon::start(CONTENT, "").await;
    daemon.wait_running(&["one", "two", "plain"]).await;
    wait_offered(&daemon).await;
    let url = daemon.mcp_url("all");
    for generation in BOTH {
        let (client, _) = connect(&url, None, generation)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let capabilities = &client.peer_info().expect("server info").capabilities;
        assert!(
            capabilities.prompts.is_some() && capabilities.resources.is_some(),
            "{generation:?}: {capabilities:?}"
        );
        assert_eq!(
            sorted("prompts/list", client.list_all_prompts(), |p| p.name).await,
            ["one_greet", "two_greet", "two_summary"],
            "{generation:?}"
        );
        assert_eq!(
            sorted("resources/list", client.list_all_resources(), |r| r
                .uri
                .clone())
            .await,
            ["echo://one/readme", "echo://two/readme"],
            "{generation:?}: the URI both offer is left out"
        );
        assert_eq!(
            sorted(
                "resources/templates/list",
                client.list_all_resource_templates(),
                |t| t.uri_template.clone()
            )
            .await,
            ["echo://one/items/{id}", "echo://{host}/items/{id}"],
            "{generation:?}"
        );
        // Routed to the member with its own prompt name.
        assert_eq!(
            prompt_text(&client, "two_summary", "ann").await,
            "summary from two: hello ann"
        );
        assert_eq!(
            prompt_text(&client, "one_greet", "bo").await,
            "greet from one: hello bo"
        );
        // Resources by the member that listed them, else by the one template that matches.
        assert_eq!(
            read(&client, "echo://one/readme").await.unwrap(),
            "echo://one/readme read by one"
        );
        assert_eq!(
            read(&client, "echo://two/items/7").await.unwrap(),
            "echo://two/items/7 read by two"
        );
        let ambiguous = read(&client, "echo://one/items/7").await.unwrap_err();
        assert!(
            ambiguous.contains("templates of servers \"one\" and \"two\""),
            "{ambiguous}"
        );
        let conflict = read(&client, "echo://shared/motd").await.unwrap_err();
        assert!(
            conflict.contains("is offered by servers \"one\" and \"two\""),
            "{conflict}"
        );
        let missing = read(&client, "nothing://here").await.unwrap_err();
        assert!(
            missing.contains("no member of virtual server all offers"),
            "{missing}"
        );
        let unknown = tokio::time::timeout(
            CALL,
            client.get_prompt(GetPromptRequestParams::new("one_nope")),
        )
        .await
        .expect("in time")
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("unknown prompt"), "{unknown}");
        let _ = client.cancel().await;
    }

    // A virtual server whose members offer no prompt or resource declares neither.
    let (client, _) = connect(&daemon.mcp_url("tools-only"), None, Generation::Session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let capabilities = &client.peer_info().expect("server info").capabilities;
    assert!(
        capabilities.prompts.is_none() && capabilities.resources.is_none(),
        "{capabilities:?}"
    );
    assert!(capabilities.tools.is_some());
    let _ = client.cancel().await;

    // Conflicts name both sources in status and validate.
    let needle = "resource \"echo://shared/motd\" is offered by servers \"one\" and \"two\"";
    for command in ["status", "validate"] {
        let out = daemon.mcpctl(&[command]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "mcpctl {command}: {text}");
    }
}

/// A raw 2026-07-28 request to a virtual server.
async fn stateless(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    response.json().await.expect("JSON answer")
}

#[tokio::test]
async fn stateless_lists_of_a_virtual_server_are_private() {
    let daemon = GwDaemon::start(CONTENT, "").await;
    daemon.wait_running(&["one", "two", "plain"]).await;
    wait_offered(&daemon).await;
    let url = daemon.mcp_url("all");
    let meta = json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}}});
    for method in [
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    ] {
        let answer = stateless(&url, method, meta.clone()).await;
        assert_eq!(
            answer["result"]["cacheScope"], "private",
            "{method}: {answer}"
        );
        assert_eq!(
            answer["result"]["resultType"], "complete",
            "{method}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_hung_member_is_served_from_its_cached_tools_and_shown_stale() {
    let servers = r#"mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    health: {interval: 200ms, timeout: 300ms, failures: 100000}
  two:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: ["*"]
"#;
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["one", "two"]).await;
    let pid = daemon.server_pid("one").expect("pid of one");
    let show = || String::from_utf8_lossy(&daemon.mcpctl(&["show", "all"]).stdout).into_owned();
    assert!(
        show().contains("one (running), tools cached at"),
        "{}",
        show()
    );
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP one");
    // Continued however the test ends, so the daemon can stop it.
    struct Continue(i32);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
        }
    }
    let stopped = Continue(pid);

    let text = wait_for_value(
        GW_START,
        lazy(|| format!("one shown stale: {}", show())),
        || {
            let text = show();
            std::future::ready(text.contains("stale").then_some(text))
        },
    )
    .await;
    assert!(
        text.lines()
            .any(|l| l.contains("one (running), tools cached at") && l.ends_with(", stale")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("two (running)") && l.contains("stale")),
        "{text}"
    );
    let registry = daemon.registry().await;
    let all = registry["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "all")
        .unwrap();
    let one = all["member_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "one")
        .unwrap();
    assert_eq!(one["stale"], true, "{all}");
    assert!(one["tools_cached_at"].as_str().is_some(), "{all}");

    // Lists never wait on the hung member: its tools come from the cache.
    for generation in BOTH {
        let (client, _) = connect(&daemon.mcp_url("all"), None, generation)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let names = sorted("tools/list", client.list_all_tools(), |t| {
            t.name.into_owned()
        })
        .await;
        assert!(
            names.contains(&"one_echo".to_owned()) && names.contains(&"two_echo".to_owned()),
            "{names:?}"
        );
        let _ = client.cancel().await;
    }

    drop(stopped);
    wait_for(GW_START, "one no longer stale", || {
        let text = show();
        std::future::ready(!text.contains("stale"))
    })
    .await;
}

/// A raw `tools/call` through the virtual server (no session: a stateless caller).
async fn raw_call(url: &str, tool: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": tool, "arguments": args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let text = response.text().await.expect("body");
    let data = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .unwrap_or(text.as_str());
    serde_json::from_str(data).unwrap_or(Value::String(text.clone()))
}

#[tokio::test]
async fn a_caller_over_its_cap_is_refused_at_once_and_slots_come_back() {
    let servers = r#"mcp_servers:
  one:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  all:
    aggregate: [one]
    max_calls_per_caller: 2
"#;
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["one"]).await;
    let url = daemon.mcp_url("all");

    // Two calls that would run for a long time, dropped (the client goes away) later. The
    // round is tried again until the third call was seen refused while both ran (on a loaded
    // machine they may start late, or fail before the third call is tried).
    let (refused, long) = wait_for_value(GW_START * 2, "a third call refused", || {
        let url = url.clone();
        async move {
            let long: Vec<_> = (0..2)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        raw_call(&url, "one_sleep", json!({"ms": 600_000})).await
                    })
                })
                .collect();
            while !long.iter().all(|task| task.is_finished()) {
                let answer = raw_call(&url, "one_echo", json!({"text": "x"})).await;
                if answer["error"]["code"] == -32012 {
                    return Some((answer, long));
                }
            }
            None
        }
    })
    .await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_calls_per_caller") && message.contains("(2)"),
        "{refused}"
    );
    // The client gives up on them: their slots come back.
    for task in long {
        task.abort();
    }
    let answer = wait_for_value(
        GW_START,
        "a call passing once the others went away",
        || async {
            let answer = raw_call(&url, "one_echo", json!({"text": "back"})).await;
            answer.get("result").is_some().then_some(answer)
        },
    )
    .await;
    assert_eq!(answer["result"]["content"][0]["text"], "back", "{answer}");

    // Calls that finish give theirs back too. A round of two short calls is tried again
    // until the third call was seen refused while both ran (a loaded machine may start them
    // late).
    let short = wait_for_value(GW_START, "a third call refused while two run", || {
        let url = url.clone();
        async move {
            let short: Vec<_> = (0..2)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(
                        async move { raw_call(&url, "one_sleep", json!({"ms": 3000})).await },
                    )
                })
                .collect();
            while !short.iter().all(|task| task.is_finished()) {
                let answer = raw_call(&url, "one_echo", json!({"text": "x"})).await;
                if answer["error"]["code"] == -32012 {
                    let mut answers = Vec::new();
                    for task in short {
                        answers.push(task.await.expect("call task"));
                    }
                    // It counts only if both short calls held a slot: one refused itself
                    // means a slot of the calls that went away was not back yet.
                    let both_ran = answers
                        .iter()
                        .all(|answer| answer["error"]["code"] != -32012);
                    return both_ran.then_some(answers);
                }
            }
            None
        }
    })
    .await;
    for answer in short {
        assert!(answer.get("result").is_some(), "{answer}");
    }
    let answer = raw_call(&url, "one_echo", json!({"text": "again"})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "again", "{answer}");
}
