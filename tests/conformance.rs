//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, npm) against a
//! server's own route through mcpd and against a single-member virtual server over it with
//! `prefix: never`: every server scenario that passes against the member passes against the
//! virtual server too. The sets are computed from the suite's own summary and check files,
//! never listed here. Members: mcp-echo, and the official TypeScript `server-everything`.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::{GatewayUrls, TestDir};

/// How long one run of the whole server suite may take.
const SUITE: Duration = Duration::from_secs(300);

/// mcp-echo, and a virtual server that publishes it under a second name with its own names.
const SERVERS: &str = r#"mcp_servers:
  echo:
    binary: mcp-echo
    env: {RUST_LOG: warn}
  published:
    aggregate: [echo]
    prefix: never
"#;

/// Runs the active server scenarios against `url`; returns each scenario with whether it
/// passed (no failed check), read from the summary lines (`✓ NAME: P passed, F failed`).
async fn run_suite(url: &str, out: &TestDir) -> BTreeMap<String, bool> {
    let run = mcpd_tests::interop::conformance()
        .args(["server", "--url", url, "--output-dir"])
        .arg(out.path())
        .current_dir(out.path())
        .output();
    let output = tokio::time::timeout(SUITE, run)
        .await
        .unwrap_or_else(|_| panic!("the conformance suite against {url} ended within {SUITE:?}"))
        .expect("run the conformance suite");
    // The suite exits non-zero whenever any scenario fails; the summary says which.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let scenarios = parse_summary(&stdout);
    assert!(
        !scenarios.is_empty(),
        "no scenario summary from the conformance suite against {url} ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    scenarios
}

/// `✓ tools-list: 1 passed, 0 failed` -> ("tools-list", true).
fn parse_summary(stdout: &str) -> BTreeMap<String, bool> {
    let summary = stdout.split("=== SUMMARY ===").nth(1).unwrap_or_default();
    summary
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix('✓')
                .or_else(|| line.strip_prefix('✗'))?
                .trim();
            let (name, counts) = rest.split_once(": ")?;
            let failed: u32 = counts
                .strip_suffix(" failed")?
                .rsplit(", ")
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), failed == 0))
        })
        .collect()
}

/// The check records (`checks.json`, compact JSON text) the suite wrote for `scenario` into
/// `out` (one directory per scenario: `server-<scenario>-<timestamp>`).
fn checks(out: &TestDir, scenario: &str) -> String {
    let prefix = format!("server-{scenario}-");
    let dir = std::fs::read_dir(out.path())
        .expect("the suite's output directory")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.strip_prefix(&prefix)
                .is_some_and(|stamp| stamp.starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or_else(|| {
            panic!(
                "no result directory for {scenario} in {}",
                out.path().display()
            )
        });
    let text = std::fs::read_to_string(dir.join("checks.json")).expect("checks.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("checks.json is JSON");
    value.to_string()
}

fn passing(scenarios: &BTreeMap<String, bool>) -> Vec<&str> {
    scenarios
        .iter()
        .filter(|(_, passed)| **passed)
        .map(|(name, _)| name.as_str())
        .collect()
}

#[tokio::test]
async fn scenarios_passing_against_a_member_pass_against_a_virtual_server_over_it() {
    let daemon = GwDaemon::start(SERVERS, "").await;
    daemon.wait_running(&["echo", "published"]).await;
    let (direct_out, virtual_out) = (TestDir::new(), TestDir::new());
    let direct = run_suite(&daemon.mcp_url("echo"), &direct_out).await;
    let through = run_suite(&daemon.mcp_url("published"), &virtual_out).await;

    let direct_passing = passing(&direct);
    assert!(
        !direct_passing.is_empty(),
        "no conformance scenario passes against mcp-echo's own route: {direct:?}"
    );
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        through.keys().collect::<Vec<_>>(),
        "the same scenarios ran against both"
    );
    let lost: Vec<&str> = direct_passing
        .iter()
        .copied()
        .filter(|name| through.get(*name) != Some(&true))
        .collect();
    assert!(
        lost.is_empty(),
        "scenarios passing against the member but not against the virtual server: {lost:?} \
         (member: {direct_passing:?}; virtual server: {:?})",
        passing(&through)
    );
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

/// The official TypeScript `server-everything` as the member. It passes more scenarios than
/// mcp-echo, and two kinds of them may fail through a virtual server for reasons the check
/// files show, which the test reads instead of listing scenarios:
/// - the virtual server answers the scenario's method with "does not offer" (-32601): a
///   feature virtual servers do not provide (prompts, resources, logging at this version);
/// - the scenario calls a tool the member does not have (the suite's own reference tools,
///   `test_simple_text`, ...), its direct "pass" being the member's `isError` "not found"
///   result, where a virtual server answers an unknown name with JSON-RPC -32602.
///
/// A URI the member never lists (`resources-subscribe` uses `test://watched-resource`) goes to
/// the one member, as it does directly. Every other scenario that passes directly must pass through the virtual server.
#[tokio::test]
async fn scenarios_passing_against_server_everything_pass_through_a_virtual_server() {
    let servers = format!(
        "mcp_servers:
  everything:
    binary: {}
    args: [streamableHttp]
  published:
    aggregate: [everything]
    prefix: never
",
        mcpd_tests::interop::everything_server().display()
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["everything", "published"]).await;
    let (direct_out, virtual_out) = (TestDir::new(), TestDir::new());
    let direct = run_suite(&daemon.mcp_url("everything"), &direct_out).await;
    let through = run_suite(&daemon.mcp_url("published"), &virtual_out).await;

    let mut held = Vec::new();
    let mut lost = Vec::new();
    for scenario in passing(&direct) {
        if through.get(scenario) == Some(&true) {
            held.push(scenario);
            continue;
        }
        let through_checks = checks(&virtual_out, scenario);
        let direct_checks = checks(&direct_out, scenario);
        let not_offered = through_checks.contains("does not offer");
        let absent_tool = through_checks.contains("unknown tool")
            && direct_checks.contains(r#""isError":true"#)
            && direct_checks.contains("not found");
        if not_offered || absent_tool {
            eprintln!(
                "{scenario}: passes directly, not through the virtual server: {through_checks}"
            );
        } else {
            lost.push(scenario);
        }
    }
    assert!(
        !held.is_empty(),
        "no conformance scenario passes against server-everything through both routes: \
         directly {direct:?}, through the virtual server {through:?}"
    );
    assert!(
        lost.is_empty(),
        "scenarios passing against server-everything but not through the virtual server: \
         {lost:?} (virtual server: {:?})",
        passing(&through)
    );
}

#[test]
fn the_summary_is_read_line_by_line() {
    let text = "=== Running scenario: ping ===\n✓ not-a-summary: 1 passed, 0 failed\n\n\
        === SUMMARY ===\n✓ server-initialize: 1 passed, 0 failed\n✗ logging-set-level: 0 passed, 1 failed\n\
        ✓ dns-rebinding-protection: 2 passed, 0 failed\n\nTotal: 3 passed, 1 failed\n";
    let parsed = parse_summary(text);
    assert_eq!(
        parsed.into_iter().collect::<Vec<_>>(),
        [
            ("dns-rebinding-protection".to_owned(), true),
            ("logging-set-level".to_owned(), false),
            ("server-initialize".to_owned(), true),
        ]
    );
}
