//! Two mcpd behind a real nginx running the shipped balancer config
//! (docs/examples/nginx/mcpd.conf, only its addresses replaced): both instances share the JWT
//! key, `virtual-sessions.key` and the server files, as docs/scaling.md asks. A 2025-11-25
//! session through a virtual server continues after the instance that opened it is killed;
//! stateless 2026-07-28 calls are spread over both; a per-server route keeps a session's
//! requests on one instance. The same per-server check runs behind HAProxy with the shipped
//! docs/examples/haproxy/mcpd.cfg, whose affinity is learned from `Mcp-Session-Id`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::mcp_support::{Generation, call_text, connect};
use mcpd_tests::{ChildGuard, GatewayUrls, TestDir, free_port, local_url, port_accepts, wait_for};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// The balancer configs as shipped.
const NGINX_EXAMPLE: &str = include_str!("../docs/examples/nginx/mcpd.conf");
const HAPROXY_EXAMPLE: &str = include_str!("../docs/examples/haproxy/mcpd.cfg");
/// The instance addresses and the listen lines of the examples, replaced by the test's.
const EXAMPLE_FIRST: &str = "10.0.1.11:8080";
const EXAMPLE_SECOND: &str = "10.0.1.12:8080";
const NGINX_LISTEN: &str = "listen 80;";
const HAPROXY_BIND: &str = "bind :80\n";

/// The balancer in front of the two instances.
#[derive(Clone, Copy, Debug)]
enum Balancer {
    Nginx,
    HaProxy,
}

/// The same services on every instance: a server with its own sessions and a virtual server
/// over it, both behind the shared JWT key.
const SERVERS: &str = r#"mcp_servers:
  echo:
    binary: mcp-echo
    env: {RUST_LOG: warn}
    oauth: {required: true}
  all:
    aggregate: ["*"]
    oauth: {required: true}
"#;

/// One shared `virtual-sessions.key` (32 bytes), as an operator would copy to each instance.
const SESSION_KEY: [u8; 32] = *b"scale-out-shared-session-key-32b";

struct Site {
    // Field order is drop order: the balancer goes first, then the instances.
    _balancer: ChildGuard,
    port: u16,
    instances: Vec<GwDaemon>,
    _dir: TestDir,
}

impl Site {
    async fn start(balancer: Balancer) -> Site {
        let mut instances = Vec::new();
        for _ in 0..2 {
            let daemon = GwDaemon::start(SERVERS, "").await;
            // Before any virtual-server request: the key is read on first use.
            let key = daemon.dir.write("state/virtual-sessions.key", SESSION_KEY);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the key");
            daemon.wait_running(&["echo"]).await;
            instances.push(daemon);
        }
        let dir = TestDir::new();
        let port = free_port();
        let [first, second] = [0, 1].map(|i| instances[i].url("").replace("http://", ""));
        let process = match balancer {
            Balancer::Nginx => start_nginx(&dir, port, &first, &second),
            Balancer::HaProxy => start_haproxy(&dir, port, &first, &second),
        };
        wait_for(
            Duration::from_secs(20),
            format!("{balancer:?} to listen"),
            || async {
                assert!(
                    process.try_status().is_none(),
                    "{balancer:?} exited: {} {}",
                    process.stderr(),
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
                port_accepts(port)
            },
        )
        .await;
        Site {
            _balancer: process,
            port,
            instances,
            _dir: dir,
        }
    }

    fn mcp_url(&self, name: &str) -> String {
        local_url(self.port, &format!("/api/v1/mcp/{name}/mcp"))
    }

    /// A token of the first instance, which every instance accepts (the same key).
    fn token(&self) -> String {
        self.instances[0].token(&["mcp"])
    }

    /// Requests each instance's gateway counted for `server`.
    async fn served(&self, server: &str) -> Vec<u64> {
        let mut counts = Vec::new();
        for daemon in &self.instances {
            counts.push(requests_served(daemon, server).await);
        }
        counts
    }
}

/// A balancer from Debian's package (in /usr/sbin, which a user's PATH may lack).
fn installed(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if std::path::Path::new(&sbin).exists() {
        return sbin;
    }
    let on_path = Command::new(name).arg("-v").output().is_ok();
    assert!(
        on_path,
        "{name} is missing: apt-get install {name} (as .ci/run does)"
    );
    name.to_owned()
}

/// `text` with the example's two instance addresses replaced by `first` and `second`.
fn with_instances(text: &str, first: &str, second: &str) -> String {
    for needle in [EXAMPLE_FIRST, EXAMPLE_SECOND] {
        assert!(text.contains(needle), "the example lost {needle}");
    }
    text.replace(EXAMPLE_FIRST, first)
        .replace(EXAMPLE_SECOND, second)
}

/// nginx running the shipped example on `port`, in front of `first` and `second`.
fn start_nginx(dir: &TestDir, port: u16, first: &str, second: &str) -> ChildGuard {
    assert!(
        NGINX_EXAMPLE.contains(NGINX_LISTEN),
        "the example lost its listen line"
    );
    let site = with_instances(NGINX_EXAMPLE, first, second)
        .replace(NGINX_LISTEN, &format!("listen 127.0.0.1:{port};"));
    let conf = dir.write("nginx.conf", nginx_main(dir, &site));
    ChildGuard::spawn(
        format!("nginx on {port}"),
        Command::new(installed("nginx"))
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf),
    )
}

