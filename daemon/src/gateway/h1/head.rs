//! The request head of the hand HTTP/1.1 path: parsed with `httparse`, and the decision
//! whether the request is plainly framed enough to be handled by hand. Anything in doubt is
//! [`Verdict::Fallback`]: the connection goes to hyper with every byte read so far.

use std::ops::Range;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::gateway::MAX_HEADERS;

/// One header of a parsed head: its name, and where its value lies in the head.
pub type Field = (HeaderName, Range<usize>);

/// A request head that is plainly framed: HTTP/1.1, an origin-form target, at most one
/// all-digit `Content-Length` within the body limit, no `Transfer-Encoding`, `Upgrade` or
/// `Expect`, `Connection` with only `keep-alive`/`close`, every line ended by CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, the final empty line included.
    pub len: usize,
    pub method: Method,
    /// Where the request target lies in the head.
    pub target: Range<usize>,
    /// The body's length (0 without `Content-Length`).
    pub content_length: u64,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A complete, plainly framed head (its headers are in the `fields` passed to [`parse`]).
    Fast(Head),
    /// The head is not complete yet.
    Partial,
    /// Not for the hand path (says why): hyper answers it.
    Fallback(&'static str),
}

/// Parses the head at the start of `buf`; on [`Verdict::Fast`] `fields` holds its headers in
/// order. `max_body` is the largest `Content-Length` handled by hand.
pub fn parse(buf: &[u8], max_body: u64, fields: &mut Vec<Field>) -> Verdict {
    fields.clear();
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // httparse ends a head at a bare `\n\n` too; a bare LF anywhere is refused below,
            // so a partial head with one can go to hyper at once.
            return if has_bare_lf(buf) {
                Verdict::Fallback("bare LF")
            } else {
                Verdict::Partial
            };
        }
        Err(_) => return Verdict::Fallback("malformed head"),
    };
    let head = &buf[..len];
    if has_bare_lf(head) || !head.ends_with(b"\r\n\r\n") || head.starts_with(b"\r\n") {
        return Verdict::Fallback("a line not ended by CRLF");
    }
    if request.version != Some(1) {
        return Verdict::Fallback("not HTTP/1.1");
    }
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Verdict::Fallback("malformed request line");
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Verdict::Fallback("method");
    };
    if method == Method::CONNECT {
        return Verdict::Fallback("CONNECT");
    }
    // Visible ASCII only (httparse and `Uri` take bytes past 0x7f too), and no `#` (`Uri`
    // drops a fragment): anything else is hyper's to judge.
    let visible = path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#');
    if !path.starts_with('/') || !visible || Uri::try_from(path).is_err() {
        return Verdict::Fallback("not an origin-form target");
    }
    let target = offset_of(buf, path.as_bytes());
    let mut content_length = None;
    let mut close = false;
    for field in request.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Verdict::Fallback("header name");
        };
        if !valid_value(field.value) {
            return Verdict::Fallback("header value");
        }
        match name {
            header::TRANSFER_ENCODING => return Verdict::Fallback("Transfer-Encoding"),
            header::UPGRADE => return Verdict::Fallback("Upgrade"),
            header::EXPECT => return Verdict::Fallback("Expect"),
            header::CONTENT_LENGTH => {
                if content_length.is_some() {
                    return Verdict::Fallback("more than one Content-Length");
                }
                match digits(field.value) {
                    Some(length) if length <= max_body => content_length = Some(length),
                    _ => return Verdict::Fallback("Content-Length"),
                }
            }
            header::CONNECTION => match connection_closes(field.value) {
                Some(closes) => close |= closes,
                None => return Verdict::Fallback("Connection"),
            },
            _ => {}
        }
        fields.push((name, offset_of(buf, field.value)));
    }
    Verdict::Fast(Head {
        len,
        method,
        target,
        content_length: content_length.unwrap_or(0),
        close,
    })
}

impl Head {
    /// The target and headers of the head, taken from `head` (the head's bytes, frozen)
    /// without copying; the headers go into `headers` (emptied first, its room reused).
    pub fn build(
        &self,
        head: &Bytes,
        fields: &mut Vec<Field>,
        mut headers: HeaderMap,
    ) -> (Uri, HeaderMap) {
        let uri = Uri::from_maybe_shared(head.slice(self.target.clone()))
            .expect("the target was checked by parse");
        headers.clear();
        headers.reserve(fields.len());
        for (name, value) in fields.drain(..) {
            // SAFETY: `parse` checked every byte of the value with the rule of
            // `HeaderValue::from_bytes` (`valid_value`); checking them again here would read
            // each value twice (a bearer token is hundreds of bytes). Debug builds check.
            let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(value)) };
            headers.append(name, value);
        }
        (uri, headers)
    }
}

