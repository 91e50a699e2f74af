//! How many allocations the gateway makes per proxied `tools/call` on its own thread, counted
//! with the test allocator (`crate::alloc_count`) over real sockets and bounded, so a
//! regression on the hot path shows as a failing count rather than a slower bench.
//!
//! The gateway runs on the test's thread (a current-thread runtime); the client and the
//! upstream server are plain blocking sockets on threads of their own, so only the gateway's
//! allocations are counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prometheus_client::metrics::counter::Counter;

use super::support::{Gateway, daemon_config, directory, no_oauth, server_config, status};
use crate::alloc_count::allocations;
use crate::audit::AuditLog;
use crate::authz::{ToolPattern, ToolRule};
use crate::config::test_builder::oauth;
use crate::config::{AuthConfig, KeySource};
use crate::directory::ServerState;
use crate::gateway::{Authenticator, GatewayContext, GatewayOptions};

const WARM_UP: usize = 50;
const REQUESTS: u64 = 400;

const CALL: &str = r#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
const JSON_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 95\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"isError\":false}}";
const SSE_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n76\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"isError\":false}}\n\n\r\n0\r\n\r\n";

/// Most allocations the gateway's thread may make per proxied call (JSON or SSE answer, no
/// token, no audit): 2 measured (27 before the per-request timer went, 8 with hyper on
/// both sides). One is the hand HTTP/1.1 server's (`gateway/h1`: its read buffer, shared
/// with the request's head and body), one ours (the envelope's method); the request's header
/// map is the previous response's, the upstream side allocates nothing per call (the
/// response's fields share the upstream connection's read buffer), and the upstream target,
/// `X-Forwarded-For`, `Forwarded` and `Host` come from the worker's memo
/// (`gateway/head_memo.rs`). Plus a margin of two.
const MAX_PER_CALL: u64 = 4;
/// What JWT (a cached token), per-tool rules and the audit record may add to a call: 2
/// measured, both the audit record's (its tool name and request id in one allocation, the tap
/// boxed on the response body; a single call is held inline in the tap, no list); the token
/// and the rules add none. Plus a margin of one.
const MAX_ADDED_BY_AUTHZ: u64 = 3;

const HS_SECRET: &str = "a-secret-for-the-allocation-count-test";

/// JWT with per-tool rules and the audit log on, as the bench's `mcpd+authz`; `None`: all off.
struct Authz {
    auth: AuthConfig,
    token: String,
    logs: crate::config::LogsConfig,
}

fn authz(dir: &std::path::Path) -> Authz {
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, HS_SECRET).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "alice", "aud": "mcp", "scope": "user", "client_id": "cli",
        "iat": now, "exp": now + 3600,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    Authz {
        auth: AuthConfig {
            issuer: None,
            authorization_servers: Vec::new(),
            keys: vec![KeySource::Hs256SecretFile(secret)],
            leeway: Duration::from_secs(2),
        },
        token,
        logs: crate::config::LogsConfig {
            dir: dir.join("logs"),
            rotation: crate::config::Rotation::Never,
            keep: 1,
            buffer_lines: 10,
            audit: true,
        },
    }
}

/// A blocking HTTP/1.1 server answering every request on a connection with `answer`.
fn upstream(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_upstream(stream, answer));
        }
    });
    port
}

fn serve_upstream(stream: TcpStream, answer: &'static [u8]) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() || writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// Reads one response to its end: a Content-Length body or a chunked one.
fn read_response(reader: &mut BufReader<TcpStream>, line: &mut String, body: &mut Vec<u8>) {
    let mut length = None;
    let mut chunked = false;
    line.clear();
    reader.read_line(line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        reader.read_line(line).unwrap();
        if line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().unwrap());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            body.resize(size + 2, 0);
            reader.read_exact(body).unwrap();
            if size == 0 {
                return;
            }
        }
    }
    body.resize(length.expect("a framed answer"), 0);
    reader.read_exact(body).unwrap();
}

