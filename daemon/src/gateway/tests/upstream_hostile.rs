//! Hostile upstream servers: a raw TCP listener answers the first request with bytes of the
//! test's choosing (then closes, keeps the connection, or trickles them), and every later
//! request with a good answer. Each bad answer gets the gateway's own 502 (or, once the head
//! was passed on, a response the client sees cut off, never a clean end), and the next
//! request gets its own answer: never bytes the bad server left on the connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::support::*;
use crate::config::AuthConfig;
use crate::directory::ServerState;
use crate::gateway::upstream::{Decoder, Framing, H1Error, parse_response_head};
use crate::gateway::{GatewayOptions, MAX_HEAD_BYTES, MAX_HEADERS};

const GOOD_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"from":"good"}}"#;

fn good() -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{GOOD_BODY}",
        GOOD_BODY.len()
    )
}

/// What the server does once it wrote its first answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keeps the connection and answers its next requests well.
    KeepOpen,
    Close,
    /// Writes the first answer one byte at a time (then keeps the connection).
    Trickle,
    /// Once `poke` is notified, writes `late` on the idle connection, then notifies `poked`.
    WriteLate(&'static [u8]),
}

struct RawUpstream {
    port: u16,
    accepted: Arc<AtomicUsize>,
    poke: Arc<Notify>,
    poked: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start(first: Vec<u8>, after: After) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(Mutex::new(Some(first)));
        let (poke, poked) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let counter = accepted.clone();
        let (on_poke, to_poked) = (poke.clone(), poked.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let script = Script {
                    first: first.clone(),
                    after,
                    poke: on_poke.clone(),
                    poked: to_poked.clone(),
                };
                tokio::spawn(script.serve(stream));
            }
        });
        RawUpstream {
            port,
            accepted,
            poke,
            poked,
            task,
        }
    }
}

struct Script {
    first: Arc<Mutex<Option<Vec<u8>>>>,
    after: After,
    poke: Arc<Notify>,
    poked: Arc<Notify>,
}

impl Script {
    async fn serve(self, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        loop {
            if !read_request(&mut stream).await {
                return;
            }
            let first = self.first.lock().unwrap().take();
            let Some(answer) = first else {
                if stream.write_all(good().as_bytes()).await.is_err() {
                    return;
                }
                continue;
            };
            let written = match self.after {
                After::Trickle => {
                    let mut result = Ok(());
                    for byte in &answer {
                        result = stream.write_all(std::slice::from_ref(byte)).await;
                        if result.is_err() {
                            break;
                        }
                        let _ = stream.flush().await;
                    }
                    result
                }
                _ => stream.write_all(&answer).await,
            };
            if written.is_err() || self.after == After::Close {
                return;
            }
            if let After::WriteLate(late) = self.after {
                self.poke.notified().await;
                let _ = stream.write_all(late).await;
                self.poked.notify_one();
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body); false at the end of the stream.
async fn read_request(stream: &mut BufReader<TcpStream>) -> bool {
    let mut length = 0;
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.is_ok()
}

async fn gateway_to(port: u16, options: GatewayOptions) -> (TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), AuthConfig::default());
    let servers = vec![(
        server_config(&config, "echo", "/echo", no_oauth()),
        status(ServerState::Running, Some(port)),
    )];
    let gateway = Gateway::start(directory(servers), config, options).await;
    (dir, gateway)
}

/// A JSON-RPC ping through the gateway: the status and the whole body, or why the exchange
/// broke (the connection closed before or inside the response).
async fn try_call(gateway: &Gateway) -> Result<(StatusCode, Bytes), String> {
    let request = Request::post(gateway.url("/api/v1/mcp/echo/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(ping())
        .unwrap();
    let response = tokio::time::timeout(WAIT, client().request(request))
        .await
        .expect("the gateway answers in time")
        .map_err(|err| err.to_string())?;
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("the body ends in time")
        .map_err(|err| err.to_string())?;
    Ok((parts.status, bytes.to_bytes()))
}

/// A call whose exchange must not break.
async fn call(gateway: &Gateway) -> (StatusCode, Bytes) {
    try_call(gateway).await.expect("a whole answer")
}

/// The gateway and a server whose first answer is `first`.
async fn hostile(first: &[u8], after: After) -> (RawUpstream, TempDir, Gateway) {
    let upstream = RawUpstream::start(first.to_vec(), after).await;
    let (dir, gateway) = gateway_to(upstream.port, GatewayOptions::default()).await;
    (upstream, dir, gateway)
}

/// The next call gets the good answer (its own, not leftovers of the bad one).
async fn next_is_served(gateway: &Gateway) {
    let (status, body) = call(gateway).await;
    assert_ok(status, &body);
    assert_eq!(body, GOOD_BODY.as_bytes());
}

/// `first` (`what`) is refused with the gateway's 502, and the gateway serves the next call.
async fn refused(what: &str, first: &[u8], after: After) {
    let (upstream, _dir, gateway) = hostile(first, after).await;
    let (status, body) = call(&gateway).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "{what}: {}",
        String::from_utf8_lossy(&body)
    );
    let answer = json(&body);
    assert_eq!(answer["error"], "upstream request failed", "{what}");
    assert_eq!(answer["server"], "echo", "{what}");
    next_is_served(&gateway).await;
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        2,
        "{what}: a new connection"
    );
}

/// The head of `first` was passed on, its body broke: the client sees the body fail (or the
/// gateway's 502), never a clean end; the gateway serves the next call on a new connection.
async fn cut_off(what: &str, first: &[u8], after: After) {
    let (upstream, _dir, gateway) = hostile(first, after).await;
    let answer = try_call(&gateway).await;
    assert!(
        matches!(answer, Err(_) | Ok((StatusCode::BAD_GATEWAY, _))),
        "{what}: a broken body reached the client as a whole one: {answer:?}"
    );
    next_is_served(&gateway).await;
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        2,
        "{what}: a new connection"
    );
}

