//! Response parsing against well-formed and hostile byte streams, whole and one byte at a time.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::io::{AsyncRead, ReadBuf};

use super::body::MAX_LINE;
use super::head::{MAX_HEAD, MAX_HEADERS};
use super::message::{SNIPPET, snippet};
use super::*;

/// Yields its bytes `step` at a time, then EOF.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = self
            .at
            .saturating_add(self.step)
            .min(self.bytes.len())
            .min(self.at + buf.remaining());
        let at = self.at;
        buf.put_slice(&self.bytes[at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

/// Never yields anything (a server that went quiet).
struct Silent;

impl AsyncRead for Silent {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// `head` (status line and headers, each ending in CRLF), a `Content-Length` for `body`, the
/// blank line and `body`.
fn with_length(head: &str, body: &str) -> String {
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
}

/// A JSON response with the status line `HTTP/1.1 <status>` and a Content-Length.
fn json_response(status: &str, body: &str) -> String {
    with_length(
        &format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"),
        body,
    )
}

#[derive(Debug, Deserialize, PartialEq)]
struct Tools {
    tools: Vec<String>,
}

const LIMIT: usize = 1 << 20;

/// Reads `bytes` whole and one byte at a time; both must agree.
async fn parse<T: DeserializeOwned + std::fmt::Debug>(
    bytes: &[u8],
    id: Option<u64>,
) -> Result<Reply<T>, HttpError> {
    parse_with(bytes, id, LIMIT).await
}

async fn parse_with<T: DeserializeOwned + std::fmt::Debug>(
    bytes: &[u8],
    id: Option<u64>,
    limit: usize,
) -> Result<Reply<T>, HttpError> {
    let mut whole = Trickle {
        bytes: bytes.to_vec(),
        at: 0,
        step: usize::MAX,
    };
    let mut trickle = Trickle {
        bytes: bytes.to_vec(),
        at: 0,
        step: 1,
    };
    let a = read_reply::<_, T>(&mut whole, id, limit, true).await;
    let b = read_reply::<_, T>(&mut trickle, id, limit, true).await;
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "whole vs byte by byte");
    a
}

fn chunked(body: &str, pieces: usize) -> String {
    let mut out = String::new();
    let size = body.len().div_ceil(pieces).max(1);
    for piece in body.as_bytes().chunks(size) {
        out.push_str(&format!("{:x}\r\n", piece.len()));
        out.push_str(std::str::from_utf8(piece).unwrap());
        out.push_str("\r\n");
    }
    out.push_str("0\r\n\r\n");
    out
}

#[tokio::test]
async fn json_body_with_content_length() {
    let body = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":["a","b"]}}"#;
    let raw = json_response("200 OK", body);
    let reply = parse::<Tools>(raw.as_bytes(), Some(7)).await.unwrap();
    assert!(reply.reusable);
    assert!(matches!(reply.outcome, Outcome::Result(Tools { ref tools }) if tools == &["a", "b"]));
}

#[tokio::test]
async fn event_stream_in_chunks_with_priming_and_notifications() {
    let events = concat!(
        "data: \nid: 0\nretry: 3000\n\n",
        ": a comment\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":{\"x\":1}}\n\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":3,\"result\":{}}\r\nid: 1/0\r\n\r\n",
    );
    let raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: abc-1\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunked(events, 5)
    );
    let reply = parse::<IgnoredAny>(raw.as_bytes(), Some(3)).await.unwrap();
    assert!(matches!(reply.outcome, Outcome::Result(_)));
    assert_eq!(reply.session_id.as_deref(), Some("abc-1"));
    assert!(
        reply.reusable,
        "the stream ended, so the connection is clean"
    );
}

#[tokio::test]
async fn an_event_stream_that_stays_open_answers_but_costs_the_connection() {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let event = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    let raw = format!("{head}{:x}\r\n{event}\r\n", event.len());
    let mut stream = Trickle {
        bytes: raw.into_bytes(),
        at: 0,
        step: usize::MAX,
    };
    // After the bytes run out the Trickle says EOF: the body never ends cleanly.
    let reply = read_reply::<_, IgnoredAny>(&mut stream, Some(1), LIMIT, false)
        .await
        .unwrap();
    assert!(matches!(reply.outcome, Outcome::Result(_)));
    assert!(!reply.reusable);
}

#[tokio::test]
async fn json_rpc_error_with_http_404() {
    let body = r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"ping"}}"#;
    let raw = json_response("404 Not Found", body);
    let reply = parse::<IgnoredAny>(raw.as_bytes(), Some(2)).await.unwrap();
    assert_eq!(reply.status, 404);
    let Outcome::Error(error) = reply.outcome else {
        panic!("{:?}", reply.outcome)
    };
    assert_eq!(error.code, -32601);
    assert_eq!(error.message, "ping");
}

#[tokio::test]
async fn plain_text_error_status_keeps_a_clean_snippet() {
    let raw =
        "HTTP/1.1 404 Not Found\r\ncontent-length: 30\r\n\r\nNot Found: Session\r\nnot found\n";
    let reply = parse::<IgnoredAny>(raw.as_bytes(), Some(2)).await.unwrap();
    assert_eq!(reply.status, 404);
    assert!(
        matches!(&reply.outcome, Outcome::Status(text) if text == "Not Found: Session  not found"),
        "{:?}",
        reply.outcome
    );
    assert!(reply.reusable);
}

