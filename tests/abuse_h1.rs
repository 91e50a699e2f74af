//! The gateway's hand HTTP/1.1 path (`daemon/src/gateway/h1`) against hostile and odd clients
//! over real sockets: pipelining across the hand-over to hyper, bodies and heads in tiny
//! pieces, short and slow bodies, a client that never reads, HEAD, `Connection: close`,
//! HTTP/1.0, `Expect: 100-continue`, `Upgrade`, bad header bytes, two Hosts, head size and
//! header count limits. Each case checks the answer, that nothing behind a refused request is
//! answered, and that the daemon keeps serving. Results are summarised in
//! tests/RELIABILITY.md.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use mcpd_tests::rel_support::{
    Daemon, PATIENCE, Setup, echo_daemon, raw_request, status_code, wait_closed,
};

/// A daemon with the server `echo`, and `gateway` keys added to its `gateway:` block.
fn daemon(gateway: &str) -> (Setup, Daemon) {
    let (setup, daemon) = echo_daemon(gateway);
    assert_serving(setup.gateway_port);
    (setup, daemon)
}

/// An MCP `initialize` with id `id`.
fn init(id: u32) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"abuse-h1","version":"1"}}}}}}"#
    )
}

/// A POST of `body` to `echo` with `extra` header lines (each ending in CRLF).
fn post(body: &str, extra: &str) -> String {
    format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A 2026-07-28 `tools/call` of mcp-echo's `echo` with `text`, needing no session.
fn echo_call(id: u32, text: &str) -> String {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},"_meta":{{"io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"abuse-h1","version":"0"}},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    );
    post(
        &body,
        "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n",
    )
}

fn healthz(extra: &str) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

/// A request answered on a fresh connection: the daemon keeps serving.
fn assert_serving(port: u16) {
    let answer = raw_request(port, &post(&init(1), "Connection: close\r\n")).expect("an answer");
    assert_eq!(status_code(&answer), 200, "{answer}");
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// One response read from `reader`: status, head (lowercased), body. `bodiless`: the request
/// was HEAD.
fn response(reader: &mut BufReader<TcpStream>, bodiless: bool) -> (u16, String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read a head line");
        assert!(n > 0, "closed inside a head: {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = status_code(&head);
    let lower = head.to_ascii_lowercase();
    let header = |name: &str| {
        lower
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let mut body = Vec::new();
    if bodiless || status == 204 || status == 304 || (100..200).contains(&status) {
        return (status, lower, body);
    }
    if let Some(length) = header("content-length") {
        body.resize(length.trim().parse().expect("a length"), 0);
        reader.read_exact(&mut body).expect("the body");
    } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("a chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("a chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body).expect("a body to the close");
    }
    (status, lower, body)
}

fn has_id(body: &[u8], id: u32) -> bool {
    String::from_utf8_lossy(body).contains(&format!("\"id\":{id}"))
}

#[test]
fn pipelined_requests_across_the_hand_over_to_hyper_are_answered_in_order() {
    let (setup, _daemon) = daemon("");
    let port = setup.gateway_port;
    let mut stream = connect(port);
    let chunked_body = init(3);
    let chunked = format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunked_body}\r\n0\r\n\r\n",
        chunked_body.len()
    );
    // Fast, fast, one hyper takes (chunked), then one more (hyper's now), all in one write.
    let all = [
        post(&init(1), ""),
        healthz(""),
        chunked,
        post(&init(4), "Connection: close\r\n"),
    ]
    .concat();
    stream.write_all(all.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let (status, _, body) = response(&mut reader, false);
    assert!(status == 200 && has_id(&body, 1), "first: {status}");
    let (status, _, _) = response(&mut reader, false);
    assert_eq!(status, 200, "healthz");
    let (status, _, body) = response(&mut reader, false);
    assert!(status == 200 && has_id(&body, 3), "chunked: {status}");
    let (status, head, body) = response(&mut reader, false);
    assert!(status == 200 && has_id(&body, 4), "last: {status}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the last answer: {rest:?}");
    assert_serving(port);
}

#[test]
fn a_head_and_a_body_in_one_byte_segments_are_answered() {
    let (setup, _daemon) = daemon("");
    let port = setup.gateway_port;
    let mut stream = connect(port);
    for byte in post(&init(7), "").bytes() {
        stream.write_all(&[byte]).expect("write a byte");
    }
    let mut reader = BufReader::new(stream);
    let (status, _, body) = response(&mut reader, false);
    assert!(status == 200 && has_id(&body, 7), "{status}");
    // The same connection goes on.
    reader
        .get_mut()
        .write_all(healthz("").as_bytes())
        .expect("write");
    assert_eq!(response(&mut reader, false).0, 200);
}

#[test]
fn a_body_shorter_than_its_length_then_a_close_is_never_answered() {
    let (setup, _daemon) = daemon("");
    let port = setup.gateway_port;
    let mut stream = connect(port);
    let request = post(&init(1), "");
    let cut = request.len() - 10;
    let request = request.replacen(
        &format!("Content-Length: {}", init(1).len()),
        &format!("Content-Length: {}", init(1).len() + 1000),
        1,
    );
    stream
        .write_all(&request.as_bytes()[..cut + 4])
        .expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half close");
    let answer = wait_closed(&mut stream, "a short body");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert_serving(port);
}

#[test]
fn a_stalled_body_and_a_client_that_never_reads_are_closed_at_the_body_idle_timeout() {
    let (setup, _daemon) = daemon("body_idle_timeout: 1s");
    let port = setup.gateway_port;

    // A body that stops after ten bytes.
    let mut stalled = connect(port);
    let request = post(&init(1), "");
    let head_end = request.find("\r\n\r\n").expect("head") + 4;
    stalled
        .write_all(&request.as_bytes()[..head_end + 10])
        .expect("write");
    let answer = wait_closed(&mut stalled, "a stalled body");
    assert!(
        answer.is_empty() || status_code(&String::from_utf8_lossy(&answer)) >= 400,
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Large answers the client never reads: once every buffer on the way is full, writes
    // stand still and the gateway closes; then the client's own writes fail.
    let mut deaf = connect(port);
    let text = "x".repeat(60 * 1024);
    let call = echo_call(2, &text);
    deaf.set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("timeout");
    let limit = Instant::now() + PATIENCE * 2;
    loop {
        assert!(
            Instant::now() < limit,
            "the connection of a client that never reads stayed open"
        );
        match deaf.write_all(call.as_bytes()) {
            Ok(()) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    assert_serving(port);
}

#[test]
fn head_close_http_1_0_expect_and_upgrade_get_the_answers_hyper_gives() {
    let (setup, _daemon) = daemon("");
    let port = setup.gateway_port;

    // HEAD: a head only; the connection goes on (no stray body bytes in it).
    let mut reader = BufReader::new(connect(port));
    let head = "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    reader.get_mut().write_all(head.as_bytes()).expect("write");
    assert_eq!(response(&mut reader, true).0, 200);
    reader
        .get_mut()
        .write_all(healthz("").as_bytes())
        .expect("write");
    assert_eq!(response(&mut reader, false).0, 200);

    // Connection: close is answered with it, then the connection closes.
    let mut stream = connect(port);
    stream
        .write_all(healthz("Connection: close\r\n").as_bytes())
        .expect("write");
    let answer = String::from_utf8_lossy(&wait_closed(&mut stream, "Connection: close"))
        .to_ascii_lowercase();
    assert_eq!(status_code(&answer), 200, "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");

    // HTTP/1.0 goes to hyper: answered, then closed.
    let mut stream = connect(port);
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let answer = String::from_utf8_lossy(&wait_closed(&mut stream, "HTTP/1.0")).into_owned();
    assert!(answer.starts_with("HTTP/1.0 200 "), "{answer}");

    // Expect: 100-continue goes to hyper: 100 once the body is wanted, then the answer.
    let mut reader = BufReader::new(connect(port));
    let request = post(&init(5), "Expect: 100-continue\r\n");
    let (head, body) = request.split_at(request.find("\r\n\r\n").expect("head") + 4);
    reader.get_mut().write_all(head.as_bytes()).expect("write");
    let (status, _, _) = response(&mut reader, false);
    assert_eq!(status, 100);
    reader.get_mut().write_all(body.as_bytes()).expect("write");
    let (status, _, body) = response(&mut reader, false);
    assert!(status == 200 && has_id(&body, 5), "{status}");

    // An Upgrade the gateway does not take is answered as a plain request, by hyper.
    let mut reader = BufReader::new(connect(port));
    reader
        .get_mut()
        .write_all(healthz("Connection: upgrade\r\nUpgrade: websocket\r\n").as_bytes())
        .expect("write");
    assert_eq!(response(&mut reader, false).0, 200);
    assert_serving(port);
}

/// Sends `head` with a smuggled request behind it; returns everything answered until close.
fn hostile(port: u16, head: &[u8]) -> String {
    let mut stream = connect(port);
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(b"GET /api/v1/mcp/smuggled/mcp HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let _ = stream.write_all(&bytes);
    String::from_utf8_lossy(&wait_closed(&mut stream, "a hostile head")).into_owned()
}

#[test]
fn bad_header_bytes_two_hosts_and_head_limits_are_refused_and_nothing_behind_is_answered() {
    let (setup, _daemon) = daemon("");
    let port = setup.gateway_port;
    let request_line = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a NUL in a value", b"X-Bad: a\0b\r\n\r\n".to_vec(), 400),
        ("a DEL in a value", b"X-Bad: a\x7fb\r\n\r\n".to_vec(), 400),
        ("obs-fold", b"X-Bad: a\r\n b\r\n\r\n".to_vec(), 400),
        (
            "101 headers",
            {
                let mut extra: Vec<u8> = (0..100)
                    .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
                    .collect();
                extra.extend_from_slice(b"\r\n");
                extra
            },
            431,
        ),
    ];
    for (what, extra, status) in cases {
        let mut head = request_line.as_bytes().to_vec();
        head.extend_from_slice(&extra);
        let answer = hostile(port, &head);
        assert_eq!(status_code(&answer), status, "{what}: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{what}: {answer:?}");
    }

    // A bare LF is hyper's to judge (httparse takes it as a line end): the same answer as
    // before the hand path, a 200 for the request as hyper reads it.
    let mut head = request_line.as_bytes().to_vec();
    head.extend_from_slice(b"X-Lf: a\n\r\n");
    let answer = hostile(port, &head);
    assert_eq!(status_code(&answer), 200, "bare LF: {answer:?}");

    // Two Hosts reach the router, which refuses them (400) as it always has.
    let mut reader = BufReader::new(connect(port));
    let request = post(&init(1), "Host: elsewhere\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("write");
    assert_eq!(response(&mut reader, false).0, 400);

    // obs-text in a value is valid: answered.
    let mut reader = BufReader::new(connect(port));
    let mut request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Obs: caf\xe9\r\n\r\n".to_vec();
    request.extend_from_slice(healthz("").as_bytes());
    reader.get_mut().write_all(&request).expect("write");
    assert_eq!(response(&mut reader, false).0, 200);
    assert_eq!(response(&mut reader, false).0, 200);

    // A head of exactly 64 KiB is answered; one byte more is 431, and nothing behind it.
    let sized = |total: usize| {
        let fixed = request_line.len() + "X-Pad: \r\n\r\n".len();
        format!("{request_line}X-Pad: {}\r\n\r\n", "a".repeat(total - fixed)).into_bytes()
    };
    let at = sized(64 * 1024);
    assert_eq!(at.len(), 64 * 1024);
    let mut reader = BufReader::new(connect(port));
    reader.get_mut().write_all(&at).expect("write");
    assert_eq!(response(&mut reader, false).0, 200, "a head of 64 KiB");
    let answer = hostile(port, &sized(64 * 1024 + 1));
    assert_eq!(status_code(&answer), 431, "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
    assert_serving(port);
}
