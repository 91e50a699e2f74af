//! Sampling and elicitation through a virtual server whose member is the official TypeScript
//! `server-everything` over streamable HTTP: it offers its sampling and elicitation tools only
//! to clients that declare those capabilities, so the virtual server lists them (its catalog
//! comes from a probe that declares them) and the member session of each caller takes them.
//! Official Python SDK clients with callbacks each get their own answer back; a client without
//! a sampling callback gets a clear error.

use std::time::Duration;

use serde_json::{Value, json};

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::{everything_server, python_json, require_python_sdk};

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

#[tokio::test]
async fn everythings_sampling_tool_works_through_a_virtual_server() {
    require_python_sdk();
    let servers = format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [streamableHttp]
  all:
    aggregate: [everything]
",
        everything_server().display()
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["everything"]).await;
    let url = daemon.mcp_url("all");
    let sample = json!([
        "everything_trigger-sampling-request",
        {"prompt": "hello", "maxTokens": 10}
    ]);
    let plan = json!({
        "sampling": sample,
        "elicitation": ["everything_trigger-elicitation-request", {}],
        "no_capability": sample,
    });
    let out = python_json(
        "backchannel_client.py",
        &[&url, &plan.to_string()],
        Duration::from_secs(180),
    )
    .await;
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
    // No sampling callback: the member's request is refused for it, and the tool says so.
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );
}
