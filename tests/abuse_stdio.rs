//! Hostile clients of a stdio server behind the gateway: oversized and malformed bodies,
//! wrong methods and headers, forged answers and cancels. Each gets a clear refusal and the
//! server keeps serving the same process.

use mcpd_tests::GatewayUrls;
use mcpd_tests::gw_support::GwDaemon;
use mcpd_tests::stdio_support::{open_session, post, status_of, tool_call};
use serde_json::{Value, json};

const ECHO: &str = "mcp_servers:
  echo:
    binary: mcp-echo
    args: [--stdio]
    transport: stdio
";

#[tokio::test]
async fn hostile_requests_are_refused_and_the_child_keeps_serving() {
    let daemon = GwDaemon::start(ECHO, "").await;
    daemon.wait_running(&["echo"]).await;
    let url = daemon.mcp_url("echo");
    let pid = status_of(&daemon, "echo")["pid"].as_i64();
    let session = open_session(&url).await;
    let client = reqwest::Client::new();

    // Over gateway.max_body (64 KiB in these tests).
    let huge = tool_call("1", "echo", json!({"text": "x".repeat(100 * 1024)}));
    assert_eq!(post(&url, Some(&session), &huge).await.0, 413);

    // Nesting deeper than servers' JSON readers go (a server that drops such a message would
    // leave its caller waiting), invalid UTF-8, a number id too large for any integer.
    // (In the arguments: the gateway passes over values it does not decide on, so the
    // bridge's own limit is what refuses it.)
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{}{}}}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let (status, _, body) = post(&url, Some(&session), &deep).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nests deeper"), "{body}");
    let invalid = client
        .post(&url)
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .body(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec())
        .send()
        .await
        .expect("POST");
    assert_eq!(invalid.status().as_u16(), 400);
    let big_id = r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"tools/list"}"#;
    let (status, _, body) = post(&url, Some(&session), big_id).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("123456789012345678901234567890"),
        "the id came back changed: {body}"
    );

    // Wrong method, GET without accepting SSE, a session id that is not ASCII.
    let put = client.put(&url).send().await.expect("PUT");
    assert_eq!(put.status().as_u16(), 405);
    assert!(put.headers().get("allow").is_some());
    let get = client
        .get(&url)
        .header("mcp-session-id", &session)
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status().as_u16(), 406);
    let odd = client
        .post(&url)
        .header("content-type", "application/json")
        .header(
            "mcp-session-id",
            reqwest::header::HeaderValue::from_bytes(b"\xe9t\xe9").unwrap(),
        )
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(odd.status().as_u16(), 404);

    // A forged answer to a request mcpd never sent (refused), and a cancel of an id nobody
    // uses (accepted and ignored).
    let forged = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    assert_eq!(post(&url, Some(&session), forged).await.0, 400);
    let cancel =
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nobody"}}"#;
    assert_eq!(post(&url, Some(&session), cancel).await.0, 202);

    // Still the same process, still answering.
    let (status, _, body) = post(
        &url,
        Some(&session),
        &tool_call("2", "echo", json!({"text": "ok"})),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["result"]["content"][0]["text"], "ok");
    assert_eq!(status_of(&daemon, "echo")["pid"].as_i64(), pid);
}
