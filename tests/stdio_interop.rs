//! Third-party stdio servers from the registries, supervised and bridged by mcpd, driven
//! through the gateway by the official Python SDK client: the TypeScript "everything" and
//! "filesystem" servers (npm), `mcp-server-time` and `mcp-server-git` (PyPI). `.ci/run`
//! installs them; a test installs what is missing, so `cargo test --workspace` works on a fresh machine too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::interop::{interop_dir, npm_server};
use mcpd_tests::{GatewayUrls, TestDir};
use serde_json::{Value, json};

/// Pinned like `.ci/run`: mcp-server-time and the two packages it needs beyond the SDK.
const TIME_PACKAGES: [&str; 3] = [
    "mcp-server-time==2026.10.19",
    "tzlocal==5.4.5",
    "tzdata==2026.6",
];

/// tests/interop/python with mcp-server-time, installed if missing (the MCP SDK itself is
/// the system one, as for the other interop test).
fn time_server_path() -> PathBuf {
    let target = interop_dir().join("python");
    let has_time = |target: &Path| target.join("mcp_server_time").exists();
    if !has_time(&target) {
        let _ = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&target)
            .args(TIME_PACKAGES)
            .status();
    }
    assert!(
        has_time(&target),
        "mcp-server-time is missing: run `pip install --no-deps --target tests/interop/python {}` (as .ci/run does)",
        TIME_PACKAGES.join(" ")
    );
    target
}

/// Runs tests/interop/stdio_client.py against `url` with `plan`; its JSON output.
async fn python_client(url: &str, plan: Value) -> Value {
    mcpd_tests::interop::python_json(
        "stdio_client.py",
        &[url, &plan.to_string()],
        Duration::from_secs(120),
    )
    .await
}

#[tokio::test]
async fn official_stdio_servers_are_bridged_for_the_official_python_client() {
    let everything = npm_server("mcp-server-everything");
    let filesystem = npm_server("mcp-server-filesystem");
    let python_path = time_server_path();
    let shared = TestDir::new();
    shared.write("hello.txt", "hello from a stdio server\n");
    let servers = format!(
        "mcp_servers:
  everything:
    binary: {everything}
    args: [stdio]
    transport: stdio
  files:
    binary: {filesystem}
    args: [{shared}]
    transport: stdio
  time:
    binary: python3
    args: [-m, mcp_server_time]
    env: {{PYTHONPATH: {python_path}}}
    transport: stdio
",
        everything = everything.display(),
        filesystem = filesystem.display(),
        shared = shared.path().display(),
        python_path = python_path.display(),
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["everything", "files", "time"]).await;

    let result = python_client(
        &daemon.mcp_url("everything"),
        json!({
            "call": ["echo", {"message": "through mcpd"}],
            "progress": ["trigger-long-running-operation", {"duration": 1, "steps": 3}],
            "cancel": ["trigger-long-running-operation", {"duration": 60, "steps": 60}],
        }),
    )
    .await;
    assert_eq!(result["server_name"], "mcp-servers/everything", "{result}");
    assert_eq!(result["protocol_version"], "2025-11-25", "{result}");
    assert_eq!(result["texts"], json!(["Echo: through mcpd"]), "{result}");
    assert_eq!(result["progress"], json!([1.0, 2.0, 3.0]), "{result}");
    assert_eq!(result["cancelled"], true);
    assert_eq!(
        result["after_cancel"],
        json!(["Echo: through mcpd"]),
        "{result}"
    );

    let file = shared.path().join("hello.txt");
    let result = python_client(
        &daemon.mcp_url("files"),
        json!({"call": ["read_text_file", {"path": file.display().to_string()}]}),
    )
    .await;
    assert!(
        result["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("list_directory"))),
        "{result}"
    );
    assert_eq!(
        result["texts"],
        json!(["hello from a stdio server\n"]),
        "{result}"
    );
    assert_eq!(result["is_error"], false, "{result}");

    let result = python_client(
        &daemon.mcp_url("time"),
        json!({"call": ["get_current_time", {"timezone": "Etc/UTC"}]}),
    )
    .await;
    assert_eq!(result["server_name"], "mcp-time", "{result}");
    let answer: Value = serde_json::from_str(result["texts"][0].as_str().unwrap_or("null"))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {result}"));
    assert_eq!(answer["timezone"], "Etc/UTC", "{result}");
}

/// Pinned like `.ci/run`: mcp-server-git and the three packages it needs beyond the SDK.
const GIT_PACKAGES: [&str; 4] = [
    "mcp-server-git==2026.10.19",
    "gitpython==3.2.1",
    "gitdb==4.0.12",
    "smmap==5.0.3",
];

/// tests/interop/python with mcp-server-git, installed if missing.
fn git_server_path() -> PathBuf {
    let target = interop_dir().join("python");
    let has_git = |target: &Path| target.join("mcp_server_git").exists();
    if !has_git(&target) {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(["--no-deps", "--target"])
            .arg(&target)
            .args(GIT_PACKAGES)
            .status();
    }
    assert!(
        has_git(&target),
        "mcp-server-git is missing: run `pip install --no-deps --target tests/interop/python {}` (as .ci/run does)",
        GIT_PACKAGES.join(" ")
    );
    target
}

/// Runs `git args` in `dir` with a fixed identity and no user or system configuration.
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=mcpd tests",
            "-c",
            "user.email=tests@mcpd.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

#[tokio::test]
async fn mcp_server_git_answers_about_the_tests_repository() {
    let python_path = git_server_path();
    let repo = TestDir::new();
    repo.write("notes.txt", "first line\n");
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "notes.txt"]);
    git(repo.path(), &["commit", "-q", "-m", "bridged commit 7f3a"]);
    repo.write("untracked.txt", "not yet added\n");
    let servers = format!(
        "mcp_servers:
  git:
    binary: python3
    args: [-m, mcp_server_git, --repository, {repo}]
    env: {{PYTHONPATH: {python_path}}}
    transport: stdio
",
        repo = repo.path().display(),
        python_path = python_path.display(),
    );
    let daemon = GwDaemon::start(&servers, "").await;
    daemon.wait_running(&["git"]).await;
    let repo_path = repo.path().display().to_string();

    let status = python_client(
        &daemon.mcp_url("git"),
        json!({"call": ["git_status", {"repo_path": repo_path}]}),
    )
    .await;
    assert_eq!(status["server_name"], "mcp-git", "{status}");
    for tool in ["git_status", "git_log", "git_diff", "git_commit"] {
        assert!(
            status["tools"]
                .as_array()
                .is_some_and(|tools| tools.contains(&json!(tool))),
            "{tool}: {status}"
        );
    }
    assert_eq!(status["is_error"], false, "{status}");
    let text = status["texts"][0].as_str().unwrap_or_default();
    assert!(
        text.contains("main") && text.contains("untracked.txt"),
        "{status}"
    );

    let log = python_client(
        &daemon.mcp_url("git"),
        json!({"call": ["git_log", {"repo_path": repo_path, "max_count": 5}]}),
    )
    .await;
    assert_eq!(log["is_error"], false, "{log}");
    let text = log["texts"][0].as_str().unwrap_or_default();
    assert!(
        text.contains("bridged commit 7f3a") && text.contains("mcpd tests"),
        "{log}"
    );
}
