//! The fuzz check of the gateway's own HTTP/1.1 client: a local server's response bytes
//! through the response head parser, the framing decision and the body decoder. Same
//! contract as the rest of [`crate::fuzzing`]: the function panics when a property does not
//! hold; refusing the input is fine.

use bytes::BytesMut;

use crate::gateway::{Decoder, Framing, MAX_HEADERS, parse_response_head};

/// What one read of a response gave.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    status: Option<u16>,
    body: Vec<u8>,
    /// The head and body were read to their end without an error.
    clean: bool,
}

/// `h1_response`: the first input byte says whether the request was HEAD (bit 0) and the
/// size of the pieces the rest arrives in (the other bits); the rest is what the server
/// sent. Read in pieces or at once, it gives the same head, the same body and the same
/// verdict; the decoded body is never longer than the input, a body of known length is
/// exactly that long, and a connection whose framing cannot be trusted is never kept.
pub fn h1_response(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 != 0;
    let step = 1 + usize::from(flags >> 1);
    let pieces = read(input, head_request, step);
    let whole = read(input, head_request, usize::MAX);
    assert_eq!(pieces, whole, "read in pieces of {step} and at once");
    assert!(whole.body.len() <= input.len());
}

fn read(input: &[u8], head_request: bool, step: usize) -> Read {
    let mut buf = BytesMut::new();
    let mut rest = input;
    let mut feed = |buf: &mut BytesMut| {
        if rest.is_empty() {
            return false;
        }
        let (piece, left) = rest.split_at(rest.len().min(step));
        buf.extend_from_slice(piece);
        rest = left;
        true
    };
    let mut outcome = Read {
        status: None,
        body: Vec::new(),
        clean: false,
    };
    let head = loop {
        match parse_response_head(&mut buf, head_request, &mut http::HeaderMap::new()) {
            Ok(Some(head)) => break head,
            Ok(None) if feed(&mut buf) => {}
            Ok(None) | Err(_) => return outcome,
        }
    };
    outcome.status = Some(head.status.as_u16());
    assert!(head.headers.len() <= MAX_HEADERS);
    let lengths = head
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .count();
    assert!(lengths <= 1, "one Content-Length at most is passed on");
    match head.framing {
        Framing::UntilClose => assert!(!head.keep_alive, "a body framed by the close"),
        Framing::Chunked => assert!(
            lengths == 0,
            "Content-Length passed on next to Transfer-Encoding"
        ),
        Framing::Empty | Framing::Length(_) => {}
    }
    if head_request {
        assert_eq!(
            head.framing,
            Framing::Empty,
            "a response to HEAD has no body"
        );
    }
    let mut decoder = Decoder::new(head.framing);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(data)) => {
                assert!(!data.is_empty(), "an empty piece of body");
                outcome.body.extend_from_slice(&data);
            }
            Ok(None) if decoder.is_done() => break,
            Ok(None) if feed(&mut buf) => {}
            Ok(None) => match decoder.eof() {
                Ok(()) => break,
                Err(_) => return outcome,
            },
            Err(_) => return outcome,
        }
    }
    if let Framing::Length(length) = head.framing {
        assert_eq!(outcome.body.len() as u64, length);
    }
    outcome.clean = true;
    outcome
}
