//! The tap on answers alone: filtering JSON and SSE list answers (pages, batches, events of
//! other messages), reading call outcomes, and the audit records it writes.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode};
use mcpd_protocol::AuditRecord;
use serde_json::{Value, json};

use super::*;
use crate::authz::{ToolPattern, ToolRule};
use crate::config::test_builder::{daemon_config, oauth, server_config};

fn policy() -> Arc<ServerConfig> {
    let mut config = server_config(&daemon_config(std::path::Path::new("/tmp")), "db");
    config.oauth = oauth(&["user", "tools:read"]);
    config.oauth.tools = vec![ToolRule {
        pattern: ToolPattern::parse("delete_*").unwrap(),
        scopes: vec!["admin".into()],
    }];
    Arc::new(config)
}

fn filter(ids: &[Value], stateless: bool) -> ListFilter {
    ListFilter {
        ids: ids.to_vec(),
        scopes: vec!["user".into()],
        config: policy(),
        stateless,
    }
}

fn head(content_type: &str, length: Option<usize>) -> http::response::Parts {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    if let Some(length) = length {
        builder = builder.header("content-length", length);
    }
    builder.body(()).unwrap().into_parts().0
}

/// Runs `chunks` through a tap and returns what it passed on.
fn run(tap: &mut Tap, content_type: &str, chunks: &[&[u8]]) -> (Vec<u8>, http::response::Parts) {
    let total = chunks.iter().map(|c| c.len()).sum();
    let mut parts = head(content_type, Some(total));
    tap.begin(&mut parts);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&tap.data(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&tap.end());
    // What the tap reads once the client has the answer (on drop).
    tap.read_rest();
    (out, parts)
}