/// Allocations on the gateway's thread over `REQUESTS` calls on one kept connection.
async fn count(answer: &'static [u8], with_authz: bool) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let authz = with_authz.then(|| authz(dir.path()));
    let auth = authz.as_ref().map(|a| a.auth.clone()).unwrap_or_default();
    let config = daemon_config(dir.path(), auth);
    let port = upstream(answer);
    let policy = match &authz {
        Some(_) => {
            let mut policy = oauth(&["user", "tools:read", "tools:write"]);
            policy.tools = vec![
                ToolRule {
                    pattern: ToolPattern::parse("delete_*").unwrap(),
                    scopes: vec!["admin".into()],
                },
                ToolRule {
                    pattern: ToolPattern::parse("*").unwrap(),
                    scopes: vec!["tools:write".into(), "user".into()],
                },
            ];
            policy
        }
        None => no_oauth(),
    };
    let server = server_config(&config, "echo", "/mcp", policy);
    let directory = directory(vec![(server, status(ServerState::Running, Some(port)))]);
    let keys = Authenticator::load(&config.auth).expect("test keys load");
    let mut ctx =
        GatewayContext::from_parts(directory, config, keys, GatewayOptions::default(), None);
    let audit = authz
        .as_ref()
        .map(|a| AuditLog::new(&a.logs, Counter::default()));
    if let Some(audit) = &audit {
        ctx = ctx.with_audit(audit.clone());
    }
    let gateway = Gateway::start_with(ctx).await;
    let addr = gateway.addr;
    let authorization = authz
        .as_ref()
        .map(|a| format!("authorization: Bearer {}\r\n", a.token))
        .unwrap_or_default();

    let (warm_tx, warm_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let client = std::thread::spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let request = format!(
            "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\n{authorization}content-length: {}\r\n\r\n{CALL}",
            CALL.len()
        );
        let (mut line, mut body) = (String::new(), Vec::new());
        let mut call = || {
            writer.write_all(request.as_bytes()).unwrap();
            read_response(&mut reader, &mut line, &mut body);
        };
        for _ in 0..WARM_UP {
            call();
        }
        warm_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        for _ in 0..REQUESTS {
            call();
        }
        done_tx.send(()).unwrap();
    });
    warm_rx.await.unwrap();
    let before = allocations();
    go_tx.send(()).unwrap();
    done_rx.await.unwrap();
    let made = allocations() - before;
    client.join().unwrap();
    if let (Some(audit), Some(authz)) = (&audit, &authz) {
        // Every call was audited, none dropped.
        audit.flush(Duration::from_secs(10)).await;
        assert_eq!(audit.dropped(), 0);
        let written = std::fs::read_to_string(authz.logs.dir.join("audit.log")).unwrap();
        assert_eq!(written.lines().count(), WARM_UP + REQUESTS as usize);
    }
    made
}

#[tokio::test]
async fn a_proxied_call_makes_a_bounded_number_of_allocations() {
    for (what, answer) in [("JSON", JSON_ANSWER), ("SSE", SSE_ANSWER)] {
        let made = count(answer, false).await;
        let per_call = made as f64 / REQUESTS as f64;
        eprintln!("{what}: {per_call:.1} allocations per call");
        assert!(
            made <= MAX_PER_CALL * REQUESTS,
            "{what}: {made} allocations over {REQUESTS} calls ({per_call:.1} a call, at most \
             {MAX_PER_CALL} allowed)"
        );
    }
}

#[tokio::test]
async fn jwt_rules_and_audit_add_a_bounded_number_of_allocations() {
    for (what, answer) in [("JSON", JSON_ANSWER), ("SSE", SSE_ANSWER)] {
        let off = count(answer, false).await;
        let on = count(answer, true).await;
        let added = on.saturating_sub(off) as f64 / REQUESTS as f64;
        eprintln!("{what}: JWT + rules + audit add {added:.2} allocations per call");
        assert!(
            on <= off + MAX_ADDED_BY_AUTHZ * REQUESTS,
            "{what}: JWT + rules + audit added {added:.2} allocations a call, at most \
             {MAX_ADDED_BY_AUTHZ} allowed"
        );
    }
}
