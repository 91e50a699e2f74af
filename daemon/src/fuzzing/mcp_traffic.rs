//! The fuzz checks of what the gateway reads from MCP traffic: the JSON-RPC envelope of a
//! POST body with its 2026-07-28 routing headers (`envelope`), and the SSE answers it filters
//! and audits (`sse_split`). Same contract as the rest of [`crate::fuzzing`]: each function
//! panics when a property does not hold.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::authz::{self, ToolPattern, ToolRule};
use crate::config::OAuthConfig;
use crate::envelope::{self, HeaderCheck, Message};
use crate::gateway::{outcome, sse};

/// The per-tool policy `envelope` decides under (the issue's example), and the scope sets it
/// asks about.
fn envelope_policy() -> OAuthConfig {
    let rule = |pattern: &str, scopes: &[&str]| ToolRule {
        pattern: ToolPattern::parse(pattern).expect("a valid pattern"),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
    };
    OAuthConfig {
        required: true,
        scopes: ["user", "tools:read", "tools:write"]
            .map(str::to_owned)
            .to_vec(),
        audience: "mcp".to_owned(),
        client_id: None,
        tools: vec![
            rule("delete_*", &["admin"]),
            rule("search", &["tools:read", "user"]),
            rule("*", &["tools:write", "user"]),
        ],
    }
}

const ENVELOPE_SCOPES: [&[&str]; 5] = [
    &[],
    &["admin"],
    &["tools:read"],
    &["user"],
    &["tools:write", "tools:read"],
];

/// `envelope`: the input is a POST body, optionally preceded by header lines `name: value`
/// and a NUL byte. The envelope reader never panics; what it accepts, a `serde_json::Value`
/// (which keeps the last of duplicate keys) reads the same way, so the gateway decides on the
/// method, tool and id a serde_json-based server acts on; every `tools/call` it accepts names
/// a tool; a second `method` or `params.name` key (plain or escaped) always refuses the body;
/// and the 2026-07-28 headers pass exactly when they agree with the body. The stdio bridge's
/// reader of the same body never panics either, and reads the gateway's method and id. Returns
/// whether the body was accepted.
pub fn envelope(data: &[u8]) -> bool {
    let (head, body) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&[][..], data),
    };
    let headers = header_lines(head);
    let parsed = envelope::parse(body);
    let value = serde_json::from_slice::<Value>(body).ok();
    check_raw_agrees(body, parsed.as_ref().ok());
    let Ok(parsed) = parsed else {
        return false;
    };
    // Whatever the client's headers say, the check answers without panicking; when it lets a
    // 2026-07-28 request through, the headers agree with the body.
    if let Ok(HeaderCheck::Agree) =
        envelope::check_headers(&headers, &parsed.messages, parsed.batch)
        && let Some(message) = parsed.messages.first()
    {
        assert!(!parsed.batch);
        let method = headers.get("mcp-method").and_then(|v| v.to_str().ok());
        assert_eq!(method.map(str::trim), message.method.as_deref());
    }
    for message in &parsed.messages {
        if message.is_tool_call() {
            assert!(message.name.is_some(), "{message:?}");
        }
        check_stateless_headers(message);
    }
    if let Some(value) = value {
        let values: Vec<&Value> = match &value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        assert_eq!(parsed.batch, value.is_array());
        assert_eq!(values.len(), parsed.messages.len());
        for (message, value) in parsed.messages.iter().zip(values) {
            check_as_serde_reads(message, value);
            check_duplicates_refused(value);
        }
    }
    true
}

/// What the stdio bridge's reader accepts, the gateway's reader reads with the same method and
/// id (the bridge reads an `id` of `null` as none).
fn check_raw_agrees(body: &[u8], gateway: Option<&envelope::Envelope<'_>>) {
    let Ok(raw) = envelope::raw::Envelope::parse(body) else {
        return;
    };
    if let Some(gateway) = gateway {
        let [message] = gateway.messages.as_slice() else {
            panic!("the bridge read one message where the gateway read a batch");
        };
        assert_eq!(raw.method, message.method);
        let id = message.id.map(|id| id.get()).filter(|id| *id != "null");
        assert_eq!(raw.id.map(|id| id.get()), id);
    }
}

