//! Sampling and elicitation through a virtual server whose member is the official TypeScript
//! `server-everything` over streamable HTTP: it offers its sampling and elicitation tools only
//! to clients that declare those capabilities, so the virtual server lists them (its catalog
//! comes from a probe that declares them) and the member session of each caller takes them.
//! Official Python SDK clients with callbacks each get their own answer back; a client without
//! a sampling callback gets a clear error.

use std::time::Duration;

use serde_json::json;

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::{
    assert_each_client_got_its_own_answer, everything_server, outcome_text as text, python_json,
    require_python_sdk,
};

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
    assert_each_client_got_its_own_answer(&out);
    // No sampling callback: the member's request is refused for it, and the tool says so.
    let refused = &out["no_capability"];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        text(refused).contains("did not declare the sampling capability"),
        "{out}"
    );
}
