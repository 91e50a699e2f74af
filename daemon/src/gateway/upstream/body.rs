//! The framing of an upstream response body (RFC 9112 §6.3, §7.1): a `Content-Length`, the
//! chunked coding, or the end of the connection; decoded out of the connection's read buffer
//! without copying the data.
//!
//! Server output is hostile: a chunk size that overflows, a line longer than [`MAX_LINE`], a
//! chunk not followed by CRLF, a bare LF, or a trailer section longer than
//! [`MAX_TRAILER_BYTES`] is an error, and the connection is not used again.

use bytes::{Buf, Bytes, BytesMut};

use super::response_head::H1Error;

/// The longest chunk-size line (extensions included) or trailer line accepted, CRLF included.
pub const MAX_LINE: usize = 4096;
/// The most bytes of trailer fields accepted after the last chunk (they are skipped).
pub const MAX_TRAILER_BYTES: usize = crate::gateway::MAX_HEAD_BYTES;

/// How the response head says its body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a response to HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection (which therefore cannot be reused).
    UntilClose,
}

/// Decodes one response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes seen so far.
    Trailer(usize),
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Size,
            Framing::UntilClose => State::UntilClose,
        };
        Decoder { state }
    }

    /// The whole body was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The bytes still expected, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(left) => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body data in `buf` (split off it, not copied), consuming framing
    /// bytes on the way. `Ok(None)`: the body is done, or `buf` holds too little to go on.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(left) | State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), left) => State::Length(left),
                        (_, 0) => State::DataEnd,
                        (_, left) => State::Data(left),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
                State::Size => {
                    let Some(end) = line(buf)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..end - 2])?;
                    buf.advance(end);
                    self.state = if size == 0 {
                        State::Trailer(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&byte| byte != b'\r') {
                            return Err(H1Error::Chunk("chunk data not followed by CRLF"));
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Chunk("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailer(seen) => {
                    let Some(end) = line(buf)? else {
                        if seen + buf.len() > MAX_TRAILER_BYTES {
                            return Err(H1Error::Chunk("trailer section too long"));
                        }
                        return Ok(None);
                    };
                    let seen = seen + end;
                    if seen > MAX_TRAILER_BYTES {
                        return Err(H1Error::Chunk("trailer section too long"));
                    }
                    if buf[..end - 2].iter().any(|&byte| is_forbidden(byte)) {
                        return Err(H1Error::Chunk("control character in a trailer field"));
                    }
                    let last = end == 2;
                    buf.advance(end);
                    self.state = if last {
                        State::Done
                    } else {
                        State::Trailer(seen)
                    };
                }
            }
        }
    }

    /// The server closed the connection: the end of a body framed by the close, an error for
    /// any other body not read to its end.
    pub fn eof(&mut self) -> Result<(), H1Error> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(H1Error::Truncated),
        }
    }
}

/// The length of the CRLF-terminated line at the start of `buf`, CRLF included; `None` when
/// it is not complete yet. A bare LF or a line over [`MAX_LINE`] is an error.
fn line(buf: &[u8]) -> Result<Option<usize>, H1Error> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&byte| byte == b'\n') {
        Some(0) => Err(H1Error::Chunk("bare LF in chunk framing")),
        Some(lf) if window[lf - 1] != b'\r' => Err(H1Error::Chunk("bare LF in chunk framing")),
        Some(lf) => Ok(Some(lf + 1)),
        None if buf.len() >= MAX_LINE => Err(H1Error::Chunk("chunk framing line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" chunk-ext ]` (the extensions are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .iter()
        .position(|byte| !byte.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return Err(H1Error::Chunk("chunk size is not hexadecimal"));
    }
    let mut size: u64 = 0;
    for &byte in &line[..digits] {
        let digit = (byte as char).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(u64::from(digit)))
            .ok_or(H1Error::Chunk("chunk size overflows"))?;
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .position(|&byte| byte != b' ' && byte != b'\t')
        .unwrap_or(rest.len())..];
    match rest.first() {
        None => Ok(size),
        Some(b';') if !rest.iter().any(|&byte| is_forbidden(byte)) => Ok(size),
        Some(_) => Err(H1Error::Chunk("invalid chunk size line")),
    }
}

/// Control characters other than HTAB (CR and LF included: they end lines, never sit in one).
fn is_forbidden(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}
