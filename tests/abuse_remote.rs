//! Hostile remote servers (`url:`) against the real `mcpd`: a remote that passes its probes
//! but answers callers with a redirect, megabytes of headers, bytes that are not HTTP, or a
//! body that never ends; and remotes whose tool names carry terminal escapes or bytes that
//! are not UTF-8. The gateway answers 502 with a clear error, keeps serving, never passes a
//! `Location` on, and mcpctl shows every string escaped.

use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::remote_support::{FakeMcp, Front, Hostile};
use mcpd_tests::{GatewayUrls, lazy, port_block, server_entry, wait_for};
use serde_json::Value;

const INNER: &str = "mcp_servers:
  echo:
    binary: mcp-echo
    env: {RUST_LOG: warn}
";

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

async fn post(daemon: &GwDaemon, server: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(daemon.mcp_url(server))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(LIST)
        .send()
        .await
        .expect("POST through the gateway")
}

async fn refused_with_502(daemon: &GwDaemon, server: &str, says: &str) {
    let answer = post(daemon, server).await;
    assert_eq!(answer.status(), 502, "{server}");
    assert!(answer.headers().get("location").is_none(), "{server}");
    let body: Value = answer.json().await.expect("a JSON error");
    assert_eq!(body["server"], server, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains(says),
        "{server}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_remotes_get_502_and_escaped_strings() {
    let inner = GwDaemon::start(INNER, "").await;
    inner.wait_running(&["echo"]).await;
    let ports = port_block(6);
    let upstream = inner.gateway_port();
    let mut huge = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let fronts = [
        Front::start(
            ports.port(0),
            None,
            upstream,
            Hostile::Answer(
                b"HTTP/1.1 302 Found\r\nLocation: http://evil.example/steal\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
        )
        .await,
        Front::start(ports.port(1), None, upstream, Hostile::Answer(huge)).await,
        Front::start(
            ports.port(2),
            None,
            upstream,
            Hostile::Answer(b"\x00\xff\x1b[2J not HTTP at all\r\n\r\n".to_vec()),
        )
        .await,
        Front::start(ports.port(3), None, upstream, Hostile::EndlessBody).await,
    ];
    let _escapes = FakeMcp::start(
        ports.port(4),
        br#"[{"name":"evil\u001b[2J\u0007tool","description":"\u001b]0;owned\u0007","inputSchema":{"type":"object"}}]"#
            .to_vec(),
    )
    .await;
    let _not_utf8 = FakeMcp::start(
        ports.port(5),
        b"[{\"name\":\"bad\xff\xfe\x1b[31mtool\",\"inputSchema\":{\"type\":\"object\"}}]".to_vec(),
    )
    .await;
    let url = |i: u16, path: &str| format!("http://127.0.0.1:{}{path}", ports.port(i));
    let servers = format!(
        "mcp_servers:
  redirect: {{url: \"{}\"}}
  huge: {{url: \"{}\"}}
  garbage: {{url: \"{}\"}}
  endless: {{url: \"{}\"}}
  escapes: {{url: \"{}\"}}
  notutf8: {{url: \"{}\"}}
",
        url(0, "/api/v1/mcp/echo/mcp"),
        url(1, "/api/v1/mcp/echo/mcp"),
        url(2, "/api/v1/mcp/echo/mcp"),
        url(3, "/api/v1/mcp/echo/mcp"),
        url(4, "/mcp"),
        url(5, "/mcp"),
    );
    let outer = GwDaemon::start(&servers, "").await;
    outer
        .wait_running(&["redirect", "huge", "garbage", "endless", "escapes"])
        .await;

    refused_with_502(&outer, "redirect", "redirect (HTTP 302)").await;
    refused_with_502(&outer, "huge", "upstream request failed").await;
    refused_with_502(&outer, "garbage", "upstream request failed").await;

    // A body that never ends streams until the client leaves; the gateway goes on serving.
    let mut answer = post(&outer, "endless").await;
    assert_eq!(answer.status(), 200);
    let mut read = 0;
    while read < (1 << 20) {
        let chunk = answer.chunk().await.expect("a chunk").expect("more body");
        read += chunk.len();
    }
    drop(answer);
    let health = reqwest::get(outer.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    refused_with_502(&outer, "redirect", "redirect").await;

    // Tool names with terminal escapes are listed, escaped, by mcpctl.
    let tools = outer.mcpctl(&["tools", "escapes"]);
    assert!(tools.status.success(), "{tools:?}");
    let shown = String::from_utf8(tools.stdout).expect("mcpctl writes UTF-8");
    assert!(shown.contains("evil"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );

    // A tool list that is not UTF-8 fails the probe; the reason is shown escaped.
    let what = lazy(|| {
        format!(
            "notutf8 to be unreachable; stderr: {}",
            outer.process.stderr()
        )
    });
    wait_for(mcpd_tests::gw_support::GW_START, what, || {
        let status = outer.status();
        let state = server_entry(&status, "notutf8").map(|entry| entry["state"].clone());
        async move { state == Some(Value::from("unreachable")) }
    })
    .await;
    let status = outer.mcpctl(&["status"]);
    let shown = String::from_utf8(status.stdout).expect("mcpctl writes UTF-8");
    assert!(shown.contains("unreachable"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    let show = outer.mcpctl(&["show", "notutf8"]);
    let shown = String::from_utf8(show.stdout).expect("mcpctl writes UTF-8");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    for front in fronts {
        front.stop().await;
    }
}