const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";

fn with(headers: &str, body: &str) -> Vec<u8> {
    format!("{HEAD}{headers}\r\n{body}").into_bytes()
}

#[tokio::test]
async fn transfer_encoding_beats_content_length_and_the_connection_is_not_reused() {
    let first = with(
        "content-length: 3\r\ntransfer-encoding: chunked\r\n",
        &format!("{:x}\r\n{GOOD_BODY}\r\n0\r\n\r\n", GOOD_BODY.len()),
    );
    let (upstream, _dir, gateway) = hostile(&first, After::KeepOpen).await;
    let (status, body) = call(&gateway).await;
    assert_ok(status, &body);
    assert_eq!(body, GOOD_BODY.as_bytes());
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_answers_are_refused_with_a_502_and_the_next_call_is_served() {
    let long = "x".repeat(MAX_HEAD_BYTES);
    let fields: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    let mut cases: Vec<(String, Vec<u8>, After)> = vec![
        (
            "content lengths that differ".into(),
            with("content-length: 2\r\ncontent-length: 3\r\n", "{}"),
            After::KeepOpen,
        ),
        (
            "a head over the limit".into(),
            with(&format!("x-long: {long}\r\n"), ""),
            After::KeepOpen,
        ),
        ("too many header fields".into(), with(&fields, ""), After::KeepOpen),
        (
            "a bare LF in the status line".into(),
            b"HTTP/1.1 200 OK\ncontent-length: 2\r\n\r\n{}".to_vec(),
            After::KeepOpen,
        ),
        (
            "a bare LF ending the head".into(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\n\n{}".to_vec(),
            After::KeepOpen,
        ),
        (
            "an obs-fold".into(),
            with("x-folded: one\r\n two\r\ncontent-length: 2\r\n", "{}"),
            After::KeepOpen,
        ),
        (
            "a NUL in a value".into(),
            with("x-nul: a\0b\r\ncontent-length: 2\r\n", "{}"),
            After::KeepOpen,
        ),
        (
            "an unasked-for protocol switch".into(),
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
                .to_vec(),
            After::KeepOpen,
        ),
        (
            "a close inside the head".into(),
            b"HTTP/1.1 200 OK\r\ncontent-le".to_vec(),
            After::Close,
        ),
        ("a close before any answer".into(), Vec::new(), After::Close),
    ];
    for length in ["+2", "2 2", "-2", "0x2", "2,2", "99999999999999999999999"] {
        cases.push((
            format!("content-length: {length}"),
            with(&format!("content-length: {length}\r\n"), "{}"),
            After::KeepOpen,
        ));
    }
    for coding in ["gzip", "chunked, gzip", "chunked, chunked", "gzip, chunked"] {
        cases.push((
            format!("transfer-encoding: {coding}"),
            with(
                &format!("transfer-encoding: {coding}\r\n"),
                "2\r\n{}\r\n0\r\n\r\n",
            ),
            After::KeepOpen,
        ));
    }
    for line in [
        "HTTP/1.1 2000 OK",
        "HTTP/2.0 200 OK",
        "ICY 200 OK",
        "HTTP/1.1 099 Low",
    ] {
        cases.push((
            format!("status line {line:?}"),
            format!("{line}\r\ncontent-length: 2\r\n\r\n{{}}").into_bytes(),
            After::KeepOpen,
        ));
    }
    for (what, first, after) in cases {
        refused(&what, &first, after).await;
    }
}

#[tokio::test]
async fn broken_bodies_are_cut_off_and_the_next_call_is_served() {
    for (what, first, after) in [
        (
            "a chunk size that overflows",
            with("transfer-encoding: chunked\r\n", "ffffffffffffffffff\r\n{}"),
            After::KeepOpen,
        ),
        (
            "a chunk without its CRLF",
            with("transfer-encoding: chunked\r\n", "2\r\n{}XX0\r\n\r\n"),
            After::KeepOpen,
        ),
        (
            "a missing last chunk, then a close",
            with("transfer-encoding: chunked\r\n", "2\r\n{}\r\n"),
            After::Close,
        ),
        (
            "a close inside the body",
            with("content-length: 100\r\n", "{\"partial\":"),
            After::Close,
        ),
    ] {
        cut_off(what, &first, after).await;
    }
}

#[tokio::test]
async fn bytes_after_a_complete_body_never_answer_the_next_request() {
    let injected = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n\"injected\"";
    let first = with(
        &format!("content-length: {}\r\n", GOOD_BODY.len()),
        &format!("{GOOD_BODY}{injected}"),
    );
    let (upstream, _dir, gateway) = hostile(&first, After::KeepOpen).await;
    let (status, body) = call(&gateway).await;
    assert_ok(status, &body);
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_sent_on_an_idle_connection_close_it() {
    let injected = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n\"injected\"";
    let (upstream, _dir, gateway) = hostile(good().as_bytes(), After::WriteLate(injected)).await;
    let (status, body) = call(&gateway).await;
    assert_ok(status, &body);
    let poked = upstream.poked.notified();
    upstream.poke.notify_one();
    poked.await;
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

/// `first` is read as one good answer: two calls are served on the one connection.
async fn served_twice_on_one_connection(first: &[u8], after: After) {
    let (upstream, _dir, gateway) = hostile(first, after).await;
    next_is_served(&gateway).await;
    next_is_served(&gateway).await;
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        1,
        "the connection is reused"
    );
}

#[tokio::test]
async fn a_100_continue_is_skipped() {
    let mut first =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n".to_vec();
    first.extend_from_slice(good().as_bytes());
    served_twice_on_one_connection(&first, After::KeepOpen).await;
}

#[tokio::test]
async fn a_head_trickled_one_byte_at_a_time_is_read() {
    served_twice_on_one_connection(good().as_bytes(), After::Trickle).await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let upstream = RawUpstream::start(Vec::new(), After::KeepOpen).await;
    let options = GatewayOptions {
        upstream_header_timeout: Duration::from_millis(300),
        ..GatewayOptions::default()
    };
    let (_dir, gateway) = gateway_to(upstream.port, options).await;
    let (status, body) = call(&gateway).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(&body)["error"], "upstream did not answer in time");
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

/// A kept connection carries one response-head timer from request to request: moved to each
/// request's deadline, it cuts neither a request after the connection sat idle past the
/// timeout (the timer ran out meanwhile) nor quick answers, and still cuts a late one.
#[tokio::test]
async fn the_kept_connection_s_timer_cuts_only_a_late_answer() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    const ANSWERED: usize = 3;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut requests = 0;
                while read_request(&mut stream).await {
                    requests += 1;
                    if requests <= ANSWERED && stream.write_all(good().as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let options = GatewayOptions {
        upstream_header_timeout: TIMEOUT,
        ..GatewayOptions::default()
    };
    let (_dir, gateway) = gateway_to(port, options).await;
    next_is_served(&gateway).await;
    // The condition under test is the passing of the timeout while the connection is idle.
    tokio::time::sleep(TIMEOUT * 2).await;
    next_is_served(&gateway).await;
    next_is_served(&gateway).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one kept connection");
    let (status, body) = call(&gateway).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(&body)["error"], "upstream did not answer in time");
    server.abort();
}

#[tokio::test]
async fn a_204_or_304_with_a_content_length_has_no_body() {
    for status_line in ["HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"] {
        let first = format!("{status_line}\r\ncontent-length: 7\r\n\r\n");
        let (upstream, _dir, gateway) = hostile(first.as_bytes(), After::KeepOpen).await;
        let (status, body) = call(&gateway).await;
        assert_eq!(status.as_str(), &status_line[9..12]);
        assert!(body.is_empty());
        next_is_served(&gateway).await;
        assert_eq!(
            upstream.accepted.load(Ordering::SeqCst),
            1,
            "the connection is reused"
        );
    }
}

#[tokio::test]
async fn a_body_until_the_close_is_passed_on_and_the_connection_not_reused() {
    let (upstream, _dir, gateway) = hostile(&with("", GOOD_BODY), After::Close).await;
    let (status, body) = call(&gateway).await;
    assert_ok(status, &body);
    assert_eq!(body, GOOD_BODY.as_bytes());
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let first = with(
        &format!(
            "connection: close\r\ncontent-length: {}\r\n",
            GOOD_BODY.len()
        ),
        GOOD_BODY,
    );
    let (upstream, _dir, gateway) = hostile(&first, After::KeepOpen).await;
    next_is_served(&gateway).await;
    next_is_served(&gateway).await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

/// The parser alone, for what the gateway never sends through a route (HEAD) and the exact
/// error of each refusal.
fn parse(bytes: &[u8], head_request: bool) -> Result<Option<(StatusCode, Framing, bool)>, H1Error> {
    let mut buf = BytesMut::from(bytes);
    let head = parse_response_head(&mut buf, head_request, &mut HeaderMap::new())?;
    Ok(head.map(|head| (head.status, head.framing, head.keep_alive)))
}

#[test]
fn a_response_to_head_has_no_body_whatever_it_says() {
    let head = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n", true).unwrap();
    assert_eq!(head, Some((StatusCode::OK, Framing::Empty, true)));
    let head = parse(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .unwrap();
    assert_eq!(head, Some((StatusCode::OK, Framing::Empty, true)));
}

#[test]
fn framing_decisions() {
    let cases: [(&[u8], Framing, bool); 5] = [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            Framing::Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
            Framing::Length(5),
            true,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
        (
            b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
            Framing::Length(5),
            false,
        ),
    ];
    for (bytes, framing, keep_alive) in cases {
        let (_, got, kept) = parse(bytes, false).unwrap().unwrap();
        assert_eq!(
            (got, kept),
            (framing, keep_alive),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(
        parse(b"HTTP/1.1 200 OK\r\ncontent-", false)
            .unwrap()
            .is_none()
    );
}

/// Decodes `body` framed as `framing`, all at once.
fn decode(framing: Framing, body: &[u8]) -> Result<Vec<u8>, H1Error> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::from(body);
    let mut out = Vec::new();
    while let Some(data) = decoder.decode(&mut buf)? {
        out.extend_from_slice(&data);
    }
    if !decoder.is_done() {
        decoder.eof()?;
    }
    Ok(out)
}

#[test]
fn chunked_bodies_are_decoded_strictly() {
    let good = decode(
        Framing::Chunked,
        b"3;ext=1\r\nabc\r\n2 ; q=\"x\"\r\nde\r\n0\r\ntrailer: yes\r\n\r\n",
    );
    assert_eq!(good.unwrap(), b"abcde");
    for bad in [
        &b"ffffffffffffffffff\r\n"[..],
        b"g\r\nabc\r\n0\r\n\r\n",
        b"\r\nabc\r\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\nabcd\r\n0\r\n\r\n",
        b"3x\r\nabc\r\n0\r\n\r\n",
        b"3;\0\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nx: \0\r\n\r\n",
        b"3\r\nabc\r\n",
    ] {
        assert!(
            decode(Framing::Chunked, bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long_line = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(5000));
    assert!(decode(Framing::Chunked, long_line.as_bytes()).is_err());
}

/// Writes `request` on a connection of its own and returns the JSON of a 200 answer.
async fn raw_call(gateway: &Gateway, request: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let (mut length, mut status) = (0, String::new());
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    json(&body)
}

/// A body of `pieces` sent as they come (chunked by the test's client: no length).
fn streamed(pieces: &[&'static str]) -> TestBody {
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = pieces
        .iter()
        .map(|piece| Ok(http_body::Frame::data(Bytes::from_static(piece.as_bytes()))))
        .collect();
    http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed()
}

#[tokio::test]
async fn streamed_request_bodies_go_upstream_whole_chunked_or_with_their_length() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port, GatewayOptions::default()).await;
    for method in ["GET", "DELETE"] {
        // No length (chunked from the client): sent upstream chunked, as it comes.
        let seen = raw_call(
            &gateway,
            &format!(
                "{method} /api/v1/mcp/echo/mcp HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\n\r\n\
                 3\r\nabc\r\n4;x=y\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n",
                gateway.addr
            ),
        )
        .await;
        assert_eq!(seen["method"], method);
        assert_eq!(seen["body_len"], 8, "{seen}");
        assert_eq!(seen["headers"]["transfer-encoding"][0], "chunked");
        // With the client's length: sent with it.
        let request = Request::builder()
            .method(method)
            .uri(gateway.url("/api/v1/mcp/echo/mcp"))
            .header("content-length", "5")
            .body(body("12345"))
            .unwrap();
        let (status, _, bytes) = send(&client(), request).await;
        assert_ok(status, &bytes);
        let seen = json(&bytes);
        assert_eq!(seen["body_len"], 5);
        assert_eq!(seen["headers"]["content-length"][0], "5");
        // Without a body: neither header.
        let request = Request::builder()
            .method(method)
            .uri(gateway.url("/api/v1/mcp/echo/mcp"))
            .body(empty())
            .unwrap();
        let (status, _, bytes) = send(&client(), request).await;
        assert_ok(status, &bytes);
        let seen = json(&bytes);
        assert!(seen["headers"].get("transfer-encoding").is_none(), "{seen}");
        assert!(seen["body_len"] == 0, "{seen}");
    }
    // Over gateway.max_body (1 KiB here) while streaming: 413, and the gateway goes on.
    let big: &'static str = Box::leak("x".repeat(700).into_boxed_str());
    let request = Request::builder()
        .method("DELETE")
        .uri(gateway.url("/api/v1/mcp/echo/mcp"))
        .body(streamed(&[big, big]))
        .unwrap();
    let (status, _, _) = send(&client(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let request = Request::get(gateway.url("/api/v1/mcp/echo/mcp"))
        .body(empty())
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    assert_ok(status, &bytes);
}
