//! Requests a server sends back to its client (sampling, elicitation) reach the client whose
//! call caused them, through mcpd: the official TypeScript "everything" server in stdio mode
//! (`shared` and `per-client`), driven by several official Python SDK clients at once, each
//! answering with its own text, so an answer that reached the wrong client shows.

use std::time::Duration;

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::{everything_server, python_json, require_python_sdk};
use serde_json::{Value, json};

/// Runs tests/interop/backchannel_client.py against `url` with `plan`; its JSON output.
async fn clients(url: &str, plan: Value) -> Value {
    python_json(
        "backchannel_client.py",
        &[url, &plan.to_string()],
        Duration::from_secs(180),
    )
    .await
}

fn everything(sessions: &str) -> String {
    format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [stdio]
    transport: stdio
    sessions: {sessions}
",
        everything_server().display()
    )
}

/// The texts of one client's tool result, joined.
fn text(outcome: &Value) -> String {
    outcome["texts"]
        .as_array()
        .map(|texts| {
            texts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

const SAMPLE: &str = "trigger-sampling-request";

#[tokio::test]
async fn a_shared_stdio_server_asks_the_client_whose_call_caused_the_request() {
    require_python_sdk();
    let daemon = GwDaemon::start(&everything("shared"), "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let sample = json!([SAMPLE, {"prompt": "hello", "maxTokens": 10}]);
    let out = clients(
        &url,
        json!({
            "sampling": sample,
            "elicitation": ["trigger-elicitation-request", {}],
            "ambiguous": sample,
            "no_capability": sample,
            "disconnect": sample,
        }),
    )
    .await;

    // Two clients one after the other: each is asked, and each gets its own answer back.
    for (scenario, mark) in [("sampling", "sampled by "), ("elicitation", "name-of-")] {
        for (me, other) in [("A", "B"), ("B", "A")] {
            let outcome = &out[scenario][me];
            let text = text(outcome);
            assert_eq!(outcome["is_error"], false, "{scenario} {me}: {out}");
            assert!(
                text.contains(&format!("{mark}{me}")),
                "{scenario} {me}: {out}"
            );
            assert!(
                !text.contains(&format!("{mark}{other}")),
                "{scenario} {me}: {out}"
            );
            assert_eq!(outcome["questions"], json!([scenario]), "{out}");
        }
    }

    // A's request pending while B calls too: over stdio mcpd cannot tell whose B's request
    // is, so B's is refused (B's tool reports it, B is never asked) and A's goes on.
    let ambiguous = &out["ambiguous"];
    assert!(text(&ambiguous["A"]).contains("sampled by A"), "{out}");
    assert_eq!(ambiguous["B"]["is_error"], true, "{out}");
    assert!(
        text(&ambiguous["B"]).contains("cannot tell which client"),
        "{out}"
    );
    assert_eq!(ambiguous["B"]["questions"], json!([]), "{out}");

    // A client that did not declare sampling: the server is refused at once, and the tool's
    // error reaches the client.
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );

    // A client gone while asked: the server is answered for it and serves the next client.
    let disconnect = &out["disconnect"];
    assert_eq!(disconnect["D_asked"], json!(["sampling"]), "{out}");
    assert!(disconnect.get("D").is_none(), "{out}");
    assert!(text(&disconnect["E"]).contains("sampled by E"), "{out}");
}

#[tokio::test]
async fn per_client_stdio_servers_ask_each_of_two_concurrent_clients_their_own() {
    require_python_sdk();
    let daemon = GwDaemon::start(&everything("per-client"), "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("everything");
    let out = clients(
        &url,
        json!({"concurrent": [SAMPLE, {"prompt": "at once", "maxTokens": 10}]}),
    )
    .await;
    // Neither client answered before both were asked: the two requests were in flight
    // together, and each went to its own client.
    for (me, other) in [("A", "B"), ("B", "A")] {
        let text = text(&out["concurrent"][me]);
        assert!(text.contains(&format!("sampled by {me}")), "{out}");
        assert!(!text.contains(&format!("sampled by {other}")), "{out}");
    }
}

#[tokio::test]
async fn a_virtual_server_relays_a_members_requests_to_the_caller_of_the_call() {
    require_python_sdk();
    // mcp-echo's `ask` samples the client's model through rmcp, on the stream of the call.
    let servers = "mcp_servers:
  asker:
    binary: mcp-echo
    env: {RUST_LOG: warn, MCP_ECHO_SESSION_ONLY: \"1\", MCP_ECHO_ASK: \"1\"}
  all:
    aggregate: [asker]
";
    let daemon = GwDaemon::start(servers, "").await;
    daemon.wait_running(&["asker"]).await;
    let url = daemon.mcp_url("all");
    let ask = json!(["asker_ask", {"prompt": "which client are you?"}]);
    let out = clients(
        &url,
        json!({
            "sampling": ask,
            "concurrent": ask,
            "no_capability": ask,
            "disconnect": ask,
        }),
    )
    .await;
    // One after the other, and both at once (each holding its answer until both were asked):
    // each caller is asked about its own call and gets its own answer back.
    for scenario in ["sampling", "concurrent"] {
        for (me, other) in [("A", "B"), ("B", "A")] {
            let text = text(&out[scenario][me]);
            assert!(
                text.contains(&format!("sampled by {me}")),
                "{scenario}: {out}"
            );
            assert!(
                !text.contains(&format!("sampled by {other}")),
                "{scenario}: {out}"
            );
        }
    }
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );
    let disconnect = &out["disconnect"];
    assert_eq!(disconnect["D_asked"], json!(["sampling"]), "{out}");
    assert!(text(&disconnect["E"]).contains("sampled by E"), "{out}");
}