fn header_lines(head: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The gateway and a server reading `value` with serde_json see the same message, and so the
/// same decision for every caller.
fn check_as_serde_reads(message: &Message<'_>, value: &Value) {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let params = value.get("params").filter(|params| params.is_object());
    let seen = Message {
        method: text(value.get("method")).map(Cow::Owned),
        id: None,
        name: text(params.and_then(|p| p.get("name"))).map(Cow::Owned),
        uri: text(params.and_then(|p| p.get("uri"))).map(Cow::Owned),
        arguments: None,
        ..Message::default()
    };
    assert_eq!(message.method, seen.method, "{value}");
    assert_eq!(message.name, seen.name, "{value}");
    assert_eq!(message.uri, seen.uri, "{value}");
    let id = message
        .id
        .map(|id| serde_json::from_str::<Value>(id.get()).expect("an id"));
    assert_eq!(id.as_ref(), value.get("id"), "{value}");
    let policy = envelope_policy();
    for scopes in ENVELOPE_SCOPES {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            authz::decide(&scopes, &policy, message),
            authz::decide(&scopes, &policy, &seen),
            "{value}"
        );
    }
}

/// A message with a second `method` (or `params.name`) key in front, plain or escaped, is
/// refused as an invalid request whatever the two values are.
fn check_duplicates_refused(value: &Value) {
    let Some(object) = value.as_object() else {
        return;
    };
    let rest = |object: &serde_json::Map<String, Value>| {
        let text = Value::Object(object.clone()).to_string();
        text[1..].to_owned()
    };
    let join = |first: String, rest: &str| {
        if rest == "}" {
            format!("{{{first}}}")
        } else {
            format!("{{{first},{rest}")
        }
    };
    let mut bodies = Vec::new();
    if object.contains_key("method") {
        for key in ["method", "m\\u0065thod"] {
            bodies.push(join(format!("\"{key}\":\"tools/list\""), &rest(object)));
        }
    }
    if let Some(Value::Object(params)) = object.get("params")
        && params.contains_key("name")
    {
        let mut others = object.clone();
        others.remove("params");
        for key in ["name", "n\\u0061me"] {
            let params = join(format!("\"{key}\":\"search\""), &rest(params));
            bodies.push(join(format!("\"params\":{params}"), &rest(&others)));
        }
    }
    for body in bodies {
        let err = envelope::parse(body.as_bytes()).expect_err(&body);
        assert_eq!(err.code, envelope::INVALID_REQUEST, "{body}: {err}");
    }
}

/// The 2026-07-28 headers a conforming client sends for `message` pass, and a different
/// method or name is refused with -32020.
fn check_stateless_headers(message: &Message<'_>) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2026-07-28"),
    );
    let Some(method) = message.method.as_deref() else {
        assert_eq!(
            envelope::check_headers(&headers, std::slice::from_ref(message), false),
            Ok(HeaderCheck::Agree)
        );
        return;
    };
    let check = |headers: &HeaderMap| {
        envelope::check_headers(headers, std::slice::from_ref(message), false)
    };
    // The method as a header value, when it can be one exactly.
    let visible = |b: u8| b == b'\t' || (0x20..0x7f).contains(&b);
    if method.trim() != method || !method.bytes().all(visible) {
        return;
    }
    let Ok(method_value) = HeaderValue::from_str(method) else {
        return;
    };
    headers.insert("mcp-method", method_value);
    let target = match method {
        "tools/call" | "prompts/get" => message.name.as_deref(),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            message.uri.as_deref()
        }
        _ => None,
    };
    if let Some(target) = target {
        assert_eq!(
            check(&headers).map_err(|e| e.code),
            Err(envelope::HEADER_MISMATCH)
        );
        let encoded = format!("=?base64?{}?=", BASE64.encode(target));
        headers.insert("mcp-name", HeaderValue::from_str(&encoded).expect("base64"));
        assert_eq!(check(&headers), Ok(HeaderCheck::Agree), "{message:?}");
        let other = format!("=?base64?{}?=", BASE64.encode(format!("{target}x")));
        headers.insert("mcp-name", HeaderValue::from_str(&other).expect("base64"));
        assert_eq!(
            check(&headers).map_err(|e| e.code),
            Err(envelope::HEADER_MISMATCH)
        );
        headers.remove("mcp-name");
    }
    if target.is_none() {
        assert_eq!(check(&headers), Ok(HeaderCheck::Agree), "{message:?}");
    }
    headers.insert(
        "mcp-method",
        HeaderValue::from_str(&format!("{method}x")).expect("visible ASCII"),
    );
    assert_eq!(
        check(&headers).map_err(|e| e.code),
        Err(envelope::HEADER_MISMATCH)
    );
}

