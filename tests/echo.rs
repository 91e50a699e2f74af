//! The example server `mcp-echo` as a real process, driven by rmcp clients of both protocol
//! generations, and the daemon's `McpClient` against it.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpd::mcp_client::{McpClient, McpError};
use mcpd_tests::mcp_support::{BOTH, CALL, Generation, call, call_progress, connected, text};
use mcpd_tests::sockets::connections_of;
use mcpd_tests::{
    ChildGuard, bin, describe, free_port, mcp_url, start_echo, wait_for, wait_for_value,
};
use nix::sys::signal::Signal;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use serde_json::{Map, Value, json};

const START: Duration = Duration::from_secs(20);

#[tokio::test]
async fn lists_and_calls_the_four_tools_in_both_protocol_generations() {
    let port = free_port();
    let echo = start_echo(port).await;
    for generation in BOTH {
        let (client, _) = connected(&mcp_url(port), generation).await;
        let info = client.peer_info().expect("server info after connect");
        let expected = match generation {
            Generation::Session => ProtocolVersion::V_2025_11_25,
            Generation::Stateless => ProtocolVersion::V_2026_07_28,
        };
        assert_eq!(info.protocol_version, expected);
        assert_eq!(
            info.server_info.as_ref().map(|s| s.name.as_str()),
            Some("mcp-echo")
        );

        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools/list")
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["add", "echo", "progress", "sleep"],
            "{generation:?}"
        );

        assert_eq!(
            text(&call(&client, "echo", json!({"text": "hello, world"})).await),
            "hello, world"
        );
        assert_eq!(
            text(&call(&client, "add", json!({"a": 2, "b": 40.5})).await),
            "42.5"
        );

        let started = Instant::now();
        let slept = call(&client, "sleep", json!({"ms": 150})).await;
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "sleep returned early"
        );
        assert_eq!(text(&slept), "slept 150 ms");

        let done = call(&client, "progress", json!({"steps": 2, "interval_ms": 1})).await;
        assert_eq!(text(&done), "completed 2 steps");

        // Bad arguments are an error, not a crash.
        let params = CallToolRequestParams::new("add")
            .with_arguments(Map::from_iter([("a".to_owned(), json!("two"))]));
        let bad = client.call_tool(params).await;
        assert!(
            bad.is_err() || bad.as_ref().is_ok_and(|r| r.is_error == Some(true)),
            "{bad:?}"
        );

        client.cancel().await.expect("close the client");
    }
    assert!(
        echo.try_status().is_none(),
        "mcp-echo died: {}",
        echo.stderr()
    );
}

#[tokio::test]
async fn progress_notifications_arrive_one_by_one_before_the_result() {
    const STEPS: usize = 5;
    const INTERVAL: Duration = Duration::from_millis(80);
    let port = free_port();
    let _echo = start_echo(port).await;
    for generation in BOTH {
        let (client, mut received) = connected(&mcp_url(port), generation).await;
        let (result, answered) = call_progress(&client, STEPS as u32, INTERVAL).await;
        assert_eq!(text(&result), format!("completed {STEPS} steps"));

        let mut notes = Vec::new();
        wait_for(
            CALL,
            format!("{STEPS} progress notifications ({generation:?})"),
            || {
                while let Ok(note) = received.try_recv() {
                    notes.push(note);
                }
                std::future::ready(notes.len() >= STEPS)
            },
        )
        .await;
        assert_eq!(notes.len(), STEPS, "exactly one notification per step");
        let values: Vec<f64> = notes.iter().map(|(_, note)| note.progress).collect();
        assert_eq!(
            values,
            [1.0, 2.0, 3.0, 4.0, 5.0],
            "progress values in order"
        );
        // Streamed as they happen, not batched with the result: the first arrived well before
        // the answer, and they spread over the intervals between them. A loaded machine may
        // delay one, so the check is at half the time the server took.
        let first = notes[0].0;
        let last = notes[STEPS - 1].0;
        let spread = INTERVAL * (STEPS as u32 - 1) / 2;
        assert!(
            answered.duration_since(first) >= spread,
            "{generation:?}: first note came with the result"
        );
        assert!(
            last.duration_since(first) >= spread,
            "{generation:?}: notes arrived in a burst"
        );
        client.cancel().await.expect("close the client");
    }
}