fn list_answer(id: Value, next: Option<&str>) -> Value {
    let mut result = json!({"tools": [
        {"name": "search", "inputSchema": {"type": "object"}},
        {"name": "delete_db", "inputSchema": {"type": "object"}},
        {"name": "echo", "inputSchema": {"type": "object"}},
    ]});
    if let Some(next) = next {
        result["nextCursor"] = json!(next);
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn names(message: &Value) -> Vec<&str> {
    message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_json_page_is_filtered_and_keeps_its_cursor() {
    let mut tap = Tap::new(
        Some(filter(&[json!(5)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let body = list_answer(json!(5), Some("page-2")).to_string();
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    let (out, parts) = run(&mut tap, "application/json", &[a, b]);
    assert!(parts.headers.get("content-length").is_none());
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(names(&answer), ["search", "echo"]);
    assert_eq!(answer["result"]["nextCursor"], "page-2");
    assert!(answer["result"].get("cacheScope").is_none());
}

#[test]
fn a_filtered_stateless_answer_is_private() {
    let mut tap = Tap::new(
        Some(filter(&[json!("x")], true)),
        vec![],
        None,
        Instant::now(),
    );
    let mut body = list_answer(json!("x"), None);
    body["result"]["ttlMs"] = json!(60000);
    body["result"]["cacheScope"] = json!("public");
    let (out, _) = run(
        &mut tap,
        "application/json; charset=utf-8",
        &[body.to_string().as_bytes()],
    );
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["result"]["cacheScope"], "private");
    assert_eq!(answer["result"]["ttlMs"], 60000);
}

#[test]
fn sse_list_answers_are_filtered_and_other_events_pass_unchanged() {
    let mut tap = Tap::new(
        Some(filter(&[json!(2)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let progress = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
    let answer = format!(
        "id: 9\nevent: message\ndata: {}\n\n",
        list_answer(json!(2), None)
    );
    let (first, second) = answer.as_bytes().split_at(20);
    let (out, _) = run(&mut tap, "text/event-stream", &[progress, first, second]);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(std::str::from_utf8(progress).unwrap()),
        "{text}"
    );
    let rewritten = &text[progress.len()..];
    assert!(
        rewritten.starts_with("id: 9\nevent: message\ndata: "),
        "{rewritten}"
    );
    let data = sse::data(rewritten.as_bytes()).unwrap();
    let message: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(names(&message), ["search", "echo"]);
}

#[test]
fn another_id_is_not_filtered() {
    let mut tap = Tap::new(
        Some(filter(&[json!(1)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let body = list_answer(json!(2), None).to_string();
    let (out, _) = run(&mut tap, "application/json", &[body.as_bytes()]);
    assert_eq!(out, body.as_bytes());
}

#[test]
fn a_batch_answer_is_filtered_element_by_element() {
    let mut tap = Tap::new(
        Some(filter(&[json!(1)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let body = json!([list_answer(json!(1), None), {"jsonrpc": "2.0", "id": 2, "result": {}}]);
    let (out, _) = run(&mut tap, "application/json", &[body.to_string().as_bytes()]);
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(names(&answer[0]), ["search", "echo"]);
    assert_eq!(answer[1]["id"], 2);
}

#[test]
fn an_answer_too_large_to_filter_is_never_passed_on_unfiltered() {
    let mut tap = Tap::new(
        Some(filter(&[json!(1)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let chunk = vec![b' '; 1 << 20];
    let chunks: Vec<&[u8]> = std::iter::repeat_n(&chunk[..], 17).collect();
    let (out, _) = run(&mut tap, "application/json", &chunks);
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
}

#[test]
fn compressed_or_other_answers_pass_through() {
    let mut tap = Tap::new(
        Some(filter(&[json!(1)], false)),
        vec![],
        None,
        Instant::now(),
    );
    let mut parts = head("application/json", Some(3));
    parts
        .headers
        .insert("content-encoding", http::HeaderValue::from_static("gzip"));
    tap.begin(&mut parts);
    assert_eq!(&tap.data(Bytes::from_static(b"abc"))[..], b"abc");
    assert!(parts.headers.get("content-length").is_some());
}

pub(super) fn call_audit(id: Value) -> CallAudit {
    CallAudit::new(AuditRecord {
        time: String::new(),
        ts: 0,
        server: "db".into(),
        member: None,
        tool: "echo".into(),
        subject: None,
        client_id: None,
        scopes: vec![],
        decision: mcpd_protocol::AuditDecision::Allow,
        status: 0,
        error_code: None,
        is_error: None,
        duration_ms: 0.0,
        request_id: Some(id.to_string()),
        caller: String::new(),
        via: "gateway".into(),
        arguments: None,
    })
}

/// The outcome recorded for the tap's first call: (answered, error code, isError).
fn outcome(tap: &Tap) -> (bool, Option<i64>, Option<bool>) {
    let call = tap.calls.iter().next().unwrap();
    match &call.record {
        Pending::Record(record) => (call.answered, record.error_code, record.is_error),
        Pending::Call(entry) => (call.answered, entry.error_code, entry.is_error),
    }
}

#[test]
fn call_outcomes_are_read_from_json_and_sse() {
    let mut tap = Tap::new(None, vec![call_audit(json!(7))], None, Instant::now());
    let body = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#;
    let (out, _) = run(&mut tap, "application/json", &[body]);
    assert_eq!(out, body);
    assert_eq!(outcome(&tap), (true, None, Some(true)));

    let mut tap = Tap::new(None, vec![call_audit(json!("a"))], None, Instant::now());
    let stream: &[&[u8]] = &[
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":-32602,",
        b"\"message\":\"bad\"}}\n\n",
    ];
    let (out, _) = run(&mut tap, "text/event-stream", stream);
    assert_eq!(out, stream.concat());
    assert_eq!(outcome(&tap), (true, Some(-32602), None));
}

#[test]
fn outcomes_are_read_whatever_the_chunking() {
    let answer = b"event: message\r\nid: 9\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"\\u0061\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"\\\"isError\\\":true\"}],\"isError\":false}}\r\n\r\n";
    let priming: &[u8] = b"id: 0\nretry: 100\ndata\n\n";
    let stream = [priming, &answer[..]].concat();
    // Every split into two chunks, then one byte at a time.
    for split in 0..=stream.len() {
        let mut tap = Tap::new(None, vec![call_audit(json!("a"))], None, Instant::now());
        let (out, _) = run(
            &mut tap,
            "text/event-stream",
            &[&stream[..split], &stream[split..]],
        );
        assert_eq!(out, stream, "{split}");
        assert_eq!(outcome(&tap), (true, None, Some(false)), "{split}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let mut tap = Tap::new(None, vec![call_audit(json!("a"))], None, Instant::now());
    run(&mut tap, "text/event-stream", &bytes);
    assert_eq!(outcome(&tap), (true, None, Some(false)));

    let json = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"x"}}"#;
    for split in 0..=json.len() {
        let mut tap = Tap::new(None, vec![call_audit(json!(3))], None, Instant::now());
        let (out, _) = run(
            &mut tap,
            "application/json",
            &[&json[..split], &json[split..]],
        );
        assert_eq!(out, json);
        assert_eq!(outcome(&tap), (true, Some(-32000), None), "{split}");
    }
    // A last event without its blank line, and another call's answer.
    let mut tap = Tap::new(None, vec![call_audit(json!(1))], None, Instant::now());
    run(
        &mut tap,
        "text/event-stream",
        &[b"data: {\"id\":2,\"result\":{}}\n\ndata: {\"id\":1,\"result\":{\"isError\":true}}"],
    );
    assert_eq!(outcome(&tap), (true, None, Some(true)));
    // A malformed answer leaves the outcome unknown.
    let mut tap = Tap::new(None, vec![call_audit(json!(1))], None, Instant::now());
    run(
        &mut tap,
        "application/json",
        &[br#"{"id":1,"result":{"isError":true}"#],
    );
    assert_eq!(outcome(&tap), (false, None, None));
}