/// HAProxy running the shipped example on `port`, in the foreground.
fn start_haproxy(dir: &TestDir, port: u16, first: &str, second: &str) -> ChildGuard {
    assert!(
        HAPROXY_EXAMPLE.contains(HAPROXY_BIND),
        "the example lost its bind line"
    );
    let conf = with_instances(HAPROXY_EXAMPLE, first, second)
        .replace(HAPROXY_BIND, &format!("bind 127.0.0.1:{port}\n"));
    let conf = dir.write("haproxy.cfg", conf);
    ChildGuard::spawn(
        format!("haproxy on {port}"),
        Command::new(installed("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&conf),
    )
}

/// The main context around the example, unprivileged and in `dir`.
fn nginx_main(dir: &TestDir, site: &str) -> String {
    let d = dir.path().display();
    format!(
        "worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{site}
}}
"
    )
}

/// The sum of `mcpd_gateway_requests_total` for `server` on one instance.
async fn requests_served(daemon: &GwDaemon, server: &str) -> u64 {
    let text = reqwest::get(daemon.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let label = format!("server=\"{server}\"");
    text.lines()
        .filter(|line| line.starts_with("mcpd_gateway_requests_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// A raw JSON-RPC POST of the session generation; the status, the session header and the
/// answer (the last `data:` line of an SSE answer).
async fn post(
    url: &str,
    session: Option<&str>,
    token: &str,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.expect("POST through nginx");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let data = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .unwrap_or(&text);
    let value = serde_json::from_str(data).unwrap_or(Value::String(text.clone()));
    (status, session, value)
}

fn echo_call(id: u64, tool: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": text}}})
}

#[tokio::test]
async fn a_virtual_server_session_outlives_the_instance_that_opened_it() {
    let mut site = Site::start(Balancer::Nginx).await;
    let url = site.mcp_url("all");
    let token = site.token();
    let (status, session, answer) = post(
        &url,
        None,
        &token,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "scaleout", "version": "0"}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("a sealed session id");
    let opened: Vec<u64> = site.served("all").await;
    let opener = opened
        .iter()
        .position(|count| *count > 0)
        .expect("one instance answered initialize");
    let (status, _, answer) = post(
        &url,
        Some(&session),
        &token,
        echo_call(2, "echo_echo", "before"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "before", "{answer}");

    // The instance that opened the session goes away, its servers with it.
    let gone = site.instances.remove(opener);
    gone.process.signal(Signal::SIGKILL);
    gone.process.wait_exit(Duration::from_secs(20)).await;
    let survivor_before = requests_served(&site.instances[0], "all").await;
    for (id, text) in [(3, "after"), (4, "still")] {
        let (status, _, answer) = post(
            &url,
            Some(&session),
            &token,
            echo_call(id, "echo_echo", text),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
    }
    assert!(
        requests_served(&site.instances[0], "all").await >= survivor_before + 2,
        "the surviving instance answered"
    );
    drop(gone);
}

#[tokio::test]
async fn stateless_calls_spread_over_both_instances() {
    let site = Site::start(Balancer::Nginx).await;
    let token = site.token();
    let before = site.served("all").await;
    for round in 0..6 {
        // A new client for each round: every request of the stateless generation stands
        // alone, so the balancer may send each to any instance.
        let (client, _) = connect(&site.mcp_url("all"), Some(&token), Generation::Stateless)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let text = format!("round {round}");
        assert_eq!(
            call_text(&client, "echo_echo", json!({"text": text})).await,
            text
        );
        let _ = client.cancel().await;
    }
    let after = site.served("all").await;
    for (instance, (before, after)) in before.iter().zip(&after).enumerate() {
        assert!(
            after > before,
            "instance {instance} served none of them: {after:?}"
        );
    }
}

/// A 2025-11-25 session on a per-server route makes all its requests to one instance: with
/// another, the instance's own server would not know the session.
async fn per_server_session_stays_on_one_instance(balancer: Balancer) {
    let site = Site::start(balancer).await;
    let token = site.token();
    let before = site.served("echo").await;
    let (client, _) = connect(&site.mcp_url("echo"), Some(&token), Generation::Session)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    for call in 0..8 {
        let text = format!("call {call}");
        assert_eq!(
            call_text(&client, "echo", json!({"text": text})).await,
            text
        );
    }
    let _ = client.cancel().await;
    let after = site.served("echo").await;
    let grew = before.iter().zip(&after).filter(|(b, a)| a > b).count();
    assert_eq!(
        grew, 1,
        "one instance served the session: before {before:?}, after {after:?}"
    );
}

#[tokio::test]
async fn a_per_server_session_stays_on_one_instance_behind_nginx() {
    per_server_session_stays_on_one_instance(Balancer::Nginx).await;
}

#[tokio::test]
async fn a_per_server_session_stays_on_one_instance_behind_haproxy() {
    per_server_session_stays_on_one_instance(Balancer::HaProxy).await;
}
