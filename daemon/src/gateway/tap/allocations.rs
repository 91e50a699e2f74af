//! How many allocations auditing a `tools/call` adds on the request's thread (deciding on the
//! body, reading the answer for the outcome, queueing the record), counted with the test
//! allocator and bounded, so a regression shows as a failing count rather than a slower bench.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;

use crate::alloc_count::allocations;
use crate::audit::AuditLog;
use crate::authz::{ToolPattern, ToolRule};
use crate::config::test_builder::{daemon_config, oauth, server_config};
use crate::config::{LogsConfig, Rotation, ServerConfig};
use crate::gateway::auth::Claims;
use crate::gateway::inspect::{self, Caller};

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
const SSE_ANSWER: &[u8] = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"isError\":false}}\n\n";
const JSON_ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;
const REQUESTS: u64 = 500;
/// Allocations auditing may add to one call: the tool name and request id (one allocation;
/// a single call is held inline in the tap, no list), plus one spare (the writer's queue
/// grows its vector now and then).
const MAX_PER_CALL: u64 = 2;

/// JWT with per-tool rules, as in the bench's `mcpd+authz` server.
fn policy() -> Arc<ServerConfig> {
    let mut config = server_config(&daemon_config(std::path::Path::new("/tmp")), "echo");
    config.oauth = oauth(&["user", "tools:read", "tools:write"]);
    config.oauth.tools = vec![ToolRule {
        pattern: ToolPattern::parse("delete_*").unwrap(),
        scopes: vec!["admin".into()],
    }];
    Arc::new(config)
}

/// Allocations made by `REQUESTS` calls answered with `answer` as `content_type`.
fn count(audit: Option<&Arc<AuditLog>>, content_type: &str, answer: &'static [u8]) -> u64 {
    let config = policy();
    let claims = Arc::new(Claims {
        subject: Some("alice".into()),
        scopes: vec!["user".into()],
        ..Claims::default()
    });
    let headers = HeaderMap::new();
    let mut total = 0;
    for _ in 0..REQUESTS {
        // The answer's head, as the proxy hands it over (not counted: the same either way).
        let mut parts = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", content_type)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let body = Bytes::from_static(CALL);
        let chunk = Bytes::from_static(answer);
        let before = allocations();
        let caller = Caller {
            claims: Some(&claims),
            peer: "127.0.0.1:40000".parse().unwrap(),
            started: std::time::Instant::now(),
        };
        let inspected = inspect::inspect(body, &headers, &config, &caller, audit, String::new)
            .unwrap_or_else(|_| panic!("the call is allowed"));
        if let Some(mut tap) = inspected.tap {
            tap.begin(&mut parts);
            drop(tap.data(chunk));
            drop(tap.end());
        }
        drop(inspected.body);
        total += allocations() - before;
    }
    total
}

#[tokio::test]
async fn an_audited_call_adds_at_most_a_few_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let logs = LogsConfig {
        dir: dir.path().join("logs"),
        rotation: Rotation::Never,
        keep: 1,
        buffer_lines: 10,
        audit: true,
    };
    let dropped = Counter::default();
    let audit = AuditLog::new(&logs, dropped.clone());
    for (content_type, answer) in [
        ("text/event-stream", SSE_ANSWER),
        ("application/json", JSON_ANSWER),
    ] {
        let off = count(None, content_type, answer);
        let on = count(Some(&audit), content_type, answer);
        let added = on.saturating_sub(off);
        assert!(
            added <= MAX_PER_CALL * REQUESTS,
            "{content_type}: auditing added {added} allocations over {REQUESTS} calls \
             ({:.1} a call, at most {MAX_PER_CALL} allowed)",
            added as f64 / REQUESTS as f64
        );
    }
    // Every record was written, with its outcome.
    audit.flush(Duration::from_secs(10)).await;
    assert_eq!(dropped.get(), 0);
    let written = std::fs::read_to_string(dir.path().join("logs/audit.log")).unwrap();
    assert_eq!(written.lines().count() as u64, 2 * REQUESTS);
    for line in written.lines() {
        let record: mcpd_protocol::AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(
            (
                record.tool.as_str(),
                record.is_error,
                record.status,
                record.request_id.as_deref()
            ),
            ("echo", Some(false), 200, Some("17")),
        );
        assert_eq!(record.subject.as_deref(), Some("alice"));
    }
}
