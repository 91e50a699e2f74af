//! Official MCP software through a virtual server: the official Python SDK client (a
//! 2025-11-25 session) uses one virtual server over mcp-echo and the official TypeScript
//! `server-everything`: it lists both members' prefixed tools, calls a tool of each, gets
//! the progress notifications of everything's long-running tool, cancels a call, and sees
//! another list with a token of another scope; everything killed mid-call gives a JSON-RPC
//! error naming it while echo keeps answering; mcpd restarted in the middle of the session
//! and the SDK's session going on, on the same session id.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use mcpd_tests::gw_support::{GW_START, GwDaemon};
use mcpd_tests::{GatewayUrls, TestDir, lazy, server_entry, wait_for};

/// How long one run of the Python client may take.
const CLIENT: Duration = Duration::from_secs(180);

/// Echo's tools, as the virtual server exposes them.
const ECHO_TOOLS: [&str; 4] = ["echo_add", "echo_echo", "echo_progress", "echo_sleep"];

/// The two members and the virtual server over both; `ops` may call every tool, `user`
/// only echo's.
fn servers() -> String {
    format!(
        r#"mcp_servers:
  echo:
    binary: mcp-echo
    env: {{RUST_LOG: info}}
  everything:
    binary: {}
    args: [streamableHttp]
  all:
    aggregate: [echo, everything]
    oauth:
      required: true
      scopes: [user, ops]
      tools: {{"everything_*": [ops], "*": [user, ops]}}
"#,
        mcpd_tests::interop::everything_server().display()
    )
}

async fn start() -> GwDaemon {
    mcpd_tests::interop::require_python_sdk();
    let daemon = GwDaemon::start(&servers(), "").await;
    daemon.wait_running(&["echo", "everything"]).await;
    daemon
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Lines of `mcpctl logs NAME` that contain `needle`.
fn log_lines(daemon: &GwDaemon, name: &str, needle: &str) -> usize {
    let logs = daemon.mcpctl(&["logs", name, "-n", "1000"]);
    String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

#[tokio::test]
async fn the_python_sdk_uses_echo_and_everything_through_one_virtual_server() {
    let daemon = start().await;
    let url = daemon.mcp_url("all");
    let ops = daemon.token(&["ops"]);
    let user = daemon.token(&["user"]);
    let tour =
        mcpd_tests::interop::python_json("virtual_client.py", &["tour", &url, &ops, &user], CLIENT)
            .await;
    assert_eq!(tour["protocol_version"], "2025-11-25", "{tour}");

    // Both members' tools, each under its member's prefix: echo's four and every tool
    // everything listed to its probe.
    let everything_count = server_entry(&daemon.status(), "everything")
        .expect("everything in status")["tools_count"]
        .as_u64()
        .expect("everything's tool count");
    let tools = strings(&tour["tools"]);
    assert_eq!(tools.len() as u64, 4 + everything_count, "{tools:?}");
    for tool in ECHO_TOOLS {
        assert!(tools.contains(&tool), "{tool} in {tools:?}");
    }
    for tool in [
        "everything_echo",
        "everything_trigger-long-running-operation",
    ] {
        assert!(tools.contains(&tool), "{tool} in {tools:?}");
    }
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("echo_") || t.starts_with("everything_")),
        "{tools:?}"
    );
    // Another token, another list: `user` may call only echo's tools.
    assert_eq!(strings(&tour["other_tools"]), ECHO_TOOLS, "{tour}");

    // A call of each member, with the member's own answer.
    assert_eq!(tour["echo"], json!(["through all"]), "{tour}");
    assert_eq!(
        tour["everything_echo"],
        json!(["Echo: through all"]),
        "{tour}"
    );
    // Everything's progress notifications reach the SDK's progress callback.
    assert_eq!(
        tour["progress"],
        json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
        "{tour}"
    );
    assert!(
        tour["long_result"][0]
            .as_str()
            .is_some_and(|t| t.starts_with("Long running operation completed")),
        "{tour}"
    );
    // The cancelled call was cancelled in the member, and the session went on.
    assert_eq!(tour["cancelled"], true, "{tour}");
    assert_eq!(tour["after_cancel"], json!(["still here"]), "{tour}");
    wait_for(
        GW_START,
        lazy(|| {
            let logs = daemon.mcpctl(&["logs", "echo", "-n", "50"]);
            format!(
                "echo to log the cancellation: {}",
                String::from_utf8_lossy(&logs.stdout)
            )
        }),
        || async { log_lines(&daemon, "echo", "cancelled by the client") > 0 },
    )
    .await;

    // Everything killed in the middle of a call: the call ends with a JSON-RPC error naming
    // it, and echo keeps answering in the same session.
    let markers = TestDir::new();
    let marker_dir = markers.path().display().to_string();
    let pid = daemon.server_pid("everything").expect("everything's pid");
    let args = ["kill", &url, &ops, &marker_dir];
    let (killed, ()) = tokio::join!(
        mcpd_tests::interop::python_json("virtual_client.py", &args, CLIENT),
        async {
            let running = markers.path().join("running");
            wait_for(GW_START, "the long call to run in everything", || async {
                running.exists()
            })
            .await;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
                .expect("kill everything");
        }
    );
    assert_eq!(killed["error_code"], -32011, "{killed}");
    let message = killed["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("member server \"everything\" of virtual server all"),
        "{killed}"
    );
    assert!(killed["progress_seen"].as_u64() >= Some(1), "{killed}");
    assert_eq!(killed["echo"], json!(["still answering"]), "{killed}");
    assert!(daemon.process.try_status().is_none(), "mcpd still runs");
}

