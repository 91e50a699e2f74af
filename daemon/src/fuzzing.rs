//! The properties the fuzz targets check, one function per target over its raw input:
//! `fuzz/fuzz_targets/*.rs` call them, and the unit tests replay each committed corpus
//! (`daemon/tests-data/fuzz/<target>/`: seeds and every input that once crashed a target)
//! through the same functions, so CI guards against regressions without a nightly toolchain.
//! Each function panics when a property does not hold; refusing an input is fine.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::authz::{self, ToolPattern, ToolRule};
use crate::config::{self, AuthConfig, Env, KeySource, OAuthConfig, valid_server_name};
use crate::envelope::{self, HeaderCheck, Message};
use crate::gateway::auth::{self, Authenticator, TokenError};
use crate::gateway::authority::{self, Host};
use crate::gateway::headers::{self, Forwarding};
use crate::gateway::query::has_access_token;
use crate::gateway::sse;
use crate::gateway::{Route, route};

/// `gateway_route`: the input as a request target parsed the way hyper does, and as a path.
/// A route that names a server names exactly one undecoded path segment between the fixed
/// prefix and `/mcp`; a name that could reach another path (`/`, `..` after decoding) never
/// passes the server-name rule, so it can only be answered 404.
pub fn gateway_route(data: &[u8]) {
    if let Ok(uri) = Uri::try_from(data) {
        check_route(uri.path());
    }
    if let Ok(path) = std::str::from_utf8(data) {
        check_route(path);
    }
}

fn check_route(path: &str) {
    let (prefix, name) = match route(path) {
        Route::Mcp(name) => ("/api/v1/mcp/", name),
        Route::Metadata(name) => ("/.well-known/oauth-protected-resource/api/v1/mcp/", name),
        Route::Healthz | Route::Metrics | Route::Registry | Route::NotFound => return,
    };
    assert!(!name.is_empty() && !name.contains('/'), "{path:?}");
    assert_eq!(format!("{prefix}{name}/mcp"), path);
    if valid_server_name(name) {
        assert!(!name.contains(['.', '%', '\\']), "{name:?}");
    }
}

/// The secret the seed tokens of the `auth_header` corpus are signed with.
pub const AUTH_SECRET: &[u8] = b"mcpd-fuzz-secret";

/// An authenticator with [`AUTH_SECRET`] as its one HS256 key.
pub fn hs256_authenticator() -> Authenticator {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "mcpd-fuzz-{}-{}.secret",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, AUTH_SECRET).expect("write the secret");
    let config = AuthConfig {
        issuer: None,
        authorization_servers: Vec::new(),
        keys: vec![KeySource::Hs256SecretFile(path.clone())],
        leeway: Duration::from_secs(30),
    };
    let loaded = Authenticator::load(&config);
    let _ = std::fs::remove_file(&path);
    loaded.expect("load the key")
}

/// `auth_header`: an `Authorization` header value through the bearer-token path (header
/// value, bearer token, JWT verification). A second look at the same token (served from the
/// verified-token cache when it passed) gives the same answer. Returns the outcome (the
/// token's expiry, or why it was refused), `None` when the value holds no bearer token.
pub fn auth_header(auth: &Authenticator, data: &[u8]) -> Option<Result<u64, TokenError>> {
    let value = HeaderValue::from_bytes(data).ok()?;
    let token = auth::bearer_token(&value)?;
    let first = auth.verify(token).map(|claims| claims.expires_at);
    let second = auth.verify(token).map(|claims| claims.expires_at);
    assert_eq!(first, second);
    Some(first)
}

/// `host_authority`: the `Host` grammar, on the input as text and as a header value. What
/// parses holds only characters of the authority grammar (never `@`, `/`, `\`, whitespace or
/// controls), has at most one port, and its host is the same host as itself. Returns whether
/// the input, as UTF-8 text, parsed.
pub fn host_authority(data: &[u8]) -> bool {
    let parsed = std::str::from_utf8(data).is_ok_and(check_authority);
    if let Ok(value) = HeaderValue::from_bytes(data)
        && let Ok(value) = value.to_str()
    {
        check_authority(value);
    }
    parsed
}

fn check_authority(value: &str) -> bool {
    let Ok(parsed) = authority::parse(value) else {
        return false;
    };
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)),
        "{value:?}"
    );
    assert!(parsed.host.same(&parsed.host), "{value:?}");
    if let Host::Name(name) = parsed.host {
        assert!(value.starts_with(name) && !name.is_empty(), "{value:?}");
        assert!(!name.contains([':', '[', ']']), "{value:?}");
    }
    let colons_outside = value
        .rsplit(']')
        .next()
        .unwrap_or(value)
        .matches(':')
        .count();
    assert!(colons_outside <= 1, "{value:?}");
    assert_eq!(parsed.port.is_some(), colons_outside == 1, "{value:?}");
    true
}

/// `query_token`: finding `access_token` in a query string, as text and as hyper hands it
/// over (`http::Uri`). The answer does not depend on ASCII case or on other parameters before
/// or after it (with `&` or `;`), and a literal `access_token=` parameter is always found.
/// Returns whether the input, as UTF-8 text, holds a token (`None`: not UTF-8).
pub fn query_token(data: &[u8]) -> Option<bool> {
    let found = std::str::from_utf8(data).ok().map(check_query);
    let mut target = b"/api/v1/mcp/x/mcp?".to_vec();
    target.extend_from_slice(data);
    if let Ok(uri) = Uri::try_from(target)
        && let Some(query) = uri.query()
    {
        check_query(query);
    }
    found
}

