//! `mcpctl` end to end: every command in human and `--json` form against a real `mcpd`
//! supervising real `mcp-echo` servers, the lifecycle commands, reload plans, tokens checked
//! by the gateway, and the control socket's robustness against hostile clients.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpd_protocol::codec::{self, MAX_FRAME};
use mcpd_protocol::{
    ErrorCode, Hello, PROTOCOL_VERSION, Request, Response, StatusRequest, ToolsRequest,
};
use mcpd_tests::ctl_support::{
    Daemon, DaemonSpec, PROBE_INTERVAL, ctl_command, echo_servers_yaml, run_ctl,
};
use mcpd_tests::{ChildGuard, TestDir, describe, pid_of};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const REPLY: Duration = Duration::from_secs(15);

/// The rows of a human table whose first cell is `name`, split on runs of spaces.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_call_and_logs_in_human_and_json_form() {
    let daemon = Daemon::start(DaemonSpec::echo_servers(&["alpha", "beta"])).await;

    // logs -f first, while no tool has been called: the backlog (-n 1) is the listening line,
    // and "call echo" can only arrive as a followed line.
    let follower = ChildGuard::spawn(
        "mcpctl logs -f",
        &mut ctl_command(&daemon.socket, &["logs", "-f", "-n", "1", "alpha"]),
    );
    follower
        .wait_for_stdout("mcp-echo listening on", REPLY)
        .await;
    assert!(!follower.stdout().contains("call echo"));
    let called = daemon
        .ctl(&["call", "alpha", "echo", "--args", r#"{"text":"followed"}"#])
        .ok();
    assert_eq!(called, "followed\n");
    let line = follower.wait_for_stdout("call echo", REPLY).await;
    assert!(line.contains(" out call echo"), "{line}");
    follower.signal(Signal::SIGINT);
    let status = follower.wait_exit(REPLY).await;
    assert!(status.success(), "follower ended with {}", describe(status));

    // list
    let list = daemon.ctl(&["list"]).ok();
    assert!(list.starts_with("NAME "), "{list}");
    let alpha = row(&list, "alpha");
    assert_eq!(alpha[1], "running");
    assert_eq!(alpha[3], "4", "4 tools: {list}");
    let json = daemon.ctl(&["--json", "list"]).expect_code(0).json();
    let servers = json["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["name"], "alpha");
    assert_eq!(servers[0]["description"], "Echo server alpha");
    assert_eq!(json["config_errors"], serde_json::json!([]));

    // status [NAME]
    let status = daemon.ctl(&["status"]).ok();
    let alpha_pid = pid_of(&daemon.server("alpha").expect("alpha"));
    assert_eq!(row(&status, "alpha")[2], alpha_pid.to_string());
    assert_eq!(row(&status, "beta")[1], "running");
    let one = daemon.ctl(&["status", "beta"]).ok();
    assert!(!one.contains("alpha"), "{one}");
    let json = daemon
        .ctl(&["--json", "status", "beta"])
        .expect_code(0)
        .json();
    assert_eq!(json["servers"].as_array().map(Vec::len), Some(1));
    let beta = &json["servers"][0];
    assert_eq!(beta["state"], "running");
    assert_eq!(beta["tools_count"], 4);
    assert!(beta["uptime_ms"].is_u64() && beta["since_unix_ms"].is_u64());
    let missing = daemon.ctl(&["status", "nope"]).expect_code(1);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);

    // show NAME
    let show = daemon.ctl(&["show", "alpha"]).ok();
    for expected in [
        "state:          running",
        "package:        mcp-echo",
        "health:         every 200ms, timeout 2s",
        "tools:          add, echo, progress, sleep",
    ] {
        assert!(show.contains(expected), "{expected:?} in:\n{show}");
    }
    let json = daemon
        .ctl(&["--json", "show", "alpha"])
        .expect_code(0)
        .json();
    assert_eq!(json["status"]["name"], "alpha");
    assert_eq!(json["package"], "mcp-echo");
    assert_eq!(
        json["endpoint"],
        format!(
            "http://127.0.0.1:{}/api/v1/mcp/alpha/mcp",
            daemon.gateway_port
        )
    );
    assert_eq!(json["health_interval_ms"], 200);
    assert!(json["env"].is_object());
    assert!(json["tools"][0]["input_schema"].is_object());
    let unknown = daemon
        .ctl(&["--json", "show", "nope"])
        .expect_code(1)
        .json();
    assert_eq!(unknown["error"]["code"], "unknown_server");

    // tools [NAME] [--schema]
    let tools = daemon.ctl(&["tools"]).ok();
    assert_eq!(tools.lines().count(), 1 + 8, "{tools}");
    assert_eq!(row(&tools, "beta")[1], "add");
    let schema = daemon.ctl(&["tools", "alpha", "--schema"]).ok();
    assert!(!schema.contains("beta"), "{schema}");
    assert!(schema.contains("alpha/echo input schema:"), "{schema}");
    assert!(schema.contains("\"required\""), "{schema}");
    let json = daemon
        .ctl(&["--json", "tools", "alpha"])
        .expect_code(0)
        .json();
    let names: Vec<&str> = json
        .as_array()
        .expect("a list")
        .iter()
        .map(|tool| tool["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["add", "echo", "progress", "sleep"]);
    assert!(json[0]["input_schema"].is_null());
    let json = daemon
        .ctl(&["--json", "tools", "alpha", "--schema"])
        .expect_code(0)
        .json();
    assert_eq!(
        json[1]["input_schema"]["required"],
        serde_json::json!(["text"])
    );

    // call [SERVER] TOOL --args JSON
    let sum = daemon
        .ctl(&["call", "beta", "add", "--args", r#"{"a":2,"b":3}"#])
        .ok();
    assert_eq!(sum.trim(), "5");
    let json = daemon
        .ctl(&[
            "--json",
            "call",
            "alpha",
            "echo",
            "--args",
            r#"{"text":"hi"}"#,
        ])
        .expect_code(0)
        .json();
    assert_eq!(json["server"], "alpha");
    assert_eq!(json["tool"], "echo");
    assert_eq!(json["result"]["content"][0]["text"], "hi");
    assert_eq!(json["result"]["isError"], false);
    let ambiguous = daemon
        .ctl(&["call", "echo", "--args", r#"{"text":"hi"}"#])
        .expect_code(1);
    assert!(
        ambiguous.stderr.contains("alpha") && ambiguous.stderr.contains("beta"),
        "the error names both servers: {}",
        ambiguous.stderr
    );
    let json = daemon
        .ctl(&["--json", "call", "echo", "--args", "{}"])
        .expect_code(1)
        .json();
    assert_eq!(json["error"]["code"], "invalid_argument");
    let bad_args = daemon.ctl(&["call", "alpha", "echo", "--args", "[1]"]);
    bad_args.expect_code(2);

    // test NAME
    let test = daemon.ctl(&["test", "alpha"]).ok();
    assert!(test.starts_with("alpha: ok ("), "{test}");
    assert!(
        test.contains("4 tools") && test.contains("mcp-echo"),
        "{test}"
    );
    let json = daemon
        .ctl(&["--json", "test", "beta"])
        .expect_code(0)
        .json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["tools_count"], 4);
    assert_eq!(json["server_name"], "mcp-echo");
    assert!(json["latency_ms"].is_u64());

    // logs NAME -n N: the tool calls above printed "call echo" and "call add".
    let logs = daemon.ctl(&["logs", "alpha", "-n", "2"]).ok();
    assert_eq!(logs.lines().count(), 2, "{logs}");
    assert!(logs.contains(" out call echo"), "{logs}");
    let json = daemon.ctl(&["--json", "logs", "beta", "-n", "1"]).ok();
    let line: Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(line["stream"], "stdout");
    assert_eq!(line["text"], "call add");
    assert!(line["at_unix_ms"].is_u64());

    // list-packages
    let packages = daemon.ctl(&["list-packages"]).ok();
    assert_eq!(row(&packages, "alpha"), ["alpha", "mcp-echo", "mcp-echo"]);
    let json = daemon
        .ctl(&["--json", "list-packages"])
        .expect_code(0)
        .json();
    assert_eq!(
        json["packages"][1],
        serde_json::json!({"server": "beta", "package": "mcp-echo", "binary": "mcp-echo"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_a_server_down_and_start_and_restart_bring_it_back() {
    let daemon = Daemon::start(DaemonSpec::echo_servers(&["alpha", "beta"])).await;
    let alpha = daemon.wait_running("alpha").await;
    let beta = daemon.wait_running("beta").await;
    let port = daemon.server("alpha").expect("alpha")["port"]
        .as_u64()
        .expect("a port") as u16;

    assert_eq!(daemon.ctl(&["stop", "alpha"]).ok(), "alpha: stopped\n");
    // Through several health-check intervals: still stopped, no process, port closed.
    let window = PROBE_INTERVAL * 6;
    let since = Instant::now();
    let mut observations = 0;
    while since.elapsed() < window || observations < 3 {
        let server = daemon.server("alpha").expect("alpha");
        assert_eq!(server["state"], "stopped", "{server}");
        assert!(server["pid"].is_null(), "{server}");
        assert!(!mcpd_tests::port_accepts(port), "nothing listens on {port}");
        observations += 1;
        tokio::time::sleep(PROBE_INTERVAL / 4).await;
    }
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(alpha as i32), None).is_err(),
        "the old process is gone"
    );
    let status = daemon.ctl(&["status", "alpha"]).ok();
    assert_eq!(row(&status, "alpha")[1..3], ["stopped", "-"]);
    assert_eq!(daemon.server("beta").expect("beta")["pid"], beta);

    // start brings it back as a new process; --json form.
    let json = daemon
        .ctl(&["--json", "start", "alpha"])
        .expect_code(0)
        .json();
    assert_eq!(
        json,
        serde_json::json!({"action": "start", "outcomes": [{"server": "alpha", "ok": true, "error": null}]})
    );
    let alpha = daemon.wait_running_not("alpha", Some(alpha)).await;

    // restart NAME
    assert_eq!(
        daemon.ctl(&["restart", "alpha"]).ok(),
        "alpha: restarting\n"
    );
    let alpha = daemon.wait_running_not("alpha", Some(alpha)).await;
    assert_eq!(daemon.server("beta").expect("beta")["pid"], beta);

    // restart --all
    let all = daemon.ctl(&["restart", "--all"]).ok();
    assert_eq!(all, "alpha: restarting\nbeta: restarting\n");
    daemon.wait_running_not("alpha", Some(alpha)).await;
    let beta = daemon.wait_running_not("beta", Some(beta)).await;
    let json = daemon
        .ctl(&["--json", "restart", "--all"])
        .expect_code(0)
        .json();
    assert_eq!(json["action"], "restart");
    assert_eq!(json["outcomes"].as_array().map(Vec::len), Some(2));
    daemon.wait_running_not("beta", Some(beta)).await;

    // stop --json, then unknown names fail with exit 1.
    let json = daemon
        .ctl(&["--json", "stop", "beta"])
        .expect_code(0)
        .json();
    assert_eq!(json["action"], "stop");
    assert_eq!(json["outcomes"][0]["ok"], true);
    let unknown = daemon.ctl(&["start", "nope"]).expect_code(1);
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);
    daemon.ctl(&["restart", "nope"]).expect_code(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_plans_then_applies_and_validate_locates_errors() {
    let mut daemon = Daemon::start(DaemonSpec::echo_servers(&["alpha"])).await;

    let unchanged = daemon.ctl(&["reload", "--dry-run"]).ok();
    assert_eq!(unchanged, "no changes\n1 server unchanged\n");

    // A new file the watcher does not see: the dry run plans it and applies nothing.
    daemon.switch_services(&[("gamma.yaml", &echo_servers_yaml(&["gamma"]))]);
    let plan = daemon.ctl(&["reload", "--dry-run"]).ok();
    assert!(
        plan.starts_with("plan (dry run, nothing applied):\n"),
        "{plan}"
    );
    assert_eq!(row(&plan, "gamma")[..2], ["gamma", "start"]);
    let json = daemon
        .ctl(&["--json", "reload", "--dry-run"])
        .expect_code(0)
        .json();
    assert_eq!(json["dry_run"], true);
    let gamma = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|change| change["server"] == "gamma")
        .expect("gamma is planned");
    assert_eq!(gamma["action"], "start");
    assert!(
        daemon.server("gamma").is_none(),
        "a dry run applies nothing"
    );

    let applied = daemon.ctl(&["reload"]).ok();
    assert_eq!(row(&applied, "gamma")[..2], ["gamma", "start"]);
    daemon.wait_running("gamma").await;
    let json = daemon.ctl(&["--json", "reload"]).expect_code(0).json();
    assert_eq!(json["dry_run"], false);
    assert!(
        json["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|change| change["action"] == "unchanged")
    );

    // validate: clean, then with a broken extra file (errors carry file:line:column).
    let clean = daemon.ctl(&["validate"]).ok();
    assert!(clean.starts_with("configuration: ok\n"), "{clean}");
    assert!(
        clean.contains("alpha: ok (") && clean.contains("gamma: ok ("),
        "{clean}"
    );
    let only = daemon.ctl(&["validate", "gamma"]).ok();
    assert!(!only.contains("alpha"), "{only}");
    let broken = daemon.services_dir().join("broken.yaml");
    std::fs::write(
        &broken,
        "mcp_servers:\n  delta:\n    binary: mcp-echo\n    enbled: true\n",
    )
    .expect("write broken.yaml");
    // Errors name the file by its path under services_dir as configured.
    let shown = daemon.dir.join("mcp/broken.yaml");
    let failed = daemon.ctl(&["validate"]).expect_code(1);
    let located = format!("{}:4:5: unknown key \"enbled\"", shown.display());
    assert!(
        failed.stdout.contains("configuration: 1 error\n"),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stdout.contains(&located),
        "{located} in:\n{}",
        failed.stdout
    );
    assert!(
        failed.stdout.contains("  hint: valid keys:"),
        "{}",
        failed.stdout
    );
    let json = daemon.ctl(&["--json", "validate"]).expect_code(1).json();
    let error = &json["config_errors"][0];
    assert_eq!(error["file"], shown.display().to_string());
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(4), Some(5))
    );
    assert_eq!(json["handshakes"].as_array().map(Vec::len), Some(2));

    // A reload with the broken file applies nothing from it and exits 1.
    let rejected = daemon.ctl(&["reload"]).expect_code(1);
    assert!(rejected.stdout.contains(&located), "{}", rejected.stdout);
    assert!(daemon.server("delta").is_none());
    let status = daemon.ctl(&["status"]).ok();
    assert!(
        status.contains(&located),
        "status shows the error:\n{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_opens_the_gateway_of_its_daemon() {
    let mut spec = DaemonSpec::echo_servers(&[]);
    spec.hs256_key = true;
    spec.files = vec![(
        "locked.yaml".to_owned(),
        "mcp_servers:\n  locked:\n    binary: mcp-echo\n    oauth: {required: true, scopes: [echo]}\n"
            .to_owned(),
    )];
    let daemon = Daemon::start(spec).await;

    let token = daemon.ctl(&["token", "--scope", "echo"]).ok();
    let token = token.trim_end();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let json = daemon
        .ctl(&[
            "--json", "token", "--scope", "echo", "--ttl", "10m", "--sub", "ops",
        ])
        .expect_code(0)
        .json();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let expires = json["expires_at_unix"].as_u64().expect("expires_at_unix");
    assert!(
        (now + 540..=now + 660).contains(&expires),
        "{expires} is about 10 minutes after {now}"
    );
    let json_token = json["token"].as_str().expect("token").to_owned();

    let url = format!(
        "http://127.0.0.1:{}/api/v1/mcp/locked/mcp",
        daemon.gateway_port
    );
    let http = reqwest::Client::new();
    let initialize = |bearer: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ctl-test","version":"0"}}}"#,
            );
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let anonymous = initialize(None).await.expect("gateway answers");
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("resource_metadata=")),
        "{:?}",
        anonymous.headers()
    );
    for bearer in [token, json_token.as_str()] {
        let allowed = initialize(Some(bearer)).await.expect("gateway answers");
        assert_eq!(allowed.status(), 200, "with a minted token");
    }
    let other_scope = daemon.ctl(&["token", "--scope", "other"]).ok();
    let forbidden = initialize(Some(other_scope.trim_end()))
        .await
        .expect("gateway answers");
    assert_eq!(
        forbidden.status(),
        403,
        "a token without the server's scope"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_survives_hostile_clients_and_has_the_configured_mode() {
    let daemon = Daemon::start(DaemonSpec::echo_servers(&["alpha"])).await;

    let meta = std::fs::metadata(&daemon.socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

    // token without an HS256 key: a clear error, exit 1.
    let no_key = daemon.ctl(&["token", "--scope", "admin"]).expect_code(1);
    assert!(no_key.stderr.contains("HS256"), "{}", no_key.stderr);
    let json = daemon
        .ctl(&["--json", "token", "--scope", "admin"])
        .expect_code(1)
        .json();
    assert_eq!(json["error"]["code"], "not_configured");

    let rss_before = rss_kib(daemon.process.pid());

    // Random bytes, raw, then EOF: whatever length their first four bytes announce, the
    // answer is an error frame (or, against all odds, a handshake reply), never a hang.
    let noise = random_bytes(512);
    let mut stream = connect(&daemon).await;
    let _ = stream.write_all(&noise).await;
    let _ = stream.shutdown().await;
    let reply = read_reply(&mut stream).await;
    assert!(
        matches!(
            reply,
            Some(Response::Error(_) | Response::Welcome(_) | Response::Incompatible(_))
        ),
        "{reply:?}"
    );
    // A random body in a well-formed frame.
    let mut frame = (noise.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&noise);
    expect_error(&daemon, &frame, ErrorCode::Malformed).await;
    // A 4 GiB length prefix: refused before anything is allocated.
    let message = expect_error(&daemon, &[0xff; 4], ErrorCode::Malformed).await;
    assert!(message.contains("larger than"), "{message}");
    let just_over = (MAX_FRAME as u32 + 1).to_be_bytes();
    expect_error(&daemon, &just_over, ErrorCode::Malformed).await;
    // A truncated frame: 100 bytes announced, 10 sent, then EOF.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0; 10]);
    let message = expect_error(&daemon, &truncated, ErrorCode::Malformed).await;
    assert!(message.contains("truncated"), "{message}");
    // An unknown variant, before and after the handshake.
    let unknown_variant = [0, 0, 0, 1, 200];
    expect_error(&daemon, &unknown_variant, ErrorCode::Malformed).await;
    let mut stream = handshake(&daemon).await;
    stream.write_all(&unknown_variant).await.expect("write");
    let reply = read_reply(&mut stream).await;
    assert!(
        matches!(&reply, Some(Response::Error(e)) if e.code == ErrorCode::Malformed),
        "{reply:?}"
    );
    // A request before Hello.
    let status_first =
        codec::encode_frame(&Request::Status(StatusRequest::default())).expect("encode");
    expect_error(&daemon, &status_first, ErrorCode::HandshakeRequired).await;
    // A wrong protocol version.
    let mut stream = connect(&daemon).await;
    let future = Request::Hello(Hello {
        protocol: PROTOCOL_VERSION + 41,
    });
    codec::write_message(&mut stream, &future)
        .await
        .expect("write");
    match read_reply(&mut stream).await {
        Some(Response::Incompatible(incompatible)) => {
            assert_eq!(incompatible.daemon, PROTOCOL_VERSION);
            assert_eq!(incompatible.client, PROTOCOL_VERSION + 41);
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }

    // 200 concurrent clients: each gets a correct answer or an error, never a hang.
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200 {
        let socket = daemon.socket.clone();
        clients.spawn(async move {
            let mut stream = UnixStream::connect(&socket).await.expect("connect");
            send_hello(&mut stream).await;
            match read_reply(&mut stream).await {
                Some(Response::Welcome(_)) => {}
                Some(Response::Error(e)) => return Err(e.code),
                other => panic!("client {i}: expected Welcome, got {other:?}"),
            }
            let request = if i % 2 == 0 {
                Request::Status(StatusRequest::default())
            } else {
                Request::Tools(ToolsRequest {
                    name: Some("alpha".into()),
                    schema: true,
                    as_scopes: None,
                })
            };
            codec::write_message(&mut stream, &request)
                .await
                .expect("write request");
            match read_reply(&mut stream).await {
                Some(Response::Status(status)) => {
                    assert_eq!(status.servers[0].name, "alpha");
                    Ok(())
                }
                Some(Response::Tools(tools)) => {
                    assert_eq!(tools.tools.len(), 4);
                    Ok(())
                }
                Some(Response::Error(e)) => Err(e.code),
                other => panic!("client {i}: unexpected reply {other:?}"),
            }
        });
    }
    let mut answered = 0;
    while let Some(result) = clients.join_next().await {
        match result.expect("a client task") {
            Ok(()) => answered += 1,
            Err(code) => assert_eq!(code, ErrorCode::Busy, "only Busy is an acceptable error"),
        }
    }
    assert!(answered > 0, "some of the 200 clients were served");

    // The daemon is unharmed: same process, normal service, no memory blow-up.
    assert!(
        daemon.process.try_status().is_none(),
        "mcpd is still running"
    );
    let status = daemon.ctl(&["status"]).ok();
    assert_eq!(row(&status, "alpha")[1], "running");
    let rss_after = rss_kib(daemon.process.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "mcpd grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn mcpctl_without_a_daemon_exits_3_and_names_the_socket() {
    let dir = TestDir::new();
    let socket = dir.join("absent/mcpd.sock");
    let socket_arg = socket.display().to_string();
    let run = run_ctl(&["--socket".into(), socket_arg.clone(), "status".into()]).expect_code(3);
    assert_eq!(
        run.stderr.trim_end(),
        format!("cannot connect to mcpd: is mcpd running? socket: {socket_arg}")
    );
    let run = run_ctl(&[
        "--json".into(),
        "--socket".into(),
        socket_arg.clone(),
        "list".into(),
    ])
    .expect_code(3);
    assert_eq!(run.json()["error"]["code"], "unreachable");

    // A stale socket file that nobody listens on is the same situation.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists());
    let stale_arg = stale.display().to_string();
    let run = run_ctl(&["--socket".into(), stale_arg.clone(), "list".into()]).expect_code(3);
    assert!(
        run.stderr
            .contains(&format!("is mcpd running? socket: {stale_arg}")),
        "{}",
        run.stderr
    );

    // The socket from --config's control.socket, resolved against the file's directory.
    let config = dir.write("mcpd.yaml", "control:\n  socket: run/x.sock\n");
    let run = run_ctl(&[
        "--config".into(),
        config.display().to_string(),
        "status".into(),
    ])
    .expect_code(3);
    let expected = dir.join("run/x.sock").display().to_string();
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// Raw protocol clients

async fn connect(daemon: &Daemon) -> UnixStream {
    UnixStream::connect(&daemon.socket)
        .await
        .expect("connect to the control socket")
}

/// Writes the `Hello` of this protocol version.
async fn send_hello(stream: &mut UnixStream) {
    codec::write_message(
        stream,
        &Request::Hello(Hello {
            protocol: PROTOCOL_VERSION,
        }),
    )
    .await
    .expect("write Hello");
}

async fn handshake(daemon: &Daemon) -> UnixStream {
    let mut stream = connect(daemon).await;
    send_hello(&mut stream).await;
    let reply = read_reply(&mut stream).await;
    assert!(matches!(reply, Some(Response::Welcome(_))), "{reply:?}");
    stream
}

async fn read_reply(stream: &mut UnixStream) -> Option<Response> {
    tokio::time::timeout(REPLY, codec::read_message::<Response, _>(stream))
        .await
        .expect("the daemon answers in time")
        .expect("the daemon's reply is a valid frame")
}

/// Sends `bytes` on a fresh connection, closes the write side, and expects one error frame
/// with `code` and then the end of the connection. Returns the error message.
async fn expect_error(daemon: &Daemon, bytes: &[u8], code: ErrorCode) -> String {
    let mut stream = connect(daemon).await;
    // The daemon may answer and close before reading everything; a reset is fine.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let reply = read_reply(&mut stream).await;
    let Some(Response::Error(error)) = reply else {
        panic!("expected an error frame for {bytes:02x?}, got {reply:?}");
    };
    assert_eq!(error.code, code, "{}", error.message);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(REPLY, stream.read_to_end(&mut rest))
        .await
        .expect("the daemon closes the connection");
    assert!(end.is_err() || rest.is_empty(), "nothing after the error");
    error.message
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    let mut urandom = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut urandom, &mut bytes).expect("read /dev/urandom");
    bytes
}

/// The resident set size of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
