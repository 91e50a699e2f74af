//! `mcpctl audit`, `call`, `tools --as-scopes`, `show` and `validate` against a real `mcpd`
//! supervising real `mcp-echo` servers: operator calls leave audit records that `mcpctl audit`
//! reads back (filtered, and live with `-f`), and the per-tool rules of a server file are
//! shown, checked and explained.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use mcpd_protocol::{AuditDecision, AuditRecord};
use mcpd_tests::ctl_support::{Daemon, DaemonSpec, ctl_command};
use mcpd_tests::{ChildGuard, describe, wait_for_sync};
use nix::sys::signal::Signal;

const REPLY: Duration = Duration::from_secs(15);

/// `alpha` keeps call arguments in its records; `guarded` has per-tool rules, the last of
/// which (`sleep`) the one before it (`*`) shadows.
const SERVERS: &str = r#"mcp_servers:
  alpha:
    binary: mcp-echo
    package: mcp-echo
    audit: {arguments: true}
  guarded:
    binary: mcp-echo
    oauth:
      required: true
      scopes: [user, tools:read, tools:write]
      tools:
        "add": [admin]
        "echo": [tools:read, user]
        "*": [tools:write, user]
        "sleep": [user]
"#;

async fn start() -> Daemon {
    let mut spec = DaemonSpec::echo_servers(&[]);
    spec.hs256_key = true;
    spec.files = vec![("servers.yaml".to_owned(), SERVERS.to_owned())];
    Daemon::start(spec).await
}

/// `mcpctl --json audit ARGS...` as records.
fn records(daemon: &Daemon, args: &[&str]) -> Vec<AuditRecord> {
    let mut full = vec!["--json", "audit"];
    full.extend_from_slice(args);
    daemon
        .ctl(&full)
        .ok()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a record ({e}): {line}"))
        })
        .collect()
}

