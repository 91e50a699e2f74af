//! The response writer of the hand HTTP/1.1 path: the head as hyper writes it (lowercase
//! names, a `date`, `content-length` for a body of known size, else chunked), and the body
//! frames, those ready together in one write (`body_out`).

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::body_out::{self, Sent, Wire};
use crate::gateway::conn::{BoxError, OpenStream};

/// The buffers one connection reuses from exchange to exchange.
#[derive(Debug, Default)]
pub struct Buffers {
    /// What was read from the client and not consumed yet.
    pub read: BytesMut,
    /// The response being gathered for one write.
    pub out: Vec<u8>,
    /// The last response's header map, emptied, for the next request's headers.
    pub spare: http::HeaderMap,
}

/// How the body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes `response` to `io` through `buffers.out`, keeping what the client sends meanwhile
/// in `buffers.read` (`client_gone`), and leaves its header map in `buffers.spare` for the
/// next request's headers (as hyper does). `head_request`: the
/// request was HEAD; `close`: the connection closes after this exchange. Returns whether the
/// connection may carry another request; an error means it must be closed at once (a body
/// that failed mid-way goes out truncated: no final chunk, or fewer bytes than its length).
pub async fn respond<S, B>(
    io: &mut S,
    buffers: &mut Buffers,
    response: Response<B>,
    head_request: bool,
    close: bool,
    stream: &OpenStream,
) -> Result<bool, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let Buffers {
        read: buf,
        out,
        spare,
    } = buffers;
    let (mut parts, mut body) = response.into_parts();
    out.clear();
    let (framing, closes) = write_head(out, &parts, &body, head_request, close);
    *spare = std::mem::take(&mut parts.headers);
    let wire = match framing {
        Framing::None => None,
        Framing::Length(length) => Some(Wire::Length(length)),
        Framing::Chunked => Some(Wire::Chunked),
    };
    if let Some(wire) = wire {
        match body_out::send(io, buf, out, &mut body, wire, stream).await {
            Sent::Ended(sent) => match framing {
                Framing::Length(length) if sent != length => {
                    let _ = flush(io, out).await;
                    return Err(format!("response body shorter than its length {length}").into());
                }
                Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
                _ => {}
            },
            Sent::Failed(err) => {
                let _ = flush(io, out).await;
                return Err(err);
            }
            Sent::ClientGone(err) => return Err(err),
        }
    }
    flush(io, out).await?;
    Ok(!closes)
}

async fn flush<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Writes the status line and headers into `out`; returns the body's framing and whether
/// the connection closes after it.
fn write_head<B: HttpBody>(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &B,
    head_request: bool,
    close: bool,
) -> (Framing, bool) {
    let status = parts.status;
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut closes = close;
    let mut declared = None;
    let mut wrote_date = false;
    for (name, value) in &parts.headers {
        match *name {
            header::CONTENT_LENGTH => {
                declared = declared.or_else(|| content_length(value));
                continue;
            }
            header::TRANSFER_ENCODING => continue,
            header::CONNECTION => closes |= connection_close(value),
            header::DATE => wrote_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close
        && !parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(connection_close)
    {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let may_have_length = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let length = body.size_hint().exact().or(declared);
    let framing = match length {
        _ if !may_have_length => Framing::None,
        Some(0) if head_request => Framing::None,
        Some(length) => {
            write!(out, "content-length: {length}\r\n").expect("write to a Vec");
            if head_request {
                Framing::None
            } else {
                Framing::Length(length)
            }
        }
        None if head_request => Framing::None,
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        extend_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, closes)
}

fn content_length(value: &HeaderValue) -> Option<u64> {
    let value = value.to_str().ok()?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn connection_close(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Length of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

thread_local! {
    /// The formatted date of the current second, per worker thread.
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Appends the current date, formatted at most once per second per thread.
fn extend_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == DATE_LEN {
                date.1.copy_from_slice(formatted.as_bytes());
                date.0 = second;
            } else {
                out.extend_from_slice(formatted.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&date.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;

    fn head_of(response: Response<Full<Bytes>>, head_request: bool, close: bool) -> String {
        let mut out = Vec::new();
        let (parts, body) = response.into_parts();
        write_head(&mut out, &parts, &body, head_request, close);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_head_is_written_as_hyper_writes_it() {
        let response = Response::builder()
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let head = head_of(response, false, false);
        assert!(head.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: "
        ));
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
    }

    #[test]
    fn a_closing_exchange_says_so_and_bodiless_statuses_get_no_length() {
        let response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let head = head_of(response, false, true);
        assert!(head.starts_with("HTTP/1.1 204 No Content\r\nconnection: close\r\ndate: "));
        let response = Response::builder()
            .status(599)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(head_of(response, false, false).starts_with("HTTP/1.1 599 <none>\r\n"));
    }

    #[test]
    fn the_date_is_an_http_date() {
        let mut out = Vec::new();
        extend_date(&mut out);
        extend_date(&mut out);
        assert_eq!(out.len(), 2 * DATE_LEN);
        let first = std::str::from_utf8(&out[..DATE_LEN]).unwrap();
        httpdate::parse_http_date(first).unwrap();
    }
}
