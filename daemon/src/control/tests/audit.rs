//! `audit` over a real socket: the backlog with its filters and limit, following new records
//! (filtered, none twice), and the record an operator's `call` leaves.

use std::os::unix::fs::MetadataExt;

use prometheus_client::metrics::counter::Counter;

use super::*;
use crate::audit::AuditLog;
use crate::directory::ServerState;

async fn start() -> (Harness, Arc<AuditLog>) {
    let mut log = None;
    let h = Harness::start_with(0o660, |ctx| {
        let audit = AuditLog::new(&ctx.config.load().logs, Counter::default());
        log = Some(audit.clone());
        ctx.audit = Some(audit);
    })
    .await;
    (h, log.unwrap())
}

fn record(server: &str, tool: &str, ts: u64) -> AuditRecord {
    AuditRecord {
        time: "2026-11-29T19:20:01.123Z".into(),
        ts,
        server: server.into(),
        member: None,
        tool: tool.into(),
        subject: Some("alice".into()),
        client_id: Some("cli".into()),
        scopes: vec!["user".into()],
        decision: AuditDecision::Allow,
        status: 200,
        error_code: None,
        is_error: Some(false),
        duration_ms: 2.0,
        request_id: Some("1".into()),
        caller: "127.0.0.1:40000".into(),
        via: "gateway".into(),
        arguments: None,
    }
}

fn request(server: Option<&str>, tool: Option<&str>, since: Option<u64>, lines: u32) -> Request {
    Request::Audit(AuditRequest {
        server: server.map(str::to_owned),
        tool: tool.map(str::to_owned),
        since_unix_ms: since,
        lines,
        follow: false,
    })
}

/// The tools of the records of an `Audit` reply.
fn tools_of(response: &Response) -> Vec<String> {
    let Response::Audit(reply) = response else {
        panic!("expected an audit reply, got {response:?}")
    };
    reply
        .records
        .iter()
        .map(|line| serde_json::from_str::<AuditRecord>(line).unwrap().tool)
        .collect()
}

fn followed(response: Option<Response>) -> AuditRecord {
    match response {
        Some(Response::AuditRecord(line)) => serde_json::from_str(&line).unwrap(),
        other => panic!("expected a followed record, got {other:?}"),
    }
}