/// True when `bytes` hold a `\n` not preceded by `\r`.
pub(crate) fn has_bare_lf(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|at| at == 0 || bytes[at - 1] != b'\r')
}

/// The rule of `http::HeaderValue`: visible ASCII, space, tab and obs-text.
fn valid_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Every byte of `value` follows [`valid_value_byte`]. Folded without an early exit, so the
/// compiler checks many bytes per instruction: values are short or valid, and a long one (a
/// bearer token) is read at vector speed.
fn valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .fold(true, |valid, &b| valid & valid_value_byte(b))
}

/// A `Content-Length` value: one or more ASCII digits, no sign, no space, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |sum, &b| {
        sum.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether a `Connection` value asks to close; `None` when it names anything but
/// `keep-alive` and `close`.
fn connection_closes(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn offset_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &[u8]) -> Verdict {
        parse(head, 1024, &mut Vec::new())
    }

    fn fallback(head: &[u8]) -> bool {
        matches!(verdict(head), Verdict::Fallback(_))
    }

    #[test]
    fn a_plain_post_is_handled_by_hand() {
        let head = b"POST /api/v1/mcp/echo/mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody";
        let mut fields = Vec::new();
        let Verdict::Fast(parsed) = parse(head, 1024, &mut fields) else {
            panic!("not fast");
        };
        assert_eq!(parsed.len, head.len() - 4);
        assert_eq!(parsed.method, Method::POST);
        assert_eq!(parsed.content_length, 12);
        assert!(!parsed.close);
        let frozen = Bytes::copy_from_slice(&head[..parsed.len]);
        let (uri, headers) = parsed.build(&frozen, &mut fields, HeaderMap::new());
        assert_eq!(uri, "/api/v1/mcp/echo/mcp?x=1");
        assert_eq!(headers["host"], "a");
        let values: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }

    #[test]
    fn an_incomplete_head_waits() {
        assert_eq!(verdict(b"POST / HTTP/1.1\r\nHost: a\r\n"), Verdict::Partial);
        assert_eq!(verdict(b"POST / HT"), Verdict::Partial);
    }

    #[test]
    fn connection_close_is_noted() {
        let head = b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(matches!(
            verdict(head),
            Verdict::Fast(Head { close: true, .. })
        ));
    }

    #[test]
    fn anything_not_plainly_framed_goes_to_hyper() {
        for head in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET /a#b HTTP/1.1\r\n\r\n",
            b"GET /\xd1\x90 HTTP/1.1\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
        ] {
            assert!(fallback(head), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn obs_text_in_a_value_is_kept() {
        let head = b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n";
        let mut fields = Vec::new();
        let Verdict::Fast(parsed) = parse(head, 0, &mut fields) else {
            panic!("not fast");
        };
        let (_, headers) =
            parsed.build(&Bytes::copy_from_slice(head), &mut fields, HeaderMap::new());
        assert_eq!(headers["x"].as_bytes(), b"caf\xe9");
    }

    /// A bearer token's length of value, checked many bytes at a time: one bad byte anywhere
    /// in it still sends the head to hyper, and a clean one is kept byte for byte.
    #[test]
    fn a_bad_byte_anywhere_in_a_long_value_sends_the_head_to_hyper() {
        let value = vec![b'A'; 400];
        for at in [0, 1, 31, 32, 33, 63, 64, 200, 399] {
            for bad in [0u8, 0x01, 0x0b, 0x1f, 0x7f] {
                let mut spoiled = value.clone();
                spoiled[at] = bad;
                let mut head = b"GET / HTTP/1.1\r\nAuthorization: Bearer ".to_vec();
                head.extend_from_slice(&spoiled);
                head.extend_from_slice(b"\r\n\r\n");
                assert!(fallback(&head), "byte {bad:#x} at {at}");
            }
        }
        let mut head = b"GET / HTTP/1.1\r\nAuthorization: Bearer ".to_vec();
        head.extend_from_slice(&value);
        head.extend_from_slice(b"\r\n\r\n");
        let mut fields = Vec::new();
        let Verdict::Fast(parsed) = parse(&head, 0, &mut fields) else {
            panic!("not fast");
        };
        let (_, headers) = parsed.build(
            &Bytes::copy_from_slice(&head),
            &mut fields,
            HeaderMap::new(),
        );
        assert_eq!(
            headers["authorization"].as_bytes(),
            [&b"Bearer "[..], &value].concat()
        );
    }

    #[test]
    fn too_many_headers_go_to_hyper() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(fallback(&head));
    }
}
