//! The probe client's requests, byte for byte (a change of the wire format is a visible
//! decision).

use super::request::STATELESS_META;
use super::*;

fn rendered(client: &ProbeClient, method: &'static str, id: Option<u64>, params: &str) -> String {
    String::from_utf8(client.render(method, id, params).unwrap()).unwrap()
}

#[test]
fn stateless_requests_carry_method_header_and_meta() {
    let mut client = ProbeClient::new(5000, "/mcp");
    client.mode = Mode::Stateless;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{{"cursor":"c1","_meta":{STATELESS_META}}}}}"#
    );
    assert_eq!(
        rendered(&client, "tools/list", Some(3), r#""cursor":"c1""#),
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Mcp-Method: tools/list\r\nMCP-Protocol-Version: 2026-07-28\r\n\r\n{body}",
            body.len()
        )
    );
    assert!(STATELESS_META.contains(r#""name":"mcpd""#));
    serde_json::from_str::<serde_json::Value>(STATELESS_META).unwrap();
}

#[test]
fn session_requests_carry_session_and_version() {
    let mut client = ProbeClient::new(5001, "/x");
    let init = rendered(&client, "initialize", Some(1), "");
    assert!(
        init.starts_with("POST /x HTTP/1.1\r\nHost: 127.0.0.1:5001\r\n"),
        "{init}"
    );
    assert!(!init.contains("Mcp-Session-Id") && !init.contains("MCP-Protocol-Version"));
    let body = init.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["params"]["protocolVersion"], SESSION_VERSION);
    assert_eq!(json["params"]["clientInfo"]["name"], "mcpd");

    client.mode = Mode::Session {
        id: Some("s-1".into()),
        version: "2025-06-18".into(),
        open: true,
    };
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    assert_eq!(
        rendered(&client, "ping", Some(9), ""),
        format!(
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1:5001\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Mcp-Session-Id: s-1\r\nMCP-Protocol-Version: 2025-06-18\r\n\r\n{body}",
            body.len()
        )
    );
    let note = rendered(&client, "notifications/initialized", None, "");
    assert!(note.ends_with(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
}

#[test]
fn a_path_that_would_break_the_request_is_refused() {
    let client = ProbeClient::new(5002, "/m cp\r\nX: y");
    let error = client.render("ping", Some(1), "").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not a valid HTTP request target"),
        "{error}"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    // A test port of our own, outside the ephemeral range: nothing listens there.
    let port = mcpd_testkit::free_port();
    let error = ProbeClient::new(port, "/mcp")
        .ready(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, ProbeError::Connect { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}"))
    );
}

#[test]
fn tools_keep_their_schema_and_other_fields_as_sent_and_list_back_as_valid_json() {
    let result = r#"{"tools":[
        {"name":"echo","description":"Says \"hi\"","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}},"annotations":{"readOnlyHint":true},"title":"Echo"},
        {"name":"bare"},
        {"name":7},
        {"description":"no name"},
        {"name":"array-schema","inputSchema":[1,2]},
        {"name":"late","inputSchema":{"type":"object"},"name":"late2"},
        "not an object"
    ]}"#;
    let tools = tools_of(result);
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "bare", "late2"]);
    let echo = &tools[0];
    assert_eq!(echo.description.as_deref(), Some("Says \"hi\""));
    assert_eq!(
        echo.input_schema.get(),
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#
    );
    assert_eq!(tools[1].input_schema.get(), "{}");
    assert!(tools[1].extra.is_none());

    // Listed under another name (a virtual server's), as JSON a client can read.
    let hostile = "x\"\n\u{1b}[31m";
    let mut out = String::new();
    echo.listed_as(hostile, &mut out);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({
            "name": hostile,
            "description": "Says \"hi\"",
            "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "annotations": {"readOnlyHint": true},
            "title": "Echo",
        })
    );
    let mut out = String::new();
    tools[1].listed_as("b", &mut out);
    assert_eq!(out, r#"{"name":"b","inputSchema":{}}"#);
}

#[test]
fn prompts_and_resources_are_declared_only_by_objects() {
    let declared = |json: &str| {
        let result: wire::Initialized = serde_json::from_str(json).unwrap();
        offers::Declared::from(&result.capabilities)
    };
    let both = declared(
        r#"{"protocolVersion":"x","capabilities":{"prompts":{},"resources":{"subscribe":true}}}"#,
    );
    assert!(both.prompts && both.resources && both.subscribe);
    // A server of tools alone (or one saying something else) is never asked for them.
    for json in [
        r#"{"protocolVersion":"x","capabilities":{"tools":{}}}"#,
        r#"{"protocolVersion":"x"}"#,
        r#"{"protocolVersion":"x","capabilities":{"prompts":true,"resources":null}}"#,
        r#"{"protocolVersion":"x","capabilities":{"prompts":[],"resources":"yes"}}"#,
    ] {
        assert_eq!(declared(json), offers::Declared::default(), "{json}");
    }
    let subscribe_only_if_true =
        declared(r#"{"protocolVersion":"x","capabilities":{"resources":{"subscribe":"true"}}}"#);
    assert!(subscribe_only_if_true.resources && !subscribe_only_if_true.subscribe);
}