/// With Nagle's algorithm on, against the client's delayed ACKs, each answer written in more
/// than one piece waits ~40 ms. Read the flag back from mcp-echo's accepted sockets while a
/// call is in flight on them; the latency itself is measured by the benchmarks (bench/BENCH.md, `direct` p50).
#[tokio::test]
async fn accepted_connections_have_nagle_off() {
    let port = free_port();
    let echo = start_echo(port).await;
    for generation in BOTH {
        let (client, _) = connected(&mcp_url(port), generation).await;
        call(&client, "echo", json!({"text": "hello"})).await;
        // A call in flight holds its connection open, whatever the keep-alive policy.
        let peer = client.peer().clone();
        let arguments = Map::from_iter([("ms".to_owned(), json!(60_000))]);
        let pending = tokio::spawn(async move {
            peer.call_tool(CallToolRequestParams::new("sleep").with_arguments(arguments))
                .await
        });
        let accepted = wait_for_value(
            CALL,
            format!("{generation:?}: an accepted connection in mcp-echo"),
            || {
                let accepted: Vec<_> = connections_of(echo.pid())
                    .into_iter()
                    .filter(|socket| socket.local_addr().is_ok_and(|addr| addr.port() == port))
                    .collect();
                std::future::ready((!accepted.is_empty()).then_some(accepted))
            },
        )
        .await;
        for socket in &accepted {
            assert!(
                socket.nodelay().expect("getsockopt TCP_NODELAY"),
                "{generation:?}: Nagle is on for {:?}",
                socket.peer_addr()
            );
        }
        pending.abort();
        client.cancel().await.expect("close the client");
    }
}

#[tokio::test]
async fn prints_a_line_per_tool_call() {
    let port = free_port();
    let echo = start_echo(port).await;
    let line = echo.wait_for_stdout("listening on", START).await;
    assert_eq!(line, format!("mcp-echo listening on {}", mcp_url(port)));
    let (client, _) = connected(&mcp_url(port), Generation::Session).await;
    call(&client, "add", json!({"a": 1, "b": 2})).await;
    call(&client, "echo", json!({"text": "x"})).await;
    echo.wait_for_stdout("call echo", CALL).await;
    assert!(
        echo.stdout().contains("call add\ncall echo\n"),
        "{}",
        echo.stdout()
    );
    client.cancel().await.expect("close the client");
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let port = free_port();
    let _echo = start_echo(port).await;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/other"))
        .await
        .expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sigterm_and_sigint_end_it_with_exit_code_0() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let port = free_port();
        let echo = start_echo(port).await;
        // An open session with its SSE stream must not hold the shutdown up.
        let (client, _) = connected(&mcp_url(port), Generation::Session).await;
        call(&client, "echo", json!({"text": "before"})).await;
        echo.signal(signal);
        let status = echo.wait_exit(Duration::from_secs(5)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "{signal}: {}; stderr: {}",
            describe(status),
            echo.stderr()
        );
        drop(client);
    }
}

#[tokio::test]
async fn a_missing_or_invalid_port_is_a_usage_error() {
    let cases: [(&str, Option<(&str, &str)>); 4] = [
        ("MCP_PORT", None),
        ("MCP_PORT", Some(("MCP_PORT", "not-a-port"))),
        ("MCP_PORT", Some(("MCP_PORT", "0"))),
        ("PORT", Some(("PORT", "70000"))),
    ];
    for (mentioned, env) in cases {
        let mut command = Command::new(bin("mcp-echo"));
        command.env_remove("MCP_PORT").env_remove("PORT");
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let echo = ChildGuard::spawn(format!("mcp-echo with {env:?}"), &mut command);
        let status = echo.wait_exit(START).await;
        assert_eq!(status.code(), Some(2), "{env:?}: {}", describe(status));
        let stderr = echo.stderr();
        assert!(
            stderr.contains(mentioned),
            "{env:?}: stderr does not name {mentioned}: {stderr}"
        );
        assert!(
            echo.stdout().is_empty(),
            "{env:?}: printed {}",
            echo.stdout()
        );
    }
}

