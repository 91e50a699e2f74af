//! When an answer's audit record is queued: once the response body holding the tap is dropped
//! (after its last byte was written to the client), not when its last frame is read; its
//! duration runs to then, and its outcome is read from the answer's last chunk then too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

use mcpd_protocol::AuditRecord;

use super::Tap;
use super::tests::call_audit;
use crate::audit::AuditLog;
use crate::config::{LogsConfig, Rotation};
use crate::gateway::conn::BoxError;
use crate::gateway::response::UpstreamBody;

const ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#;

fn audit_log(dir: &std::path::Path) -> Arc<AuditLog> {
    let logs = LogsConfig {
        dir: dir.join("logs"),
        rotation: Rotation::Never,
        keep: 1,
        buffer_lines: 10,
        audit: true,
    };
    AuditLog::new(&logs, Counter::default())
}

/// An answer body of `chunks` (`content_type`) passed through a tap that audits one call (id 7).
fn tapped_body(
    audit: &Arc<AuditLog>,
    started: Instant,
    content_type: &str,
    chunks: &[&'static [u8]],
) -> UpstreamBody {
    let mut tap = Tap::new(
        None,
        vec![call_audit(json!(7))],
        Some(audit.clone()),
        started,
    );
    let mut parts = http::Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    tap.begin(&mut parts);
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|chunk| Ok(http_body::Frame::data(Bytes::from_static(chunk))))
        .collect();
    let source = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let mut body = UpstreamBody::local(Box::pin(source));
    body.set_tap(tap);
    body
}

#[tokio::test]
async fn the_record_is_queued_when_the_body_is_dropped_not_at_its_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_log(dir.path());
    let mut follower = audit.subscribe();
    let started = Instant::now();
    let mut body = tapped_body(
        &audit,
        started,
        "application/json",
        &[&ANSWER[..20], &ANSWER[20..]],
    );

    let mut passed = Vec::new();
    while let Some(frame) = body.frame().await {
        passed.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(passed, ANSWER, "the answer passes unchanged");
    // Read to its end, not dropped yet (its last byte not written yet): nothing queued.
    audit.flush(Duration::from_secs(5)).await;
    assert!(matches!(follower.try_recv(), Err(TryRecvError::Empty)));

    let record = record_at_drop(&audit, &mut follower, body, started).await;
    assert_eq!(
        (record.status, record.is_error, record.request_id.as_deref()),
        (200, Some(true), Some("7"))
    );
}

/// Drops `body` and returns the one record queued then, checking that its duration runs to
/// the drop (from `started`) and that no other record came.
async fn record_at_drop<B>(
    audit: &AuditLog,
    follower: &mut tokio::sync::broadcast::Receiver<Arc<str>>,
    body: B,
    started: Instant,
) -> AuditRecord {
    let before_drop = started.elapsed();
    drop(body);
    audit.flush(Duration::from_secs(5)).await;
    let line = follower
        .try_recv()
        .expect("one record once the body is dropped");
    let record: AuditRecord = serde_json::from_str(&line).unwrap();
    assert!(
        record.duration_ms >= before_drop.as_secs_f64() * 1000.0,
        "the duration runs to the drop: {} ms, {before_drop:?} before it",
        record.duration_ms
    );
    assert!(matches!(follower.try_recv(), Err(TryRecvError::Empty)));
    record
}

/// A body dropped before its end (the client went away) still leaves its record, once.
#[tokio::test]
async fn a_body_dropped_before_its_end_still_leaves_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_log(dir.path());
    let mut follower = audit.subscribe();
    let mut body = tapped_body(
        &audit,
        Instant::now(),
        "application/json",
        &[&ANSWER[..20], &ANSWER[20..]],
    );
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), &ANSWER[..20]);
    drop(body);
    audit.flush(Duration::from_secs(5)).await;
    let record: AuditRecord = serde_json::from_str(&follower.try_recv().unwrap()).unwrap();
    assert_eq!(
        (record.status, record.is_error),
        (200, None),
        "outcome unknown"
    );
    assert!(matches!(follower.try_recv(), Err(TryRecvError::Empty)));
}