/// `sse_split`: the input as a Server-Sent Events stream, fed to the splitter whole and in
/// pieces (sizes from the first byte). Both give the same events; the events and what is
/// left make up the input; each event ends at its first blank line; rewriting an event's
/// data (as the tap does for events with data) gives one event that carries exactly the new
/// data and keeps its other fields; an event's data read in place is the same as joined, and
/// the one-pass split (`sse::split_event`) finds the same events and data; a call's outcome
/// is read from any data without panicking.
pub fn sse_split(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = |piece: usize| {
        let mut buffer = BytesMut::new();
        let mut events = Vec::new();
        for chunk in stream.chunks(piece.max(1)) {
            buffer.extend_from_slice(chunk);
            while let Some(event) = sse::next_event(&mut buffer) {
                events.push(event);
            }
        }
        (events, buffer)
    };
    let (events, rest) = split(stream.len());
    let (pieces, pieces_rest) = split(usize::from(first % 16));
    assert_eq!(events, pieces);
    assert_eq!(rest, pieces_rest);
    let mut joined = events.concat();
    joined.extend_from_slice(&rest);
    assert_eq!(joined, stream);
    // The one-pass reading of an observed answer finds the same events and the same data.
    let mut unread = stream;
    for event in &events {
        let (end, data) = sse::split_event(unread).expect("a complete event");
        assert_eq!(&unread[..end], &event[..]);
        assert_eq!(data, sse::data_ref(event));
        unread = &unread[end..];
    }
    assert_eq!(sse::split_event(unread), None);
    for event in &events {
        let mut alone = BytesMut::from(&event[..]);
        assert_eq!(sse::next_event(&mut alone).as_ref(), Some(event));
        assert!(alone.is_empty());
        let fields = |event: &[u8]| -> Vec<Vec<u8>> {
            event
                .split(|b| *b == b'\n' || *b == b'\r')
                .filter(|line| !line.is_empty() && !is_data_line(line))
                .map(<[u8]>::to_vec)
                .collect()
        };
        // The tap reads outcomes from the borrowed data, and from a server's bytes.
        assert_eq!(sse::data_ref(event).map(Cow::into_owned), sse::data(event));
        if let Some(data) = sse::data_ref(event) {
            outcome::read(&data, |read| {
                assert!(read.id.is_none_or(|id| !id.is_empty()))
            });
        }
        // Only events with data are rewritten (`tap` filters the JSON-RPC message in them).
        if sse::data(event).is_none() {
            continue;
        }
        let new = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let rewritten = sse::with_data(event, new);
        let mut again = BytesMut::from(&rewritten[..]);
        assert_eq!(sse::next_event(&mut again).as_deref(), Some(&rewritten[..]));
        assert_eq!(fields(&rewritten), fields(event));
        assert_eq!(sse::data(&rewritten).as_deref(), Some(&new[..]));
    }
    if !stream.contains(&b'\n') && !stream.contains(&b'\r') {
        assert_eq!(sse::data(&sse::event(stream)).as_deref(), Some(stream));
    }
}

fn is_data_line(line: &[u8]) -> bool {
    line.strip_prefix(b"data")
        .is_some_and(|rest| rest.is_empty() || rest[0] == b':')
}