#[tokio::test]
async fn without_an_audit_log_audit_is_unsupported() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    let reply = roundtrip(&mut stream, &request(None, None, None, 10)).await;
    assert_eq!(error_code(&reply), ErrorCode::Unsupported);
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn the_backlog_is_filtered_and_limited_and_holds_records_just_made() {
    let (mut h, log) = start().await;
    // Recorded just before the request: the handler waits for them to reach the file.
    log.record(&record("db", "t1", 10));
    log.record(&record("web", "t2", 20));
    log.record(&record("db", "t3", 30));
    let mut stream = h.client().await;
    let all = roundtrip(&mut stream, &request(None, None, None, 100)).await;
    assert_eq!(tools_of(&all), ["t1", "t2", "t3"]);
    let Response::Audit(reply) = &all else {
        unreachable!()
    };
    assert_eq!(reply.dropped, 0);
    let db = roundtrip(&mut stream, &request(Some("db"), None, None, 100)).await;
    assert_eq!(tools_of(&db), ["t1", "t3"]);
    let tool = roundtrip(&mut stream, &request(None, Some("t2"), None, 100)).await;
    assert_eq!(tools_of(&tool), ["t2"]);
    let since = roundtrip(&mut stream, &request(None, None, Some(20), 100)).await;
    assert_eq!(tools_of(&since), ["t2", "t3"]);
    let newest = roundtrip(&mut stream, &request(None, None, None, 1)).await;
    assert_eq!(tools_of(&newest), ["t3"]);
    let none = roundtrip(&mut stream, &request(None, None, None, 0)).await;
    assert!(tools_of(&none).is_empty());
    // A huge limit is capped, not allocated.
    let capped = roundtrip(&mut stream, &request(None, None, None, u32::MAX)).await;
    assert_eq!(tools_of(&capped).len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn follow_streams_each_new_matching_record_once() {
    let (mut h, log) = start().await;
    log.record(&record("db", "before", 1));
    let mut stream = h.client().await;
    send(
        &mut stream,
        &Request::Audit(AuditRequest {
            server: Some("db".into()),
            tool: None,
            since_unix_ms: None,
            lines: 10,
            follow: true,
        }),
    )
    .await;
    let first = recv(&mut stream).await.expect("the backlog");
    assert_eq!(tools_of(&first), ["before"]);
    log.record(&record("web", "other server", 2));
    log.record(&record("db", "live", 3));
    let mut member = record("team", "via member", 4);
    member.member = Some("db".into());
    log.record(&member);
    assert_eq!(followed(recv(&mut stream).await).tool, "live");
    assert_eq!(followed(recv(&mut stream).await).tool, "via member");
    log.record(&record("db", "again", 5));
    assert_eq!(followed(recv(&mut stream).await).tool, "again");
    // Closing its end ends the follow; the daemon serves on.
    drop(stream);
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_made_while_the_backlog_is_read_is_sent_once() {
    let (mut h, log) = start().await;
    let mut streams = Vec::new();
    // Records race the requests: each follower must see each record exactly once, in the
    // backlog or followed.
    for _ in 0..5 {
        streams.push(h.client().await);
    }
    let follow = Request::Audit(AuditRequest {
        lines: 100,
        follow: true,
        ..AuditRequest::default()
    });
    for stream in &mut streams {
        send(stream, &follow).await;
    }
    // Spread over the time the handlers subscribe, wait for the file and read it.
    for n in 0..20 {
        log.record(&record("db", &format!("r{n}"), n));
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }
    let expected: Vec<String> = (0..20).map(|n| format!("r{n}")).collect();
    for stream in &mut streams {
        let first = recv(stream).await.expect("the backlog");
        let mut seen = tools_of(&first);
        while seen.len() < expected.len() {
            seen.push(followed(recv(stream).await).tool);
        }
        assert_eq!(seen, expected);
    }
    log.record(&record("db", "last", 99));
    for stream in &mut streams {
        assert_eq!(followed(recv(stream).await).tool, "last");
    }
    h.stop().await;
}

/// Servers that look running on a port where nothing answers MCP; `beta` keeps arguments.
fn populate_for_calls(h: &Harness) {
    let mut map = BTreeMap::new();
    for (name, keep_arguments) in [("alpha", false), ("beta", true)] {
        let mut config = server_config(&h.daemon, name);
        config.audit_arguments = keep_arguments;
        let mut status = ServerStatus::new(ServerState::Running);
        status.pid = Some(1234);
        status.port = Some(5001);
        status.tools = vec![tool("echo")].into();
        map.insert(name.to_owned(), Arc::new(ServerEntry::new(config, status)));
    }
    h.ctx.supervisor.directory().replace(map);
}

#[tokio::test]
async fn an_operator_call_is_recorded_with_the_peer_uid_and_arguments_only_when_kept() {
    let (mut h, _log) = start().await;
    populate_for_calls(&h);
    let uid = std::fs::metadata(h.dir.path()).unwrap().uid();
    let mut stream = h.client().await;
    for server in ["alpha", "beta"] {
        let reply = roundtrip(
            &mut stream,
            &Request::Call(CallRequest {
                server: Some(server.into()),
                tool: "echo".into(),
                arguments_json: r#"{"secret": "s3cr3t"}"#.into(),
                timeout_ms: 2000,
            }),
        )
        .await;
        assert_eq!(error_code(&reply), ErrorCode::McpFailure, "{reply:?}");
    }
    // Refused before any call: not recorded.
    let reply = roundtrip(
        &mut stream,
        &Request::Call(CallRequest {
            server: Some("alpha".into()),
            tool: "echo".into(),
            arguments_json: "[]".into(),
            timeout_ms: 2000,
        }),
    )
    .await;
    assert_eq!(error_code(&reply), ErrorCode::InvalidArgument);

    let reply = roundtrip(&mut stream, &request(None, None, None, 10)).await;
    let Response::Audit(reply) = reply else {
        panic!("{reply:?}")
    };
    let records: Vec<AuditRecord> = reply
        .records
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    for (record, server) in records.iter().zip(["alpha", "beta"]) {
        assert_eq!(record.server, server);
        assert_eq!(record.tool, "echo");
        assert_eq!(record.via, "mcpctl");
        assert_eq!(record.caller, format!("uid:{uid}"));
        assert_eq!(record.decision, AuditDecision::Allow);
        assert_eq!(record.status, 0);
        assert_eq!(
            (record.subject.as_deref(), record.client_id.as_deref()),
            (None, None)
        );
        assert!(record.scopes.is_empty());
        // No answer: neither an error code nor isError.
        assert_eq!((record.error_code, record.is_error), (None, None));
        assert!(record.duration_ms >= 0.0);
        assert!(record.ts > 1_700_000_000_000, "{}", record.ts);
    }
    assert_eq!(records[0].arguments, None);
    assert_eq!(
        records[1].arguments.as_deref(),
        Some(r#"{"secret":"s3cr3t"}"#)
    );
    h.stop().await;
}