fn tools(records: &[AuditRecord]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|r| (r.server.as_str(), r.tool.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_are_audited_and_mcpctl_audit_reads_them_filtered_and_live() {
    let daemon = start().await;
    // Rotated daily by default: `audit.<day>.log`.
    let logs = daemon.dir.join("state/logs");
    let audit_file = || {
        std::fs::read_dir(&logs)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("audit.") && name.ends_with(".log"))
            })
    };
    wait_for_sync(REPLY, "the audit log to be created", || {
        audit_file().is_some()
    });
    let audit_log = audit_file().unwrap();
    let mode = std::fs::metadata(&audit_log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "audit.log mode {mode:o}");
    assert_eq!(daemon.ctl(&["audit"]).ok(), "", "no call yet");

    let uid = nix::unistd::getuid().as_raw();
    let caller = format!("uid:{uid}");
    daemon
        .ctl(&["call", "alpha", "echo", "--args", r#"{"text":"one"}"#])
        .ok();
    daemon
        .ctl(&["call", "alpha", "add", "--args", r#"{"a":1,"b":2}"#])
        .ok();
    // Operator calls are not subject to the rules: `add` is admin-only through the gateway.
    daemon
        .ctl(&["call", "guarded", "add", "--args", r#"{"a":2,"b":2}"#])
        .ok();
    // Arguments of the wrong type: the tool's result says isError.
    let failed = daemon
        .ctl(&["call", "alpha", "add", "--args", r#"{"a":"x"}"#])
        .expect_code(1);
    assert!(failed.stdout.contains("invalid type"), "{}", failed.stdout);
    // An unknown tool: a JSON-RPC error, recorded with its code.
    let unknown = daemon.ctl(&["call", "alpha", "nope"]).expect_code(1);

    let all = records(&daemon, &[]);
    assert_eq!(
        tools(&all),
        [
            ("alpha", "echo"),
            ("alpha", "add"),
            ("guarded", "add"),
            ("alpha", "add"),
            ("alpha", "nope")
        ]
    );
    for record in &all {
        assert_eq!(record.via, "mcpctl");
        assert_eq!(record.caller, caller);
        assert_eq!(record.decision, AuditDecision::Allow);
        assert_eq!(record.status, 0);
        assert_eq!(
            (record.subject.as_deref(), record.client_id.as_deref()),
            (None, None)
        );
        assert!(record.duration_ms > 0.0, "{record:?}");
    }
    assert_eq!((all[0].is_error, all[0].error_code), (Some(false), None));
    assert_eq!((all[3].is_error, all[3].error_code), (Some(true), None));
    let code = all[4].error_code.expect("the JSON-RPC error code");
    assert_eq!(all[4].is_error, None);
    assert!(
        unknown.stderr.contains(&format!("(code {code})")),
        "{}",
        unknown.stderr
    );
    assert_eq!(all[0].arguments.as_deref(), Some(r#"{"text":"one"}"#));
    assert_eq!(all[2].arguments, None, "guarded does not keep arguments");
    // Records are in time order, and `time` is the RFC 3339 form of `ts`.
    assert!(all.windows(2).all(|w| w[0].ts <= w[1].ts));
    let at = humantime_ms(&all[0].time);
    assert_eq!(at, all[0].ts);

    // Filters.
    assert_eq!(
        tools(&records(&daemon, &["--server", "guarded"])),
        [("guarded", "add")]
    );
    assert_eq!(
        tools(&records(&daemon, &["--tool", "add"])),
        [("alpha", "add"), ("guarded", "add"), ("alpha", "add")]
    );
    assert_eq!(
        tools(&records(
            &daemon,
            &["--server", "alpha", "--tool", "add", "-n", "1"]
        )),
        [("alpha", "add")]
    );
    assert_eq!(records(&daemon, &["-n", "2"]).len(), 2);
    assert_eq!(records(&daemon, &["--since", "1h"]).len(), 5);
    assert_eq!(
        records(&daemon, &["--since", "2000-01-01T00:00:00Z"]).len(),
        5
    );
    assert!(records(&daemon, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let since_last = all[4].ts;
    let since = humantime::format_rfc3339_millis(
        SystemTime::UNIX_EPOCH + Duration::from_millis(since_last),
    )
    .to_string();
    assert!(
        records(&daemon, &["--since", &since])
            .iter()
            .all(|r| r.ts >= since_last)
    );
    let bad = daemon
        .ctl(&["audit", "--since", "yesterday"])
        .expect_code(2);
    assert!(bad.stderr.contains("yesterday"), "{}", bad.stderr);
    assert!(records(&daemon, &["--server", "nope"]).is_empty());

    // The human form: one line per record, with the caller.
    let text = daemon.ctl(&["audit", "--server", "alpha"]).ok();
    assert_eq!(text.lines().count(), 4, "{text}");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(&all[0].time), "{first}");
    assert!(
        first.contains(&format!(
            " allow alpha echo status=- ok {:.1}ms sub=- client=- caller={caller} args={{\"text\":\"one\"}}",
            all[0].duration_ms
        )),
        "{first}"
    );
    assert!(text.lines().nth(2).unwrap().contains(" isError "), "{text}");
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .contains(&format!(" error={code} ")),
        "{text}"
    );

    // Following: the backlog (-n 1) shows the follower is subscribed; then a new call.
    let follower = ChildGuard::spawn(
        "mcpctl audit -f",
        &mut ctl_command(
            &daemon.socket,
            &[
                "audit", "-f", "-n", "1", "--server", "alpha", "--tool", "echo",
            ],
        ),
    );
    follower.wait_for_stdout("\"text\":\"one\"", REPLY).await;
    daemon
        .ctl(&[
            "call",
            "guarded",
            "echo",
            "--args",
            r#"{"text":"not followed"}"#,
        ])
        .ok();
    daemon
        .ctl(&["call", "alpha", "echo", "--args", r#"{"text":"live"}"#])
        .ok();
    let live = follower.wait_for_stdout("\"text\":\"live\"", REPLY).await;
    assert!(live.contains(&format!("caller={caller}")), "{live}");
    assert!(
        !follower.stdout().contains("not followed"),
        "another server's call: {}",
        follower.stdout()
    );
    assert_eq!(
        follower.stdout().lines().count(),
        2,
        "{}",
        follower.stdout()
    );
    follower.signal(Signal::SIGINT);
    let status = follower.wait_exit(REPLY).await;
    assert!(status.success(), "follower ended with {}", describe(status));

    // --json -f prints the records as JSON lines.
    let follower = ChildGuard::spawn(
        "mcpctl --json audit -f",
        &mut ctl_command(&daemon.socket, &["--json", "audit", "-f", "-n", "1"]),
    );
    // `arguments` is JSON text inside the JSON record: its quotes are escaped.
    follower.wait_for_stdout(r#"\"live\""#, REPLY).await;
    daemon
        .ctl(&["call", "alpha", "echo", "--args", r#"{"text":"json"}"#])
        .ok();
    let line = follower.wait_for_stdout(r#"\"json\""#, REPLY).await;
    let record: AuditRecord = serde_json::from_str(&line).expect("a JSON record");
    assert_eq!(
        (record.server.as_str(), record.tool.as_str()),
        ("alpha", "echo")
    );
    follower.signal(Signal::SIGINT);
    assert!(follower.wait_exit(REPLY).await.success());

    // The file holds every record (the last one once its writer's batch is out).
    let written = || std::fs::read_to_string(&audit_log).unwrap();
    wait_for_sync(REPLY, "8 records in the audit file", || {
        written().lines().count() == 8
    });
    let lines: Vec<AuditRecord> = written()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a record per line"))
        .collect();
    assert_eq!(lines[..5], all[..]);

    // Nothing was dropped, and /metrics says so.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", daemon.gateway_port))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    assert!(
        metrics
            .lines()
            .any(|line| line == "mcpd_audit_dropped_total 0"),
        "{metrics}"
    );
}

/// `time` (RFC 3339, milliseconds) as Unix milliseconds.
fn humantime_ms(time: &str) -> u64 {
    let at = humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time:?}: {e}"));
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The cells of the `tools` row of `tool`.
fn tool_row<'a>(table: &'a str, tool: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&tool))
        .unwrap_or_else(|| panic!("no row for {tool:?} in:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_rules_are_shown_explained_and_checked() {
    let daemon = start().await;

    // tools --as-scopes: MAY-CALL, RULE, ALLOWING.
    let table = daemon
        .ctl(&["tools", "guarded", "--as-scopes", "user tools:read"])
        .ok();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "SERVER",
            "TOOL",
            "MAY-CALL",
            "RULE",
            "ALLOWING",
            "DESCRIPTION"
        ]
    );
    assert_eq!(tool_row(&table, "add")[2..5], ["no", "add", "admin"]);
    assert_eq!(tool_row(&table, "echo")[2..5], ["yes", "echo", "-"]);
    assert_eq!(tool_row(&table, "progress")[2..5], ["yes", "*", "-"]);
    assert_eq!(
        tool_row(&table, "sleep")[2..5],
        ["yes", "*", "-"],
        "sleep's own rule never applies"
    );
    let reader = daemon
        .ctl(&["tools", "guarded", "--as-scopes", "tools:read"])
        .ok();
    assert_eq!(tool_row(&reader, "echo")[2], "yes");
    assert_eq!(
        tool_row(&reader, "progress")[2..7],
        ["no", "*", "admin", "tools:write", "user"]
    );
    let json = daemon
        .ctl(&["--json", "tools", "guarded", "--as-scopes", "tools:read"])
        .expect_code(0)
        .json();
    let sleep = json
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sleep")
        .expect("sleep");
    assert_eq!(
        sleep["access"],
        serde_json::json!({"may_call": false, "rule": "*", "allowing": ["admin", "tools:write", "user"]})
    );
    // A server without OAuth: anyone may call; without --as-scopes, no columns.
    let open = daemon.ctl(&["tools", "alpha", "--as-scopes", ""]).ok();
    assert_eq!(tool_row(&open, "add")[2..4], ["yes", "built-in"]);
    let plain = daemon.ctl(&["tools", "guarded"]).ok();
    assert!(!plain.contains("MAY-CALL"), "{plain}");

    // show: the rules in order, and audit.arguments.
    let show = daemon.ctl(&["show", "guarded"]).ok();
    let position = |needle: &str| {
        show.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in:\n{show}"))
    };
    assert!(position("first match wins") < position("add -> admin"));
    assert!(position("add -> admin") < position("echo -> tools:read user"));
    assert!(position("echo -> tools:read user") < position("* -> tools:write user"));
    assert!(position("* -> tools:write user") < position("sleep -> user"));
    assert!(
        show.contains("audit args:")
            && show
                .lines()
                .any(|l| l.starts_with("audit args:") && l.ends_with("false")),
        "{show}"
    );
    let alpha = daemon.ctl(&["show", "alpha"]).ok();
    assert!(
        alpha
            .lines()
            .any(|l| l.starts_with("audit args:") && l.ends_with("true")),
        "{alpha}"
    );
    assert!(!alpha.contains("tool rule"), "{alpha}");
    let json = daemon
        .ctl(&["--json", "show", "guarded"])
        .expect_code(0)
        .json();
    assert_eq!(
        json["tool_rules"][0],
        serde_json::json!({"pattern": "add", "scopes": ["admin"]})
    );
    assert_eq!(json["tool_rules"].as_array().map(Vec::len), Some(4));

    // validate: the shadowed rule is a warning, not a failure.
    let validate = daemon.ctl(&["validate"]).ok();
    let warning = validate
        .lines()
        .find(|line| line.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning in:\n{validate}"));
    assert!(
        warning.contains("server guarded")
            && warning.contains("\"sleep\"")
            && warning.contains("\"*\""),
        "{warning}"
    );
    let json = daemon.ctl(&["--json", "validate"]).expect_code(0).json();
    assert_eq!(json["warnings"].as_array().map(Vec::len), Some(1), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tool_name_is_recorded_exactly_and_shown_escaped_on_one_line() {
    let daemon = start().await;
    // A tool name that tries to clear the screen, write the clipboard, reverse the text,
    // forge a second record and pass for other fields.
    let hostile = "del\u{1b}[2J\u{1b}]52;c;eA==\u{7}\u{202e} status=200 ok\n\
                   2026-01-01T00:00:00.000Z allow alpha echo\r\u{9b}";
    let call = daemon
        .ctl(&["call", "alpha", hostile, "--args", r#"{"q":"\u001b[31m"}"#])
        .expect_code(1);
    assert!(!call.stderr.contains('\u{1b}'), "{:?}", call.stderr);

    let json = records(&daemon, &["--server", "alpha"]);
    assert_eq!(json.len(), 1, "{json:?}");
    assert_eq!(json[0].tool, hostile, "recorded exactly");
    assert_eq!(json[0].arguments.as_deref(), Some(r#"{"q":"\u001b[31m"}"#));
    assert!(json[0].error_code.is_some(), "{:?}", json[0]);
    let raw = daemon.ctl(&["--json", "audit"]).ok();
    assert!(
        !raw.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}']),
        "{raw:?}"
    );
    assert_eq!(raw.lines().count(), 1, "{raw:?}");

    let text = daemon.ctl(&["audit"]).ok();
    assert_eq!(text.lines().count(), 1, "one record, one line: {text:?}");
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}']),
        "{text:?}"
    );
    // Quoted: the forged fields stay inside the tool's value.
    assert!(
        text.contains(
            r#" allow alpha "del\x1b[2J\x1b]52;c;eA==\x07\u{202e} status=200 ok\x0a2026-01-01T00:00:00.000Z allow alpha echo\x0d\u{9b}" status=- error="#
        ),
        "{text}"
    );
}