/// Stops mcpd (its servers go with it) and starts it again on the same configuration and
/// state directory, then waits for its members.
async fn restart_mcpd(daemon: &mut GwDaemon) {
    daemon.restart().await;
    daemon.wait_running(&["echo", "everything"]).await;
}

#[tokio::test]
async fn the_python_sdk_session_goes_on_across_a_restart_of_mcpd() {
    let mut daemon = start().await;
    let url = daemon.mcp_url("all");
    let ops = daemon.token(&["ops"]);
    let markers = TestDir::new();
    let marker_dir = markers.path().display().to_string();
    let args = ["restart", &url, &ops, &marker_dir];
    let (result, ()) = tokio::join!(
        mcpd_tests::interop::python_json("virtual_client.py", &args, CLIENT),
        async {
            let ready = markers.path().join("ready");
            wait_for(GW_START, "the session's first calls", || async {
                ready.exists()
            })
            .await;
            restart_mcpd(&mut daemon).await;
            markers.write("go", "1");
        }
    );
    assert_eq!(
        result["before"],
        json!(["before", "Echo: before"]),
        "{result}"
    );
    assert_eq!(result["after"], json!(["after", "Echo: after"]), "{result}");
    // One session id before the restart, and the same one on every request after it.
    let before = strings(&result["session_before"]);
    assert_eq!(before.len(), 1, "{result}");
    assert_eq!(strings(&result["session_after"]), before, "{result}");
    let tools = strings(&result["tools"]);
    assert!(
        tools.contains(&"echo_echo") && tools.contains(&"everything_echo"),
        "{tools:?}"
    );
}

/// The README's quick start: `services/`'s `all` virtual server over its `echo` server, listed
/// by the official Python SDK (`tests/interop/list_tools.py`), offers every tool of the host.
#[tokio::test]
async fn the_quick_start_all_server_offers_every_tool_to_an_sdk_client() {
    mcpd_tests::interop::require_python_sdk();
    let services = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/mcp");
    let read = |file: &str| {
        std::fs::read_to_string(services.join(file))
            .unwrap_or_else(|e| panic!("services/mcp/{file}: {e}"))
    };
    let daemon = GwDaemon::start(&read("echo.yaml"), "").await;
    daemon.dir.write("mcp/all.yaml", read("all.yaml"));
    daemon.wait_running(&["echo", "all"]).await;
    let listed =
        mcpd_tests::interop::python_json("list_tools.py", &[&daemon.mcp_url("all")], CLIENT).await;
    assert_eq!(listed["server_name"], "all", "{listed}");
    assert_eq!(strings(&listed["tools"]), ECHO_TOOLS, "{listed}");
}
