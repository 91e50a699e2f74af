//! `h1_head`: the hand HTTP/1.1 head parser and its decision to handle a request by hand.

use http::header::{HeaderName, HeaderValue};

use crate::gateway::h1_head::{Verdict, parse};

/// The largest `Content-Length` the target lets through by hand.
const MAX_BODY: u64 = 1024;

/// `h1_head`: the input as the bytes a client sent. Never panics; a head handled by hand is
/// one an independent strict reading (CRLF lines, `METHOD SP target SP HTTP/1.1`,
/// `name: value` lines) and `httparse` both read the same way (same method, target and
/// headers in order), plainly framed (no `Transfer-Encoding`, `Upgrade`, `Expect`; at most
/// one all-digit `Content-Length` within the limit); and no shorter prefix of it is handled
/// by hand (a head split anywhere waits for the rest).
pub fn h1_head(data: &[u8]) {
    let mut fields = Vec::new();
    let Verdict::Fast(head) = parse(data, MAX_BODY, &mut fields) else {
        return;
    };
    let bytes = &data[..head.len];
    let strict = strict_read(bytes).unwrap_or_else(|| panic!("not strict: {bytes:?}"));

    let mut headers = [httparse::EMPTY_HEADER; crate::gateway::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(data),
        Ok(httparse::Status::Complete(head.len))
    );
    assert_eq!(request.version, Some(1));
    assert_eq!(request.method.map(str::as_bytes), Some(strict.method));
    assert_eq!(request.path.map(str::as_bytes), Some(strict.target));
    assert_eq!(head.method.as_str().as_bytes(), strict.method);
    assert_eq!(&bytes[head.target.clone()], strict.target);
    assert_eq!(request.headers.len(), strict.headers.len());
    assert_eq!(fields.len(), strict.headers.len());
    for ((parsed, (name, value)), (strict_name, strict_value)) in
        request.headers.iter().zip(&fields).zip(&strict.headers)
    {
        assert_eq!(parsed.name.as_bytes(), *strict_name);
        assert_eq!(parsed.value, *strict_value);
        assert_eq!(&bytes[value.clone()], *strict_value);
        assert!(name.as_str().as_bytes().eq_ignore_ascii_case(strict_name));
        HeaderName::from_bytes(strict_name).expect("a valid name");
        HeaderValue::from_bytes(strict_value).expect("a valid value");
    }

    let named = |wanted: &'static str| {
        strict
            .headers
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
    };
    for refused in ["transfer-encoding", "upgrade", "expect"] {
        assert_eq!(named(refused).count(), 0, "{refused}");
    }
    let lengths: Vec<_> = named("content-length").collect();
    assert!(lengths.len() <= 1);
    let declared = lengths.first().map_or(0, |(_, value)| {
        assert!(!value.is_empty() && value.iter().all(u8::is_ascii_digit));
        std::str::from_utf8(value).unwrap().parse::<u64>().unwrap()
    });
    assert_eq!(head.content_length, declared);
    assert!(declared <= MAX_BODY);

    let frozen = bytes::Bytes::copy_from_slice(bytes);
    let (uri, map) = head.build(&frozen, &mut fields, http::HeaderMap::new());
    assert_eq!(uri.to_string().as_bytes(), strict.target);
    assert_eq!(map.len(), strict.headers.len());

    if head.len <= 4096 {
        for end in 0..head.len {
            let verdict = parse(&data[..end], MAX_BODY, &mut Vec::new());
            assert!(
                !matches!(verdict, Verdict::Fast(_)),
                "prefix of {end} bytes"
            );
        }
    }
}

struct Strict<'a> {
    method: &'a [u8],
    target: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
}

/// Reads a head the strict way, independently of `httparse`.
fn strict_read(head: &[u8]) -> Option<Strict<'_>> {
    let head = head.strip_suffix(b"\r\n\r\n")?;
    let mut lines = split_crlf(head);
    let request_line = lines.next()?;
    let mut parts = request_line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    if parts.next()? != b"HTTP/1.1" || parts.next().is_some() {
        return None;
    }
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if method.is_empty() || !method.iter().all(token) {
        return None;
    }
    if !target.starts_with(b"/") || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.contains(&b'\n') || line.contains(&b'\r') {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(token) {
            return None;
        }
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        let value = trim_ows_end(&value[start..]);
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            return None;
        }
        headers.push((name, value));
    }
    Some(Strict {
        method,
        target,
        headers,
    })
}

fn trim_ows_end(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |at| at + 1);
    &value[..end]
}

/// The lines of `text` split at each CRLF (a bare CR or LF stays in its line).
fn split_crlf(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.windows(2).position(|pair| pair == b"\r\n") {
            Some(at) => {
                rest = Some(&text[at + 2..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}
