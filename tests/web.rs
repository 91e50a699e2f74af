//! The status page in a real browser: headless Chromium (Debian's `chromium`, driven by
//! puppeteer-core from tests/interop) loads the page from a running mcpd; the test asserts on
//! the rendered DOM (servers and states, a hidden server absent, a hostile description
//! inert), sees `mcpctl stop` shown without a reload within two polls, and checks that
//! nothing was requested from another origin, the console stayed clean, axe-core and
//! html-validate find nothing, the page is usable on a phone and by keyboard, and works with
//! JavaScript off. Screenshots go to target/web/. Plain HTTP checks (headers, `gateway.web:
//! false`, Host checks) come first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::{GatewayUrls, bin};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const HOSTILE: &str =
    "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">\u{1b}[31m";

fn servers() -> String {
    format!(
        "mcp_servers:
  echo:
    binary: mcp-echo
    description: the example server
    env: {{RUST_LOG: warn}}
  secure:
    binary: mcp-echo
    description: {hostile}
    env: {{RUST_LOG: warn}}
    oauth: {{required: true, scopes: [tools]}}
  hidden:
    binary: mcp-echo
    display_in_web: false
    env: {{RUST_LOG: warn}}
",
        hostile = serde_json::to_string(HOSTILE).unwrap()
    )
}

#[tokio::test]
async fn the_page_over_plain_http_headers_web_off_and_host_checks() {
    let daemon = GwDaemon::start(&servers(), "").await;
    let client = reqwest::Client::new();
    let page = client.get(daemon.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("data-server=\"echo\"") && !html.contains("data-server=\"hidden\""));
    assert!(!html.contains("<script>window") && html.contains("&lt;script&gt;window.pwned=1"));
    for path in [
        "/ui/",
        "/ui/servers/echo",
        "/ui/static/style.css",
        "/ui/static/live.js",
    ] {
        let response = client.get(daemon.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let hidden = client
        .get(daemon.url("/ui/servers/hidden"))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    // Same Host/Origin rules as the rest of the gateway.
    let rebound = client
        .get(daemon.url("/"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let foreign = client
        .get(daemon.url("/ui/servers/echo"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let post = client.post(daemon.url("/")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    drop(daemon);

    let off = GwDaemon::start(&servers(), "  web: false\n").await;
    for path in ["/", "/ui/", "/ui/servers/echo", "/ui/static/live.js"] {
        let response = client.get(off.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{path} with web: false"
        );
    }
    // The registry stays.
    assert_eq!(off.registry().await["data"].as_array().unwrap().len(), 3);
}

/// The browser script and its process group, killed on drop (Chromium included).
struct Browser {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

impl Browser {
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .expect("the browser script answered within 120 s")
            .expect("read the browser script's output");
        let Some(line) = line else {
            let status = self.child.wait().await;
            panic!("the browser script ended early ({status:?}); see its stderr above");
        };
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert_ne!(
            value["event"],
            "error",
            "{}",
            value["message"].as_str().unwrap_or("")
        );
        value
    }
}

fn interop() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Chromium and the npm packages, installed as .ci/run installs them.
fn browser_tools() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run `apt-get install chromium` (as .ci/run does)"
    );
    if !interop().join("node_modules/puppeteer-core").exists() {
        let _ = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(interop())
            .status();
    }
    assert!(
        interop().join("node_modules/puppeteer-core").exists(),
        "puppeteer-core is missing: run `npm ci --prefix tests/interop` (as .ci/run does)"
    );
}

#[tokio::test]
async fn the_page_in_headless_chromium() {
    browser_tools();
    let daemon = GwDaemon::start(&servers(), "").await;
    daemon.wait_running(&["echo", "secure", "hidden"]).await;
    let shots = bin("mcpd")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("web");
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(interop().join("web_check.mjs"))
        .arg(daemon.url(""))
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut browser = Browser { child, lines };

    let loaded = browser.next().await;
    let shown: Vec<&str> = loaded["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| server["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["echo", "secure"], "{loaded}");
    for server in loaded["servers"].as_array().unwrap() {
        assert_eq!(server["state"], "running", "{server}");
        assert_eq!(server["tools"], "4", "{server}");
    }
    // The hostile description is text in the DOM, exactly as configured.
    assert_eq!(
        loaded["servers"][1]["description"],
        HOSTILE.replace('\u{1b}', "\\x1b")
    );

    let stop = daemon.mcpctl(&["stop", "echo"]);
    assert!(stop.status.success(), "{stop:?}");
    let wait = json!({"wait_state": {"server": "echo", "state": "stopped"}});
    stdin
        .write_all(format!("{wait}\n").as_bytes())
        .await
        .unwrap();
    let changed = browser.next().await;
    assert_eq!(changed["reloaded"], false, "{changed}");
    // The page polls once a second: the change shows at the latest with the second answer
    // after `mcpctl stop` returned (counted, not timed).
    let polls =
        changed["polls_after"].as_u64().unwrap() - changed["polls_before"].as_u64().unwrap();
    assert!(
        polls <= 2,
        "the stop showed only after {polls} polls: {changed}"
    );
    assert_eq!(changed["announced"], "echo is stopped", "{changed}");

    let report = browser.next().await;
    assert_eq!(report["hostile_script_ran"], false, "{report}");
    assert_eq!(report["foreign_requests"], json!([]), "{report}");
    assert_eq!(report["console"], json!([]), "{report}");
    assert_eq!(report["page_errors"], json!([]), "{report}");
    assert_eq!(report["failed_requests"], json!([]), "{report}");
    assert_eq!(report["index_axe"], json!([]), "axe-core on /: {report}");
    assert_eq!(
        report["detail"]["axe"],
        json!([]),
        "axe-core on a server page: {report}"
    );
    assert_eq!(
        report["html_validate"],
        json!([]),
        "html-validate: {report}"
    );
    let detail = &report["detail"];
    assert_eq!(
        detail["tools"],
        json!(["add", "echo", "progress", "sleep"]),
        "{detail}"
    );
    assert_eq!(detail["schemas"], 4, "{detail}");
    assert_eq!(detail["horizontal_scroll"], false, "fits a phone: {detail}");
    assert_eq!(
        detail["index_horizontal_scroll"], false,
        "fits a phone: {detail}"
    );
    assert_eq!(
        detail["index_overflowing_cards"], 0,
        "text stays in its card: {detail}"
    );
    assert_eq!(detail["first_focus"], "Skip to content", "{detail}");
    let nojs = &report["nojs"];
    assert_eq!(nojs["servers"][0]["name"], "echo", "{nojs}");
    assert_eq!(nojs["servers"][0]["state"], "stopped", "{nojs}");
    assert_eq!(nojs["servers"][1]["state"], "running", "{nojs}");
    assert_eq!(
        nojs["live"], "Reload the page to see current states.",
        "{nojs}"
    );
    for shot in [
        "index.png",
        "index-nojs.png",
        "index-phone.png",
        "server-phone.png",
    ] {
        assert!(
            shots.join(shot).metadata().is_ok_and(|m| m.len() > 1000),
            "{shot}"
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(60), browser.child.wait())
        .await
        .expect("the browser script exits")
        .unwrap();
    assert!(status.success(), "{status}");
}
