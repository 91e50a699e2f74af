//! An upstream response head: parsed with `httparse` out of the connection's read buffer, its
//! interim 1xx responses skipped, and reduced to a status, the header fields (sharing the
//! buffer, not copied) and the decision how the body is framed and whether the connection
//! can carry another request (RFC 9112 §6.3).
//!
//! Strict, since server output is hostile: obs-fold, a bare LF, a NUL or other control
//! character, more than `MAX_HEADERS` fields, a head over `MAX_HEAD_BYTES`, a
//! `Content-Length` that is not plain digits or that differs between fields, a
//! `Transfer-Encoding` whose final coding is not `chunked`, and an unasked-for 101 are
//! errors. `Transfer-Encoding` wins over `Content-Length`, and such a connection is closed
//! after the response.

use bytes::{Buf, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::body::Framing;
use crate::gateway::conn::BoxError;
use crate::gateway::h1::head::has_bare_lf;
use crate::gateway::{MAX_HEAD_BYTES, MAX_HEADERS};

/// Why an exchange on a hand-parsed upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream closed the connection before any response")]
    Closed,
    #[error("upstream closed the connection inside the response head")]
    ClosedInHead,
    #[error("upstream closed the connection before the end of the response body")]
    Truncated,
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad upstream response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("upstream response head longer than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("bad upstream response head: {0}")]
    Malformed(&'static str),
    #[error("bad upstream response body: {0}")]
    Chunk(&'static str),
    #[error("reading the request body: {0}")]
    RequestBody(#[source] BoxError),
    #[error("the request body is shorter or longer than its Content-Length")]
    RequestLength,
    #[error("upstream did not send its response head in time")]
    HeadTimeout,
}

/// A final response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection can carry another request once the body was read to its end.
    pub keep_alive: bool,
}

/// The final response head at the start of `buf`, split off it with the interim responses
/// before it; `Ok(None)` while it is incomplete (nothing is consumed then).
/// `head_request`: the request was HEAD, so the response has no body whatever it says.
/// `fields`: a map to fill (cleared first; the request's, whose room is then reused).
pub fn parse(
    buf: &mut BytesMut,
    head_request: bool,
    fields: &mut HeaderMap,
) -> Result<Option<Head>, H1Error> {
    loop {
        let Some(parsed) = parse_one(buf, head_request, fields)? else {
            return Ok(None);
        };
        match parsed {
            Parsed::Interim(length) => buf.advance(length),
            Parsed::Final(head) => return Ok(Some(head)),
        }
    }
}

enum Parsed {
    Interim(usize),
    Final(Head),
}

/// Where a header field's name and value sit in the head.
#[derive(Clone, Copy, Default)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
    /// A `Content-Length` that repeats an earlier one, or any when `Transfer-Encoding` wins.
    skip: bool,
}

fn parse_one(
    buf: &mut BytesMut,
    head_request: bool,
    map: &mut HeaderMap,
) -> Result<Option<Parsed>, H1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf)? {
        httparse::Status::Complete(length) => length,
        httparse::Status::Partial if buf.len() > MAX_HEAD_BYTES => {
            return Err(H1Error::HeadTooLarge);
        }
        httparse::Status::Partial => return Ok(None),
    };
    if length > MAX_HEAD_BYTES {
        return Err(H1Error::HeadTooLarge);
    }
    if has_bare_lf(&buf[..length]) {
        return Err(H1Error::Malformed("bare LF"));
    }
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("bad status code"))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(H1Error::Malformed("unasked-for protocol switch (101)"));
        }
        return Ok(Some(Parsed::Interim(length)));
    }

    let base = buf.as_ptr() as usize;
    let offset = |slice: &[u8]| (slice.as_ptr() as usize - base) as u32;
    let mut fields = [Field::default(); MAX_HEADERS];
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = response.version != Some(1);
    let count = response.headers.len();
    for (field, header) in fields.iter_mut().zip(response.headers.iter()) {
        let name = header.name.as_bytes();
        let value = header.value;
        *field = Field {
            name: (offset(name), offset(name) + name.len() as u32),
            value: (offset(value), offset(value) + value.len() as u32),
            skip: false,
        };
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = decimal(value)?;
            if content_length.is_some_and(|known| known != parsed) {
                return Err(H1Error::Malformed("Content-Length fields that differ"));
            }
            field.skip = content_length.is_some();
            content_length = Some(parsed);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&byte| byte == b',') {
                let coding = coding.trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                if chunked {
                    // A coding after `chunked` (or `chunked` twice).
                    return Err(H1Error::Malformed(
                        "chunked is not the final transfer coding",
                    ));
                }
                chunked = coding.eq_ignore_ascii_case(b"chunked");
                if !chunked {
                    return Err(H1Error::Malformed("a transfer coding other than chunked"));
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if chunked {
            if content_length.is_some() {
                // RFC 9112 §6.3 (3): chunked wins, and the connection is not trusted again.
                close = true;
                for (field, header) in fields.iter_mut().zip(response.headers.iter()) {
                    field.skip |= header.name.eq_ignore_ascii_case("content-length");
                }
            }
            Framing::Chunked
        } else {
            match content_length {
                Some(0) => Framing::Empty,
                Some(length) => Framing::Length(length),
                None => {
                    close = true;
                    Framing::UntilClose
                }
            }
        };

    let head = buf.split_to(length).freeze();
    map.clear();
    map.reserve(count);
    for field in &fields[..count] {
        if field.skip {
            continue;
        }
        let name = HeaderName::from_bytes(&head[field.name.0 as usize..field.name.1 as usize])
            .map_err(|_| H1Error::Malformed("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(
            head.slice(field.value.0 as usize..field.value.1 as usize),
        )
        .map_err(|_| H1Error::Malformed("bad header value"))?;
        map.append(name, value);
    }
    Ok(Some(Parsed::Final(Head {
        status,
        headers: std::mem::take(map),
        framing,
        keep_alive: !close,
    })))
}

/// A `Content-Length` value: 1*DIGIT that fits in a u64, nothing else.
fn decimal(value: &[u8]) -> Result<u64, H1Error> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(H1Error::Malformed("Content-Length is not a number"));
    }
    value.iter().try_fold(0u64, |total, &digit| {
        total
            .checked_mul(10)
            .and_then(|total| total.checked_add(u64::from(digit - b'0')))
            .ok_or(H1Error::Malformed("Content-Length overflows"))
    })
}

/// A LF not preceded by CR (httparse accepts them; this gateway does not).
/// Whether `buf` (of which the first `scanned` bytes were searched before) now holds the
/// blank line that ends a head, so parsing it is worthwhile: a head trickled in one byte at
/// a time is then parsed once, not once per byte.
pub fn has_head_end(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2);
    buf[from..]
        .windows(2)
        .any(|pair| pair == b"\n\n" || pair == b"\n\r")
}