/// An SSE answer: the outcome is in its last chunk, read once the body is dropped; an event
/// cut short by a client that left is not read as one.
#[tokio::test]
async fn an_sse_answer_is_read_to_its_last_event_when_the_body_is_dropped() {
    const PROGRESS: &[u8] =
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
    const ANSWERED: &[u8] =
        b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32602,\"message\":\"x\"}}\n\n";
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_log(dir.path());
    let mut follower = audit.subscribe();
    let mut body = tapped_body(
        &audit,
        Instant::now(),
        "text/event-stream",
        &[PROGRESS, ANSWERED],
    );
    let mut passed = Vec::new();
    while let Some(frame) = body.frame().await {
        passed.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(passed, [PROGRESS, ANSWERED].concat());
    audit.flush(Duration::from_secs(5)).await;
    assert!(matches!(follower.try_recv(), Err(TryRecvError::Empty)));
    drop(body);
    audit.flush(Duration::from_secs(5)).await;
    let record: AuditRecord = serde_json::from_str(&follower.try_recv().unwrap()).unwrap();
    assert_eq!((record.status, record.error_code), (200, Some(-32602)));

    // The answer's event without its blank line, and the client gone before the end.
    let mut body = tapped_body(
        &audit,
        Instant::now(),
        "text/event-stream",
        &[PROGRESS, &ANSWERED[..ANSWERED.len() - 2], b"\n\n"],
    );
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);
    audit.flush(Duration::from_secs(5)).await;
    let record: AuditRecord = serde_json::from_str(&follower.try_recv().unwrap()).unwrap();
    assert_eq!(record.error_code, None, "a cut event is not an answer");
}

/// A call refused by the per-tool rules: its record (decision deny, status 403) is queued
/// once the 403 the gateway wrote is dropped, after its last byte was written, not when the
/// refusal was decided.
#[tokio::test]
async fn a_refused_calls_record_is_queued_when_the_refusal_is_dropped() {
    use crate::authz::{ToolPattern, ToolRule};
    use crate::config::test_builder::{daemon_config, oauth, server_config};
    use crate::gateway::auth::Claims;
    use crate::gateway::inspect::{self, Caller};

    let dir = tempfile::tempdir().unwrap();
    let audit = audit_log(dir.path());
    let mut follower = audit.subscribe();
    let mut config = server_config(&daemon_config(dir.path()), "echo");
    config.oauth = oauth(&["user"]);
    config.oauth.tools = vec![ToolRule {
        pattern: ToolPattern::parse("delete_*").unwrap(),
        scopes: vec!["admin".into()],
    }];
    let config = Arc::new(config);
    let claims = Arc::new(Claims {
        subject: Some("alice".into()),
        scopes: vec!["user".into()],
        ..Claims::default()
    });
    let started = Instant::now();
    let caller = Caller {
        claims: Some(&claims),
        peer: "127.0.0.1:40000".parse().unwrap(),
        started,
    };
    let call = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_db","arguments":{}}}"#;
    let Err(refusal) = inspect::inspect(
        Bytes::from_static(call),
        &http::HeaderMap::new(),
        &config,
        &caller,
        Some(&audit),
        String::new,
    ) else {
        panic!("the call is refused");
    };
    let (parts, mut body) = refusal.into_parts();
    assert_eq!(parts.status, 403);
    let mut passed = Vec::new();
    while let Some(frame) = body.frame().await {
        passed.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let answer: serde_json::Value = serde_json::from_slice(&passed).unwrap();
    assert_eq!(answer["tool"], "delete_db", "the refusal passes unchanged");
    audit.flush(Duration::from_secs(5)).await;
    assert!(
        matches!(follower.try_recv(), Err(TryRecvError::Empty)),
        "nothing queued while the refusal is being written"
    );

    let record = record_at_drop(&audit, &mut follower, body, started).await;
    assert_eq!(
        (
            record.status,
            record.decision,
            record.tool.as_str(),
            record.request_id.as_deref()
        ),
        (
            403,
            mcpd_protocol::AuditDecision::Deny,
            "delete_db",
            Some("9")
        )
    );
}