fn check_query(query: &str) -> bool {
    let found = has_access_token(query);
    let upper = query.to_ascii_uppercase();
    assert_eq!(found, has_access_token(&upper), "{query:?}");
    assert_eq!(
        found,
        has_access_token(&format!("a=1&{query}")),
        "{query:?}"
    );
    assert_eq!(
        found,
        has_access_token(&format!("{query};b=2")),
        "{query:?}"
    );
    assert!(
        has_access_token(&format!("{query}&access_token=x")),
        "{query:?}"
    );
    assert!(
        has_access_token(&format!("{query};ACCESS%5FTOKEN")),
        "{query:?}"
    );
    found
}

/// Headers no server ever receives from a client.
const NEVER_FORWARDED: [&str; 10] = [
    "authorization",
    "host",
    "connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "trailer",
];

/// `header_filter`: the input as header lines `name: value` (the first byte picks a trusted
/// peer or not, and IPv4 or IPv6). After `filter_request` and `set_forwarding`, no header name
/// has `_`, none is `X-MCP-*`, `Authorization`, `Host` or hop-by-hop, and the forwarding
/// headers end with what the gateway set; from an untrusted peer they are exactly its own.
pub fn header_filter(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let trusted = first & 1 == 1;
    let mut map = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    let host = HeaderValue::from_static("localhost:8080");
    let peer: std::net::IpAddr = if first & 2 == 0 {
        "192.0.2.7".parse().expect("an IPv4 address")
    } else {
        "2001:db8::7".parse().expect("an IPv6 address")
    };
    headers::filter_request(&mut map, trusted);
    headers::set_forwarding(
        &mut map,
        &Forwarding {
            peer,
            host: Some(&host),
            proto: "https",
            trusted_peer: trusted,
        },
    );
    for name in map.keys() {
        let name = name.as_str();
        assert!(!name.contains('_'), "{name}");
        assert!(!name.starts_with("x-mcp-"), "{name}");
        assert!(!NEVER_FORWARDED.contains(&name), "{name}");
    }
    let get = |name: &str| map.get(name).map(|v| v.as_bytes().to_vec());
    let ip = peer.to_string();
    assert!(get("x-forwarded-for").unwrap().ends_with(ip.as_bytes()));
    assert!(
        get("forwarded")
            .unwrap()
            .ends_with(b";host=\"localhost:8080\";proto=https")
    );
    assert_eq!(map.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(map.get_all("forwarded").iter().count(), 1);
    if !trusted {
        assert_eq!(get("x-forwarded-for").unwrap(), ip.as_bytes());
        assert_eq!(get("x-forwarded-host").unwrap(), b"localhost:8080");
        assert_eq!(get("x-forwarded-proto").unwrap(), b"https");
        assert!(get("x-real-ip").is_none());
        for name in map.keys() {
            let name = name.as_str();
            assert!(
                !name.starts_with("x-forwarded-")
                    || ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"].contains(&name),
                "{name}"
            );
        }
    }
}

/// The environment `config_load` parses in.
pub fn config_env() -> Env {
    Env {
        vars: [("HOME".to_owned(), "/home/fuzz".to_owned())].into(),
        cwd: PathBuf::from("/fuzz"),
        exe_dir: Some(PathBuf::from("/opt/mcpd/bin")),
        uid: 1000,
    }
}

/// The binary resolver of `config_load`: names starting with `x` are not found.
pub fn config_resolver(binary: &str, _: &[PathBuf], _: &Env) -> Result<PathBuf, String> {
    if binary.starts_with('x') {
        Err("not found".to_owned())
    } else {
        Ok(Path::new("/opt/mcpd/bin").join(binary))
    }
}

/// `config_load`: the input read both as a daemon file and as a server file (against the
/// default daemon configuration). Either may fail, with located errors; neither may panic,
/// and every server that loads has a valid name.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = config_env();
    if let Err(errors) = config::parse_daemon_str(Path::new("/fuzz/mcpd.yaml"), text, &env) {
        assert!(!errors.is_empty());
        for error in &errors {
            assert!(!error.to_string().is_empty());
        }
    }
    let daemon = config::load_daemon_in(None, &env).expect("built-in defaults are valid");
    let file = Path::new("/fuzz/mcp/fuzz.yaml");
    match config::parse_server_file_str(file, text, &daemon, &env, &config_resolver) {
        Ok(servers) => {
            for server in &servers {
                assert!(valid_server_name(&server.name), "{}", server.name);
            }
        }
        Err(errors) => {
            for error in &errors {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

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
/// and the 2026-07-28 headers pass exactly when they agree with the body. Returns whether the
/// body was accepted.
pub fn envelope(data: &[u8]) -> bool {
    let (head, body) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&[][..], data),
    };
    let headers = header_lines(head);
    let parsed = envelope::parse(body);
    let value = serde_json::from_slice::<Value>(body).ok();
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
/// data and keeps its other fields.
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