#[tokio::test]
async fn port_falls_back_to_port_variable() {
    let port = free_port();
    let mut command = Command::new(bin("mcp-echo"));
    command.env_remove("MCP_PORT").env("PORT", port.to_string());
    let echo = ChildGuard::spawn("mcp-echo with PORT", &mut command);
    echo.wait_for_stdout(&mcp_url(port), START).await;
}

// --- the daemon's McpClient against the real server ----------------------------------------

#[tokio::test]
async fn mcp_client_handshake_reports_tools_version_and_identity() {
    let port = free_port();
    let _echo = start_echo(port).await;
    let client = McpClient::new();
    let handshake = client
        .handshake(&mcp_url(port), CALL)
        .await
        .expect("handshake");
    let mut names: Vec<&str> = handshake
        .tools
        .iter()
        .map(|tool| tool.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "progress", "sleep"]);
    let echo_tool = handshake
        .tools
        .iter()
        .find(|tool| tool.name == "echo")
        .expect("echo tool");
    let schema: serde_json::Value = serde_json::from_str(echo_tool.input_schema.get()).unwrap();
    assert_eq!(schema["properties"]["text"]["type"], "string");
    assert!(
        echo_tool
            .description
            .as_deref()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(handshake.protocol_version, "2026-07-28");
    assert_eq!(handshake.server_name, "mcp-echo");
    assert_eq!(handshake.server_version, env!("CARGO_PKG_VERSION"));
    assert!(handshake.latency < CALL);

    // Probes repeat; each one is a fresh, complete exchange.
    for _ in 0..5 {
        assert_eq!(
            client
                .list_tools(&mcp_url(port), CALL)
                .await
                .expect("probe")
                .len(),
            4
        );
    }
}

#[tokio::test]
async fn mcp_client_calls_tools() {
    let port = free_port();
    let echo = start_echo(port).await;
    let client = McpClient::new();
    let Value::Object(arguments) = json!({"text": "through mcpd"}) else {
        unreachable!()
    };
    let result = client
        .call_tool(&mcp_url(port), "echo", arguments, CALL)
        .await
        .expect("call echo");
    assert_eq!(result["content"][0]["text"], "through mcpd");
    assert_ne!(result["isError"], true);
    echo.wait_for_stdout("call echo", CALL).await;

    let error = client
        .call_tool(&mcp_url(port), "no-such-tool", Map::new(), CALL)
        .await
        .unwrap_err();
    // The server's JSON-RPC error, with its code (audit records keep it).
    assert!(matches!(error, McpError::Rpc { .. }), "{error}");
    assert_eq!(error.rpc_code(), Some(-32602), "{error}");
}

#[tokio::test]
async fn mcp_client_gives_up_at_its_timeout() {
    let port = free_port();
    let _echo = start_echo(port).await;
    let Value::Object(arguments) = json!({"ms": 5000}) else {
        unreachable!()
    };
    let error = McpClient::new()
        .call_tool(
            &mcp_url(port),
            "sleep",
            arguments,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, McpError::Timeout { .. }), "{error}");
}

#[tokio::test]
async fn mcp_client_times_out_on_a_silent_server() {
    // The kernel completes the TCP handshake for the backlog; nobody ever answers.
    let port = free_port();
    let _silent = mcpd_tests::hold_port(port);
    let error = McpClient::new()
        .list_tools(&mcp_url(port), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, McpError::Timeout { .. }), "{error}");
}

#[tokio::test]
async fn mcp_client_reports_a_closed_port_as_a_refused_connect_error() {
    let port = free_port(); // reserved for this test, and nothing listens on it
    let error = McpClient::new()
        .handshake(&mcp_url(port), CALL)
        .await
        .unwrap_err();
    // Refused at once: a Connect error, not a Timeout after CALL.
    let McpError::Connect { url, reason } = &error else {
        panic!("expected Connect, got {error}")
    };
    assert_eq!(url, &mcp_url(port));
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

#[tokio::test]
async fn mcp_client_reports_a_non_mcp_server_as_protocol_error() {
    // mcp-echo answers 404 off its MCP path: an HTTP server, but no MCP there.
    let port = free_port();
    let _echo = start_echo(port).await;
    let url = format!("http://127.0.0.1:{port}/elsewhere");
    let error = McpClient::new().handshake(&url, CALL).await.unwrap_err();
    assert!(matches!(error, McpError::Protocol { .. }), "{error}");
}
