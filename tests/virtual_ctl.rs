//! `mcpctl call` on a virtual server: the exposed tool name is called in its member under the
//! member's own name, and the audit record names the virtual server, the member and the
//! operator's uid; an unknown exposed name, or a tool of a member that is down, is refused
//! with an error naming why.

use std::time::Duration;

use mcpd_protocol::AuditRecord;
use mcpd_tests::ctl_support::{Daemon, DaemonSpec};
use mcpd_tests::wait_for_value;

const SERVERS: &str = r#"mcp_servers:
  alpha:
    binary: mcp-echo
  beta:
    binary: mcp-echo
    env: {MCP_ECHO_SESSION_ONLY: "1"}
  all:
    aggregate: [alpha, beta]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcpctl_calls_a_virtual_servers_tool_in_its_member_and_audits_both_names() {
    let mut spec = DaemonSpec::echo_servers(&[]);
    spec.files = vec![("servers.yaml".to_owned(), SERVERS.to_owned())];
    let daemon = Daemon::start(spec).await;

    let echoed = daemon
        .ctl(&[
            "call",
            "all",
            "alpha_echo",
            "--args",
            r#"{"text":"via all"}"#,
        ])
        .ok();
    assert!(echoed.contains("via all"), "{echoed}");
    let added = daemon
        .ctl(&["call", "all", "beta_add", "--args", r#"{"a":2,"b":3}"#])
        .ok();
    assert!(added.contains('5'), "{added}");

    // Names the virtual server does not offer: its member's own name, another server's
    // prefix, a hostile string.
    for tool in ["echo", "gamma_echo", "alpha_echo\u{1b}[2J", "../alpha_echo"] {
        let refused = daemon.ctl(&["call", "all", tool]);
        assert_ne!(refused.code, Some(0), "{tool:?}: {}", refused.stdout);
        assert!(
            refused.stderr.contains("offers no tool named"),
            "{tool:?}: {}",
            refused.stderr
        );
    }

    // A member that is down: the error names it and its state.
    daemon.ctl(&["stop", "beta"]).ok();
    let down = wait_for_value(Duration::from_secs(20), "beta to stop", || {
        let run = daemon.ctl(&["call", "all", "beta_echo", "--args", r#"{"text":"x"}"#]);
        std::future::ready(run.stderr.contains("is stopped").then_some(run))
    })
    .await;
    assert!(
        down.stderr
            .contains("member server \"beta\" of virtual server \"all\""),
        "{}",
        down.stderr
    );
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");

    let uid = nix::unistd::getuid().as_raw();
    let records: Vec<AuditRecord> = daemon
        .ctl(&["--json", "audit"])
        .ok()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let calls: Vec<(&str, Option<&str>, &str)> = records
        .iter()
        .map(|r| (r.server.as_str(), r.member.as_deref(), r.tool.as_str()))
        .collect();
    assert_eq!(
        calls,
        [("all", Some("alpha"), "echo"), ("all", Some("beta"), "add")],
        "{records:?}"
    );
    for record in &records {
        assert_eq!(record.via, "mcpctl");
        assert_eq!(record.caller, format!("uid:{uid}"));
        assert_eq!(record.is_error, Some(false), "{record:?}");
    }
    // `mcpctl audit --server beta` finds the call run by beta as a member.
    let beta = daemon.ctl(&["--json", "audit", "--server", "beta"]).ok();
    assert_eq!(beta.lines().count(), 1, "{beta}");
}
