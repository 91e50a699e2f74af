use http::{HeaderMap, HeaderValue};

use super::*;

fn one(body: &str) -> Message<'_> {
    let mut envelope = parse(body.as_bytes()).expect("parses");
    assert!(!envelope.batch);
    envelope.messages.remove(0)
}

fn refused(body: &[u8]) -> EnvelopeError {
    parse(body).expect_err("refused")
}

#[test]
fn reads_method_id_and_target() {
    let call = one(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,{"b":2}]}}}"#,
    );
    assert_eq!(call.method.as_deref(), Some("tools/call"));
    assert_eq!(call.id_text(), Some("7"));
    assert_eq!(call.name.as_deref(), Some("echo"));
    assert_eq!(
        call.arguments.map(|a| a.get()),
        Some(r#"{"a":[1,{"b":2}]}"#)
    );
    assert!(call.is_tool_call());
    assert!(matches!(call.name, Some(Cow::Borrowed(_))), "no copy");

    let read =
        one(r#"{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a"}}"#);
    assert_eq!(read.uri.as_deref(), Some("file:///a"));
    assert_eq!(read.id_text(), Some(r#""x""#));

    let note = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(note.id.is_none());

    let response = one(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert!(response.method.is_none());
}

#[test]
fn escapes_are_decoded_before_deciding() {
    let call =
        one(r#"{"id":1,"m\u0065thod":"tools/call","params":{"n\u0061me":"del\u0065te_db"}}"#);
    assert_eq!(call.method.as_deref(), Some("tools/call"));
    assert_eq!(call.name.as_deref(), Some("delete_db"));
}

#[test]
fn duplicate_keys_are_refused() {
    for body in [
        r#"{"method":"tools/list","method":"tools/call","id":1}"#,
        r#"{"method":"tools/call","m\u0065thod":"tools/list","id":1}"#,
        r#"{"id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
        r#"{"id":1,"id":2,"method":"ping"}"#,
        r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{},"arguments":{}}}"#,
    ] {
        let err = refused(body.as_bytes());
        assert_eq!(err.code, INVALID_REQUEST, "{body}: {err}");
        assert!(err.message.contains("twice"), "{body}: {err}");
    }
    // Other keys may repeat inside arguments: the server's business.
    one(r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#);
}

#[test]
fn not_json_is_a_parse_error() {
    for body in [
        &b"not json"[..],
        b"",
        b"{",
        b"{\"method\":\"ping\"} trailing",
        b"\xff\xfe",
    ] {
        assert_eq!(refused(body).code, PARSE_ERROR, "{body:?}");
    }
}

#[test]
fn shapes_that_are_not_messages_are_invalid_requests() {
    for body in [
        "1",
        "\"tools/call\"",
        "null",
        "[]",
        "[1]",
        "[[{\"method\":\"ping\"}]]",
        r#"{"method":7,"id":1}"#,
        r#"{"method":"tools/call","id":1}"#,
        r#"{"method":"tools/call","id":1,"params":{"name":7}}"#,
    ] {
        let err = refused(body.as_bytes());
        assert!(
            err.code == INVALID_REQUEST || err.code == INVALID_PARAMS,
            "{body}: {err:?}"
        );
    }
}

#[test]
fn deep_nesting_never_overflows() {
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // Values the gateway does not decide on are passed over without recursion (serde_json
    // skips and captures them iteratively); the server judges them.
    for key in ["arguments", "_meta"] {
        let body =
            format!(r#"{{"id":1,"method":"tools/call","params":{{"name":"a","{key}":{nested}}}}}"#);
        assert_eq!(one(&body).name.as_deref(), Some("a"));
    }
    let body = format!(r#"{{"id":1,"method":"tools/call","params":{{"name":"a"}},"x":{nested}}}"#);
    assert_eq!(one(&body).name.as_deref(), Some("a"));
    // Unbalanced: a parse error, found without recursion either.
    let body = format!(r#"{{"id":1,"method":"ping","x":{}}}"#, "[".repeat(depth));
    assert_eq!(refused(body.as_bytes()).code, PARSE_ERROR);
}

#[test]
fn batches_are_read_element_by_element() {
    let envelope = parse(
        br#"[{"id":1,"method":"tools/list"},{"id":2,"method":"tools/call","params":{"name":"x"}},{"method":"notifications/cancelled","params":{"requestId":1}}]"#,
    )
    .unwrap();
    assert!(envelope.batch);
    assert_eq!(envelope.messages.len(), 3);
    assert_eq!(envelope.messages[1].name.as_deref(), Some("x"));
}

#[test]
fn large_arguments_are_borrowed() {
    let big = "a".repeat(4 << 20);
    let body = format!(
        r#"{{"id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}"}}}}}}"#
    );
    let call = one(&body);
    assert_eq!(call.arguments.unwrap().get().len(), big.len() + 11);
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn routing_headers_must_agree_with_the_body() {
    let body = r#"{"id":1,"method":"tools/call","params":{"name":"delete_db"}}"#;
    let envelope = parse(body.as_bytes()).unwrap();
    let check = |pairs: &[(&'static str, &str)]| {
        check_headers(&headers(pairs), &envelope.messages, envelope.batch)
    };
    let v = ("mcp-protocol-version", "2026-07-28");
    assert_eq!(check(&[]).unwrap(), HeaderCheck::NotApplicable);
    assert_eq!(
        check(&[("mcp-protocol-version", "2025-11-25")]).unwrap(),
        HeaderCheck::NotApplicable
    );
    assert_eq!(
        check(&[v, ("mcp-method", "tools/call"), ("mcp-name", "delete_db")]).unwrap(),
        HeaderCheck::Agree
    );
    // The base64 form of the same name.
    assert_eq!(
        check(&[
            v,
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZGVsZXRlX2Ri?=")
        ])
        .unwrap(),
        HeaderCheck::Agree
    );
    for bad in [
        vec![v],
        vec![v, ("mcp-method", "tools/call")],
        vec![v, ("mcp-method", "tools/list"), ("mcp-name", "delete_db")],
        vec![v, ("mcp-method", "tools/call"), ("mcp-name", "search")],
        vec![
            v,
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?!!!?="),
        ],
        vec![
            v,
            ("mcp-method", "tools/call"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_db"),
        ],
    ] {
        let err = check(&bad).expect_err("mismatch");
        assert_eq!(err.code, HEADER_MISMATCH, "{bad:?}");
    }

    let list = parse(br#"{"id":1,"method":"tools/list"}"#).unwrap();
    let check_list =
        |pairs: &[(&'static str, &str)]| check_headers(&headers(pairs), &list.messages, list.batch);
    assert!(check_list(&[v, ("mcp-method", "tools/list")]).is_ok());
    assert_eq!(
        check_list(&[v, ("mcp-method", "tools/list"), ("mcp-name", "x")])
            .unwrap_err()
            .code,
        HEADER_MISMATCH
    );

    let batch = parse(br#"[{"id":1,"method":"tools/list"}]"#).unwrap();
    assert!(check_headers(&headers(&[v]), &batch.messages, batch.batch).is_err());
}
