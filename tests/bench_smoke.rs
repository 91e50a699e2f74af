//! The smallest case of the benchmark harness (bench/run.sh), so it does not rot: mcpd with one
//! mcp-echo, and mcpd-loadgen driving `tools/call` through the gateway for one second on one
//! connection; with the audit log on (the default) and off (`logs.audit: false`, the
//! benchmark's all-off baseline).

use std::process::Command;
use std::time::Duration;

use mcpd_tests::{ChildGuard, TestDir, bin, lazy, port_block, wait_for_sync};
use serde_json::Value;

/// The files in `dir` whose names start with `audit`.
fn audit_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("audit"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn loadgen_calls_echo_through_mcpd() {
    let (dir, daemon) = smoke(true);
    let logs = dir.join("logs");
    wait_for_sync(
        Duration::from_secs(20),
        lazy(|| {
            format!(
                "audit records of echo in {}: {:?}; mcpd stderr: {}",
                logs.display(),
                audit_files(&logs),
                daemon.stderr()
            )
        }),
        || {
            audit_files(&logs).iter().any(|path| {
                std::fs::read_to_string(path).is_ok_and(|text| text.contains("\"tool\":\"echo\""))
            })
        },
    );
}

#[test]
fn logs_audit_false_writes_no_audit_log() {
    let (dir, daemon) = smoke(false);
    let logs = dir.join("logs");
    // One writer thread handles every log file in order, and the audit log would be opened
    // when the daemon starts: once echo's lines are in its file, an audit log would exist.
    let echo_logged = || {
        std::fs::read_dir(&logs).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                entry.file_name().to_string_lossy().starts_with("echo")
                    && entry.metadata().is_ok_and(|meta| meta.len() > 0)
            })
        })
    };
    wait_for_sync(
        Duration::from_secs(20),
        lazy(|| {
            format!(
                "echo's log in {}; mcpd stderr: {}",
                logs.display(),
                daemon.stderr()
            )
        }),
        echo_logged,
    );
    assert_eq!(
        audit_files(&logs),
        Vec::<std::path::PathBuf>::new(),
        "mcpd stderr: {}",
        daemon.stderr()
    );
}

/// mcpd (audit log on or off) with one echo, driven by mcpd-loadgen for a second; returns the
/// test dir and the daemon, still running.
fn smoke(audit: bool) -> (TestDir, ChildGuard) {
    let dir = TestDir::new();
    let ports = port_block(2);
    let gateway = ports.port(0);
    let echo = ports.port(1);
    let socket = dir.join("mcpd.sock");
    let config = dir.write(
        "mcpd.yaml",
        format!(
            "services_dir: mcp\n\
             port_range: {echo}-{echo}\n\
             bin_dirs: [{bins}]\n\
             state_dir: state\n\
             gateway: {{listen: 127.0.0.1:{gateway}, public_url: http://127.0.0.1:{gateway}}}\n\
             control: {{socket: {socket}}}\n\
             logs: {{dir: logs, audit: {audit}}}\n\
             defaults: {{health: {{interval: 200ms}}, restart: {{backoff: 100ms}}}}\n",
            bins = bin("mcpd").parent().expect("bin dir").display(),
            socket = socket.display(),
        ),
    );
    dir.write(
        "mcp/echo.yaml",
        "mcp_servers:\n  echo: {binary: mcp-echo}\n",
    );
    let daemon = ChildGuard::spawn(
        "mcpd",
        Command::new(bin("mcpd")).arg("--config").arg(&config),
    );

    let running = || {
        let out = Command::new(bin("mcpctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "status", "echo"])
            .output()
            .expect("run mcpctl");
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|status| status["servers"][0]["state"] == "running")
    };
    wait_for_sync(
        Duration::from_secs(20),
        lazy(|| format!("echo to run under mcpd; mcpd stderr: {}", daemon.stderr())),
        running,
    );

    let loadgen = ChildGuard::spawn_with_watchdog(
        "mcpd-loadgen",
        Command::new(bin("mcpd-loadgen")).args([
            "--url",
            &format!("http://127.0.0.1:{gateway}/api/v1/mcp/echo/mcp"),
            "--connections",
            "1",
            "--duration",
            "1",
        ]),
        Duration::from_secs(30),
    );
    let status = loadgen.wait_exit_sync(Duration::from_secs(20));
    let stdout = loadgen.stdout();
    assert!(
        status.success(),
        "loadgen failed: {stdout}{}",
        loadgen.stderr()
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from loadgen: {stdout}"));
    let result: Value = serde_json::from_str(line).expect("loadgen prints JSON");
    assert!(result["requests"].as_u64().unwrap_or(0) > 0, "{result}");
    assert_eq!(result["failed_connections"], 0, "{result}");
    assert!(result["p50_us"].as_u64().unwrap_or(0) > 0, "{result}");
    (dir, daemon)
}
