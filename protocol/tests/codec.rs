//! Wire-format tests: golden bytes (a change of the wire is a visible decision), round trips,
//! and a decoder that survives hostile input.

use mcpd_protocol::codec::{self, CodecError, MAX_FRAME};
use mcpd_protocol::*;

fn sample_info() -> ServerInfo {
    ServerInfo {
        name: "echo".into(),
        state: ServerState::Running,
        enabled: true,
        description: "Echo".into(),
        pid: Some(4242),
        port: Some(5010),
        since_unix_ms: 1_700_000_000_000,
        uptime_ms: Some(61_000),
        restarts: 2,
        tools_count: 3,
        last_exit: None,
        last_error: Some("boom".into()),
        usage: None,
        session_pids: vec![7],
        members: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- golden bytes ----------------------------------------------------------------------

#[test]
fn golden_hello() {
    let frame = codec::encode_frame(&Request::Hello(Hello { protocol: 1 })).unwrap();
    // length 2 | Request::Hello (0) | protocol 1
    assert_eq!(hex(&frame), "000000020001");
}

#[test]
fn golden_welcome() {
    let welcome = Response::Welcome(Welcome {
        daemon_version: "0.1.0".into(),
        protocol: 1,
    });
    let frame = codec::encode_frame(&welcome).unwrap();
    // length 8 | variant 0 | string len 5, "0.1.0" | protocol 1
    assert_eq!(hex(&frame), concat!("00000008", "00", "05302e312e30", "01"));
}

#[test]
fn golden_status_reply() {
    let reply = Response::Status(StatusReply {
        servers: vec![sample_info()],
        config_errors: vec![ConfigErrorInfo {
            file: "mcp/a.yaml".into(),
            line: Some(3),
            column: Some(5),
            message: "unknown key".into(),
            hint: None,
        }],
        conflicts: vec![],
    });
    let frame = codec::encode_frame(&reply).unwrap();
    let expected = concat!(
        "0000004e",               // length 78
        "03",                     // Response::Status
        "01",                     // one server
        "046563686f",             // name "echo"
        "03",                     // state Running
        "01",                     // enabled
        "044563686f",             // description "Echo"
        "01fb9210",               // pid Some(4242), varint u16 marker
        "01fb9213",               // port Some(5010)
        "fd0068e5cf8b010000",     // since_unix_ms, varint u64 marker
        "01fb48ee",               // uptime_ms Some(61000)
        "02",                     // restarts
        "03",                     // tools_count
        "00",                     // last_exit None
        "0104626f6f6d",           // last_error Some("boom")
        "00",                     // usage None
        "0107",                   // session_pids [7]
        "00",                     // members None
        "01",                     // one config error
        "0a6d63702f612e79616d6c", // file "mcp/a.yaml"
        "0103",
        "0105",                     // line Some(3), column Some(5)
        "0b756e6b6e6f776e206b6579", // message "unknown key"
        "00",                       // hint None
        "00",                       // no conflicts
    );
    assert_eq!(hex(&frame), expected);
}

#[test]
fn golden_error_reply() {
    let reply = Response::Error(ErrorReply {
        code: ErrorCode::UnknownServer,
        message: "no".into(),
    });
    let frame = codec::encode_frame(&reply).unwrap();
    // length 5 | Response::Error (2) | UnknownServer (0) | "no"
    assert_eq!(hex(&frame), "000000050200026e6f");
}

#[test]
fn golden_status_request() {
    let frame = codec::encode_frame(&Request::Status(StatusRequest {
        name: Some("echo".into()),
    }))
    .unwrap();
    // length 7 | Request::Status (2) | Some | "echo"
    assert_eq!(hex(&frame), "000000070201046563686f");
}

#[test]
fn protocol_version_is_five() {
    // Bumping it is a decision: old clients will be told they are incompatible.
    // 2: LogStream::Daemon. 3: audit, per-tool rules, tools --as-scopes, validate warnings,
    // ServerInfo::usage, ShowReply::limits, ServerInfo::session_pids. 4: virtual servers.
    // 5: MemberInfo::tools_cached_unix_ms and MemberInfo::stale.
    assert_eq!(PROTOCOL_VERSION, 5);
}

#[test]
fn golden_daemon_log_line() {
    let frame = codec::encode_frame(&Response::LogLine(LogLine {
        at_unix_ms: 1,
        stream: LogStream::Daemon,
        text: "x".into(),
    }))
    .unwrap();
    // length 5 | Response::LogLine (10) | at 1 | LogStream::Daemon (2) | "x"
    assert_eq!(hex(&frame), "000000050a01020178");
}

// ---- round trips -----------------------------------------------------------------------

fn every_request() -> Vec<Request> {
    vec![
        Request::Hello(Hello {
            protocol: PROTOCOL_VERSION,
        }),
        Request::List(ListRequest {}),
        Request::Status(StatusRequest { name: None }),
        Request::Show(ShowRequest {
            name: "echo".into(),
        }),
        Request::Tools(ToolsRequest {
            name: Some("echo".into()),
            schema: true,
            as_scopes: Some(vec!["user".into(), "tools:read".into()]),
        }),
        Request::Call(CallRequest {
            server: None,
            tool: "echo".into(),
            arguments_json: r#"{"text":"hé"}"#.into(),
            timeout_ms: 60_000,
        }),
        Request::Test(TestRequest {
            name: "echo".into(),
        }),
        Request::Validate(ValidateRequest { name: None }),
        Request::Logs(LogsRequest {
            name: "echo".into(),
            lines: 50,
            follow: true,
        }),
        Request::ListPackages(ListPackagesRequest {}),
        Request::Start(StartRequest { name: "a".into() }),
        Request::Stop(StopRequest { name: "b".into() }),
        Request::Restart(RestartRequest {
            target: RestartTarget::All,
        }),
        Request::Restart(RestartRequest {
            target: RestartTarget::One("c".into()),
        }),
        Request::Reload(ReloadRequest { dry_run: true }),
        Request::Token(TokenRequest {
            scopes: vec!["admin".into(), "read".into()],
            audience: Some("mcp".into()),
            ttl_secs: 3600,
            subject: None,
        }),
        Request::Audit(AuditRequest {
            server: Some("db".into()),
            tool: Some("drop_table".into()),
            since_unix_ms: Some(1_700_000_000_000),
            lines: 100,
            follow: true,
        }),
    ]
}

fn every_response() -> Vec<Response> {
    let tool = ToolEntry {
        server: "echo".into(),
        name: "echo".into(),
        description: Some("Echoes".into()),
        input_schema_json: Some(r#"{"type":"object"}"#.into()),
        access: Some(ToolAccess {
            may_call: false,
            rule: Some("delete_*".into()),
            allowing: vec!["admin".into()],
        }),
    };
    let test = TestReply {
        server: "echo".into(),
        ok: true,
        url: Some("http://127.0.0.1:5010/mcp".into()),
        latency_ms: Some(3),
        protocol_version: Some("2025-06-18".into()),
        server_name: Some("mcp-echo".into()),
        server_version: Some("0.1.0".into()),
        tools_count: Some(1),
        error: None,
    };
    vec![
        Response::Welcome(Welcome {
            daemon_version: "0.1.0".into(),
            protocol: 1,
        }),
        Response::Incompatible(Incompatible {
            daemon: 2,
            client: 1,
            daemon_version: "0.2.0".into(),
        }),
        Response::Error(ErrorReply {
            code: ErrorCode::McpFailure,
            message: "down".into(),
        }),
        Response::Status(StatusReply {
            servers: vec![sample_info()],
            config_errors: vec![],
            conflicts: vec!["virtual server all: \"a_b\" left out".into()],
        }),
        Response::Status(StatusReply {
            servers: vec![ServerInfo {
                usage: Some(ServerUsage {
                    memory_bytes: 64 << 20,
                    memory_peak_bytes: Some(80 << 20),
                    cpu_time_ms: 12_345,
                    cpu_percent_hundredths: Some(2_050),
                    tasks: 7,
                    oom_kills: 1,
                    from_cgroup: true,
                }),
                ..sample_info()
            }],
            config_errors: vec![],
            conflicts: vec![],
        }),
        Response::Show(Box::new(ShowReply {
            status: sample_info(),
            file: "/etc/mcpd/mcp/echo.yaml".into(),
            binary_name: "mcp-echo".into(),
            binary: "/usr/bin/mcp-echo".into(),
            package: Some("mcp-echo".into()),
            endpoint: "http://localhost:8080/api/v1/mcp/echo/mcp".into(),
            upstream_url: Some("http://127.0.0.1:5010/mcp".into()),
            display_in_web: true,
            oauth_required: true,
            oauth_scopes: vec!["admin".into()],
            oauth_audience: "mcp".into(),
            oauth_client_id: None,
            args: vec!["--port".into(), "{port}".into()],
            env: vec![("RUST_LOG".into(), "info".into())],
            env_passthrough: vec!["HOME".into()],
            working_dir: None,
            path: "/mcp".into(),
            restart_policy: "on-failure".into(),
            health_interval_ms: 10_000,
            health_timeout_ms: 5_000,
            stop_timeout_ms: 10_000,
            tools: vec![tool.clone()],
            tool_rules: vec![ToolRuleInfo {
                pattern: "delete_*".into(),
                scopes: vec!["admin".into()],
            }],
            audit_arguments: true,
            limits: LimitsInfo {
                memory_bytes: Some(512 << 20),
                cpu_millis: Some(500),
                tasks: Some(128),
                open_files: None,
                user: Some("mcp-echo".into()),
                uid: Some(998),
                gid: Some(998),
            },
            tool_filter: vec!["!*_delete*".into()],
            conflicts: vec![],
        })),
        Response::Tools(ToolsReply { tools: vec![tool] }),
        Response::Call(CallReply {
            server: "echo".into(),
            tool: "echo".into(),
            result_json: "{}".into(),
        }),
        Response::Test(test.clone()),
        Response::Validate(ValidateReply {
            config_errors: vec![],
            handshakes: vec![test],
            warnings: vec!["a rule never applies".into()],
        }),
        Response::Logs(LogsReply {
            server: "echo".into(),
            lines: vec![LogLine {
                at_unix_ms: 1,
                stream: LogStream::Stderr,
                text: "hi".into(),
            }],
        }),
        Response::LogLine(LogLine {
            at_unix_ms: 2,
            stream: LogStream::Stdout,
            text: String::new(),
        }),
        Response::LogLine(LogLine {
            at_unix_ms: 3,
            stream: LogStream::Daemon,
            text: "process ended: exit code 1".into(),
        }),
        Response::LogGap(LogGap { skipped: 7 }),
        Response::Packages(PackagesReply {
            packages: vec![PackageEntry {
                server: "echo".into(),
                package: None,
                binary: "x".into(),
            }],
        }),
        Response::Actions(ActionsReply {
            action: "restart".into(),
            outcomes: vec![ActionOutcome {
                server: "echo".into(),
                ok: false,
                error: Some("no".into()),
            }],
        }),
        Response::Reload(ReloadReply {
            dry_run: false,
            changes: vec![PlannedChange {
                server: "a".into(),
                action: PlanAction::Update,
                reason: "r".into(),
            }],
            config_errors: vec![],
        }),
        Response::Token(TokenReply {
            token: "a.b.c".into(),
            expires_at_unix: 99,
        }),
        Response::Audit(AuditReply {
            records: vec![r#"{"time":"t"}"#.into()],
            dropped: 2,
        }),
        Response::AuditRecord(r#"{"time":"t"}"#.into()),
    ]
}

#[test]
fn every_request_round_trips() {
    for request in every_request() {
        let frame = codec::encode_frame(&request).unwrap();
        let back: Request = codec::decode_frame(&frame).unwrap();
        assert_eq!(back, request);
    }
}

#[test]
fn every_response_round_trips() {
    for response in every_response() {
        let frame = codec::encode_frame(&response).unwrap();
        let back: Response = codec::decode_frame(&frame).unwrap();
        assert_eq!(back, response);
    }
}

#[tokio::test]
async fn several_frames_stream_and_end_cleanly() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let requests = every_request();
    let sent = requests.clone();
    let writer = tokio::spawn(async move {
        for request in &sent {
            codec::write_message(&mut client, request).await.unwrap();
        }
    });
    for expected in requests {
        let got: Request = codec::read_message(&mut server).await.unwrap().unwrap();
        assert_eq!(got, expected);
    }
    writer.await.unwrap();
    let end: Option<Request> = codec::read_message(&mut server).await.unwrap();
    assert!(
        end.is_none(),
        "a clean close between frames is not an error"
    );
}

// ---- hostile input ---------------------------------------------------------------------

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bodies_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = codec::decode_body::<Request>(&body);
        let _ = codec::decode_body::<Response>(&body);
    }
}

#[test]
fn mutated_valid_frames_never_panic() {
    let mut rng = XorShift(42);
    let frames: Vec<Vec<u8>> = every_response()
        .iter()
        .map(|r| codec::encode_frame(r).unwrap())
        .collect();
    for _ in 0..20_000 {
        let mut body = frames[(rng.next() as usize) % frames.len()][4..].to_vec();
        let at = (rng.next() as usize) % body.len();
        body[at] = rng.next() as u8;
        let _ = codec::decode_body::<Response>(&body);
    }
}

#[test]
fn unknown_variant_is_malformed() {
    // Request has 15 variants; tag 200 names none of them.
    let err = codec::decode_body::<Request>(&[200, 0]).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
    let err = codec::decode_body::<Response>(&[99]).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut frame = codec::encode_frame(&Request::List(ListRequest {})).unwrap();
    frame.push(0);
    let body = &frame[4..];
    assert!(matches!(
        codec::decode_body::<Request>(body),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn huge_inner_length_is_refused_without_allocating() {
    // Request::Show with a string claiming u64::MAX bytes (varint marker 0xfd + 8 bytes).
    let body = [3u8, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        codec::decode_body::<Request>(&body),
        Err(CodecError::Malformed(_))
    ));
    // A Vec claiming 2^40 elements.
    let body = [2u8, 1, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
    assert!(codec::decode_body::<Response>(&body).is_err());
}

#[tokio::test]
async fn huge_length_prefix_is_refused_before_reading_the_body() {
    let frame = [0xffu8, 0xff, 0xff, 0xff];
    let mut reader: &[u8] = &frame;
    let err = codec::read_message::<Request, _>(&mut reader)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::TooLarge {
                len: 0xffff_ffff,
                ..
            }
        ),
        "{err:?}"
    );

    let just_over = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
    let mut reader: &[u8] = &just_over;
    let err = codec::read_message::<Request, _>(&mut reader)
        .await
        .unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn truncated_frames_are_errors() {
    let frame = codec::encode_frame(&Request::Show(ShowRequest {
        name: "echo".into(),
    }))
    .unwrap();
    for cut in 1..frame.len() {
        let mut reader: &[u8] = &frame[..cut];
        let err = codec::read_message::<Request, _>(&mut reader)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { .. }),
            "cut at {cut}: {err:?}"
        );
        assert!(codec::decode_frame::<Request>(&frame[..cut]).is_err());
    }
}

#[test]
fn oversized_message_is_refused_on_encode() {
    let reply = Response::Call(CallReply {
        server: "s".into(),
        tool: "t".into(),
        result_json: "x".repeat(MAX_FRAME + 1),
    });
    assert!(codec::encode_frame(&reply).is_err());
}

#[test]
fn json_names_are_stable() {
    // `mcpctl --json` prints these structs; their JSON is part of the documented interface.
    for (json, expected) in [
        (serde_json::to_string(&ServerState::Backoff), r#""backoff""#),
        (
            serde_json::to_string(&ErrorCode::NotConfigured),
            r#""not_configured""#,
        ),
        (serde_json::to_string(&PlanAction::Restart), r#""restart""#),
        (serde_json::to_string(&LogStream::Stderr), r#""stderr""#),
        (serde_json::to_string(&LogStream::Daemon), r#""daemon""#),
    ] {
        assert_eq!(json.unwrap(), expected);
    }
    for code in [
        ErrorCode::UnknownServer,
        ErrorCode::McpFailure,
        ErrorCode::HandshakeRequired,
    ] {
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!("\"{}\"", code.as_str())
        );
    }
    let json = serde_json::to_value(sample_info()).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["uptime_ms"], 61_000);
    assert!(json["last_exit"].is_null());
}

// ---- the fuzz corpus ----------------------------------------------------------------------

/// Replays the committed corpus of the `control_decode` fuzz target (seeds and every input
/// that once crashed it) through the same checks, so CI needs no nightly toolchain.
#[test]
fn replays_the_control_decode_fuzz_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-data/fuzz/control_decode");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        // The same body as fuzz/fuzz_targets/control_decode.rs.
        if let Ok(request) = codec::decode_body::<Request>(&data) {
            let frame = codec::encode_frame(&request).expect("a decoded request encodes");
            assert_eq!(
                codec::decode_frame::<Request>(&frame).expect("round trip"),
                request
            );
        }
        if let Ok(response) = codec::decode_body::<Response>(&data) {
            let frame = codec::encode_frame(&response).expect("a decoded response encodes");
            assert_eq!(
                codec::decode_frame::<Response>(&frame).expect("round trip"),
                response
            );
        }
        let _ = codec::decode_frame::<Request>(&data);
        count += 1;
    }
    assert!(count >= 5, "only {count} inputs in {}", dir.display());
}
