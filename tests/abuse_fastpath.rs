//! HTTP/1.1 framing abuse against the real `mcpd`'s client connections: request smuggling
//! (Content-Length with Transfer-Encoding, conflicting lengths, a Transfer-Encoding that is
//! not chunked), obs-fold, bare CR, invalid header names and values, a chunk size that
//! overflows, oversize heads and targets, a body over `gateway.max_body`, and slow heads on a
//! kept connection (the per-connection deadline). Whatever parses the gateway's HTTP/1.1 is
//! held to these. Each hostile request carries a second request behind it: unless the
//! hostile one was well framed (only too large), it must never be answered. Results are
//! summarised in tests/RELIABILITY.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mcpd_tests::rel_support::{
    Daemon, PATIENCE, Setup, echo_daemon, raw_request, status_code, wait_closed,
};

/// An MCP `initialize`: the normal request a client makes first.
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"abuse","version":"1"}}}"#;

/// The request smuggled behind each hostile one: answered, it would show a second status line.
const SMUGGLED: &str = "GET /api/v1/mcp/smuggled/mcp HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A daemon with the server `echo`, and `gateway` keys added to its `gateway:` block.
fn daemon(gateway: &str) -> (Setup, Daemon) {
    let (setup, daemon) = echo_daemon(gateway);
    assert_eq!(status_code(&post(setup.gateway_port, "")), 200);
    (setup, daemon)
}

/// A POST of `INIT` to `echo` with `extra` header lines, answered and closed.
fn post(port: u16, extra: &str) -> String {
    let request = format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{INIT}",
        INIT.len()
    );
    raw_request(port, &request).expect("an answer")
}

/// Sends `head` (and `body`) then the smuggled request on one connection; returns what came
/// back before the gateway closed it (or 5 s passed).
fn hostile(port: u16, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(SMUGGLED.as_bytes());
    // The gateway may close before it has read everything: a failed write is an answer too.
    let _ = stream.write_all(&bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// How many responses `answer` holds.
fn responses(answer: &str) -> usize {
    answer.matches("HTTP/1.1 ").count()
}

fn post_head(extra: &str) -> String {
    format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{extra}\r\n"
    )
}

fn chunked(body: &str) -> Vec<u8> {
    format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes()
}

#[test]
fn smuggling_and_malformed_heads_are_refused_and_nothing_behind_them_is_answered() {
    let (setup, _daemon) = daemon("max_body: 4KiB");
    let port = setup.gateway_port;
    let length = format!("Content-Length: {}\r\n", INIT.len());
    // (what, head, body, the one status allowed; None: a refusal or a close, never a 2xx)
    let cases: Vec<(&str, String, Vec<u8>, Option<u16>)> = vec![
        (
            "Content-Length and chunked: chunked wins, the connection then closes",
            post_head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
            chunked(INIT),
            Some(200),
        ),
        (
            "two different Content-Lengths",
            post_head(&format!("{length}Content-Length: 3\r\n")),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a list of Content-Lengths",
            post_head(&format!("Content-Length: {0}, {0}0\r\n", INIT.len())),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a signed Content-Length",
            post_head(&format!("Content-Length: +{}\r\n", INIT.len())),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a Transfer-Encoding that does not end in chunked",
            post_head("Transfer-Encoding: chunked, gzip\r\n"),
            chunked(INIT),
            Some(400),
        ),
        (
            "obs-fold",
            post_head(&format!("{length}X-Folded: a\r\n b\r\n")),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a bare CR in a value",
            post_head(&format!("{length}X-Bare: a\rb\r\n")),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a space before the colon",
            post_head(&format!("Content-Length : {}\r\n", INIT.len())),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a control character in a name",
            post_head(&format!("{length}X-\u{1}Name: a\r\n")),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a NUL in a value",
            post_head(&format!("{length}X-Nul: a\u{0}b\r\n")),
            INIT.as_bytes().to_vec(),
            Some(400),
        ),
        (
            "a chunk size that overflows 64 bits",
            post_head("Transfer-Encoding: chunked\r\n"),
            b"1ffffffffffffffff\r\nx\r\n0\r\n\r\n".to_vec(),
            None,
        ),
        (
            "a body over gateway.max_body",
            post_head("Content-Length: 5000\r\n"),
            vec![b'x'; 5000],
            Some(413),
        ),
        (
            "a head over 64 KiB",
            post_head(&format!("{length}X-Big: {}\r\n", "a".repeat(70 * 1024))),
            INIT.as_bytes().to_vec(),
            Some(431),
        ),
        (
            "a target over 8 KiB",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "a".repeat(9 * 1024)
            ),
            Vec::new(),
            Some(414),
        ),
    ];
    for (what, head, body, allowed) in cases {
        let answer = hostile(port, &head, &body);
        // A refusal the gateway writes itself after a well-framed request (413, 414, 431) keeps
        // the connection: what follows is then a request of its own, rightly answered.
        let framed = matches!(allowed, Some(413 | 414 | 431));
        assert!(
            framed || (responses(&answer) <= 1 && !answer.contains("unknown server")),
            "{what}: the request behind it was answered: {answer:?}"
        );
        match allowed {
            Some(status) => assert_eq!(status_code(&answer), status, "{what}: {answer:?}"),
            None => assert!(
                answer.is_empty() || status_code(&answer) >= 400,
                "{what}: {answer:?}"
            ),
        }
    }
    assert_eq!(
        status_code(&post(port, "")),
        200,
        "the gateway keeps serving"
    );
}

/// Reads one answer with a Content-Length body from a kept connection.
fn read_answer(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a Content-Length");
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).expect("an answer");
        assert!(n > 0, "closed before the answer was whole: {text:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_kept_connection_that_starts_a_head_and_stalls_is_closed_at_the_header_deadline() {
    // The idle timeout is long: only the header deadline can close these.
    let (setup, _daemon) = daemon("header_timeout: 1s, idle_timeout: 1h");
    let port = setup.gateway_port;
    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held = Vec::new();
    for (what, next) in [
        ("half a second head", "GET /healthz HTTP/1.1\r\nHost: loc"),
        ("nothing after the first answer", ""),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(healthz.as_bytes()).expect("write");
        assert_eq!(status_code(&read_answer(&mut stream)), 200);
        stream.write_all(next.as_bytes()).expect("write");
        held.push((what, stream));
    }
    // A slowloris: a byte of a head now and then; bytes of a head that never ends are not
    // progress.
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    trickle.write_all(healthz.as_bytes()).expect("write");
    assert_eq!(status_code(&read_answer(&mut trickle)), 200);
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        assert!(
            started.elapsed() < PATIENCE * 2,
            "a trickled head kept its connection open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed);
    for (what, stream) in &mut held {
        wait_closed(stream, what);
    }
    // A connection that keeps asking is served all along.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for _ in 0..3 {
        stream.write_all(healthz.as_bytes()).expect("write");
        assert_eq!(status_code(&read_answer(&mut stream)), 200);
    }
}
