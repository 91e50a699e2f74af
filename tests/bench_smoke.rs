//! The smallest case of the benchmark harness (bench/run.sh), so it does not rot: mcpd with one
//! mcp-echo, and mcpd-loadgen driving `tools/call` through the gateway for one second on one
//! connection.

use std::process::Command;
use std::time::Duration;

use mcpd_tests::{ChildGuard, TestDir, bin, lazy, port_block, wait_for_sync};
use serde_json::Value;

#[test]
fn loadgen_calls_echo_through_mcpd() {
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
             logs: {{dir: logs}}\n\
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
}