#[tokio::test]
async fn accepted_notification_and_connection_close() {
    let raw = "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let reply = parse::<IgnoredAny>(raw.as_bytes(), None).await.unwrap();
    assert!(matches!(reply.outcome, Outcome::Accepted));
    assert!(!reply.reusable);
}

#[tokio::test]
async fn body_until_close_is_read_but_not_reusable() {
    let raw = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
    let reply = parse::<IgnoredAny>(raw.as_bytes(), Some(1)).await.unwrap();
    assert!(matches!(reply.outcome, Outcome::Result(_)));
    assert!(!reply.reusable);
}

#[tokio::test]
async fn interim_100_continue_is_skipped() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let raw = with_length("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", body);
    let reply = parse::<IgnoredAny>(raw.as_bytes(), Some(1)).await.unwrap();
    assert!(matches!(reply.outcome, Outcome::Result(_)));
}

#[tokio::test]
async fn eof_before_any_byte_is_retryable() {
    let error = parse::<IgnoredAny>(b"", Some(1)).await.unwrap_err();
    assert!(matches!(error, HttpError::ClosedBeforeResponse), "{error}");
}

/// Every prefix of `whole` shorter than `end` bytes is malformed (never retryable).
async fn assert_every_cut_is_malformed(whole: &[u8], end: usize) {
    for cut in 1..end {
        let error = parse::<IgnoredAny>(&whole[..cut], Some(1))
            .await
            .unwrap_err();
        assert!(
            matches!(error, HttpError::Malformed(_)),
            "cut at {cut}: {error}"
        );
    }
}

#[tokio::test]
async fn truncated_inputs_are_malformed_never_retryable() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let whole = with_length("HTTP/1.1 200 OK\r\n", body);
    assert_every_cut_is_malformed(whole.as_bytes(), whole.len()).await;
    let events = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    let whole = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{}",
        chunked(events, 3)
    );
    // Up to the blank line that completes the event; past it, the answer is in.
    let complete = whole.find("}}\n\n").unwrap() + 3;
    assert_every_cut_is_malformed(whole.as_bytes(), complete).await;
}

#[tokio::test]
async fn wrong_id_is_not_an_answer() {
    let body = r#"{"jsonrpc":"2.0","id":9,"result":{}}"#;
    let raw = with_length("HTTP/1.1 200 OK\r\n", body);
    let error = parse::<IgnoredAny>(raw.as_bytes(), Some(1))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not the response to request 1"),
        "{error}"
    );

    let events = "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n\n";
    let raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{events}",
        events.len()
    );
    let error = parse::<IgnoredAny>(raw.as_bytes(), Some(1))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ended without the response to request 1"),
        "{error}"
    );
}

#[tokio::test]
async fn result_of_the_wrong_shape_is_malformed() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"nope"}}"#;
    let raw = with_length("HTTP/1.1 200 OK\r\n", body);
    let error = parse::<Tools>(raw.as_bytes(), Some(1)).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unexpected result for request 1"),
        "{error}"
    );
    let body = r#"{"jsonrpc":"2.0","id":1}"#;
    let raw = with_length("HTTP/1.1 200 OK\r\n", body);
    let error = parse::<Tools>(raw.as_bytes(), Some(1)).await.unwrap_err();
    assert!(
        error.to_string().contains("neither result nor error"),
        "{error}"
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    for raw in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\nMcp-Session-Id: a b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let error = parse::<IgnoredAny>(raw, Some(1)).await.unwrap_err();
        assert!(
            matches!(error, HttpError::Malformed(_)),
            "{:?}: {error}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    while raw.len() <= MAX_HEAD {
        raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let error = parse::<IgnoredAny>(&raw, Some(1)).await.unwrap_err();
    assert!(matches!(error, HttpError::Malformed(_)), "{error}");

    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        raw.extend_from_slice(format!("X-{i}: a\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let error = parse::<IgnoredAny>(&raw, Some(1)).await.unwrap_err();
    assert!(matches!(error, HttpError::Malformed(_)), "{error}");

    // Declared too large: refused once the limit is crossed, not after reading it all.
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n0123456789abcdef";
    let error = parse_with::<IgnoredAny>(raw, Some(1), 8).await.unwrap_err();
    assert!(matches!(error, HttpError::TooLarge { limit: 8 }), "{error}");

    // An endless event stream of notifications hits the limit too.
    let event = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
    let raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n{}",
        event.repeat(100)
    );
    let error = parse_with::<IgnoredAny>(raw.as_bytes(), Some(1), 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpError::TooLarge { limit: 1000 }),
        "{error}"
    );

    // A chunk-size line that never ends.
    let raw = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "0".repeat(MAX_LINE + 10)
    );
    let error = parse::<IgnoredAny>(raw.as_bytes(), Some(1))
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Malformed(_)), "{error}");
}

#[tokio::test]
async fn a_silent_server_is_left_to_the_callers_timeout() {
    let read = tokio::time::timeout(
        Duration::from_millis(50),
        read_reply::<_, IgnoredAny>(&mut Silent, Some(1), LIMIT, false),
    )
    .await;
    assert!(read.is_err());
}

#[test]
fn snippets_are_one_bounded_line() {
    assert_eq!(snippet(b"a\r\nb\tc  \n"), "a  b c");
    let long = "x".repeat(500);
    assert_eq!(snippet(long.as_bytes()).len(), SNIPPET + 3);
    assert_eq!(snippet(b"\xff\xfe ok"), "\u{fffd}\u{fffd} ok");
}
