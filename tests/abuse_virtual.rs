//! Hostile members and callers of a virtual server's prompts and resources: a member whose
//! lists hold duplicates, entries that are not entries, names too long, URIs with terminal
//! escapes, empty or over-long; one whose cursors never end; one whose list is over the size
//! cap. The sane entries are offered, the rest left out and reported with every control
//! character escaped, and the daemon keeps serving. A caller's over-long or escape-laden URI
//! gets a clear error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::model::ReadResourceRequestParams;
use serde_json::json;

use mcpd_tests::ctl_support::assert_no_raw_controls;
use mcpd_tests::gw_support::{GW_START, GwDaemon};
use mcpd_tests::mcp_support::{Client, Generation, call_text, connect};
use mcpd_tests::{GatewayUrls, lazy, wait_for_value};

const CALL: Duration = Duration::from_secs(20);

fn hostile_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile_catalog.py")
}

fn servers(mode: &str) -> String {
    format!(
        "mcp_servers:\n  h:\n    binary: {script}\n    env: {{HOSTILE_CATALOG: {mode}}}\n  echo:\n    binary: mcp-echo\n    env: {{RUST_LOG: warn, MCP_ECHO_PROMPTS: greet}}\n  all:\n    aggregate: [h, echo]\n",
        script = hostile_script().display()
    )
}

async fn names<T>(
    list: impl Future<Output = Result<Vec<T>, rmcp::ServiceError>>,
    key: impl Fn(T) -> String,
) -> Vec<String> {
    let mut names: Vec<String> = tokio::time::timeout(CALL, list)
        .await
        .expect("list in time")
        .expect("list")
        .into_iter()
        .map(key)
        .collect();
    names.sort();
    names
}

async fn read_error(client: &Client, uri: &str) -> String {
    tokio::time::timeout(
        CALL,
        client.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await
    .expect("resources/read in time")
    .expect_err("resources/read must fail")
    .to_string()
}

#[tokio::test]
async fn messy_lists_offer_the_sane_entries_and_report_the_rest_escaped() {
    let daemon = GwDaemon::start(&servers("messy"), "").await;
    daemon.wait_running(&["h", "echo"]).await;
    let status = wait_for_value(
        GW_START,
        lazy(|| "the hostile member's conflicts".to_owned()),
        || {
            let out = daemon.mcpctl(&["status"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            std::future::ready(text.contains("\"h_dup\"").then_some(text))
        },
    )
    .await;
    assert_no_raw_controls("mcpctl status", &status);
    assert!(
        status.contains("\"h_dup\" is produced by prompt \"dup\" of server \"h\" and prompt \"dup\" of server \"h\""),
        "{status}"
    );
    assert!(status.contains("resource \"evil://"), "{status}");
    assert!(status.contains("is not a usable URI"), "{status}");
    for args in [&["show", "all"][..], &["validate"][..]] {
        let out = daemon.mcpctl(args);
        assert_no_raw_controls(
            &format!("mcpctl {args:?}"),
            &String::from_utf8_lossy(&out.stdout),
        );
        assert_no_raw_controls(
            &format!("mcpctl {args:?}"),
            &String::from_utf8_lossy(&out.stderr),
        );
    }

    let (client, _) = connect(&daemon.mcp_url("all"), None, Generation::Session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(client.list_all_prompts(), |p| p.name).await,
        ["echo_greet", "h_fine"]
    );
    assert_eq!(
        names(client.list_all_resources(), |r| r.uri.clone()).await,
        ["file:///fine"]
    );
    assert_eq!(
        names(client.list_all_resource_templates(), |t| t
            .uri_template
            .clone())
        .await,
        ["t://{a}"]
    );
    let text = tokio::time::timeout(
        CALL,
        client.read_resource(ReadResourceRequestParams::new("t://7")),
    )
    .await
    .expect("in time")
    .expect("read through the template");
    assert_eq!(
        serde_json::to_value(&text.contents[0]).unwrap()["text"],
        "read t://7"
    );
    // Hostile URIs from the caller: refused clearly, the daemon unmoved.
    let long = format!("t://{}", "y".repeat(10_000));
    let error = read_error(&client, &long).await;
    assert!(
        error.contains("no member of virtual server all offers"),
        "{}",
        &error[..error.len().min(500)]
    );
    assert!(
        read_error(&client, "evil://\u{1b}]0;x\u{7}")
            .await
            .contains("no member")
    );
    let _ = client.cancel().await;
    let (client, _) = connect(&daemon.mcp_url("echo"), None, Generation::Session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        call_text(&client, "echo", json!({"text": "still here"})).await,
        "still here"
    );
    let _ = client.cancel().await;
}

#[tokio::test]
async fn endless_cursors_and_oversized_lists_leave_the_member_serving_its_tools() {
    for mode in ["loop", "huge"] {
        let daemon = GwDaemon::start(&servers(mode), "").await;
        daemon.wait_running(&["h", "echo"]).await;
        let (client, _) = connect(&daemon.mcp_url("all"), None, Generation::Session)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let tools = names(client.list_all_tools(), |t| t.name.into_owned()).await;
        assert!(tools.contains(&"h_ok".to_owned()), "{mode}: {tools:?}");
        // The lists that could not be read whole offer nothing; the other member's do.
        assert_eq!(
            names(client.list_all_prompts(), |p| p.name).await,
            ["echo_greet"],
            "{mode}"
        );
        // No member could list resources: the virtual server lists none (an empty list, as a
        // server of tools alone answers).
        let resources = tokio::time::timeout(CALL, client.list_all_resources())
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(resources.is_empty(), "{mode}: {resources:?}");
        let _ = client.cancel().await;
        let status = daemon.mcpctl(&["status"]);
        assert!(status.status.success(), "{mode}");
    }
}
