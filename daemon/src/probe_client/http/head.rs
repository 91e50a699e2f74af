//! The response head: read until complete (skipping interim 1xx responses), parsed with
//! `httparse`, and reduced to what matters for the body and the connection.

use tokio::io::AsyncRead;

use super::body::{Chunk, Framing};
use super::message::snippet;
use super::{HttpError, Reader};

/// The largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header lines a response head may have.
pub(super) const MAX_HEADERS: usize = 32;

/// What the head says about the body and the connection.
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) sse: bool,
    pub(super) keep_alive: bool,
    pub(super) session_id: Option<Box<str>>,
}

impl<R: AsyncRead + Unpin> Reader<'_, R> {
    /// Reads and parses the response head (skipping interim 1xx responses).
    pub(super) async fn head(&mut self, want_session: bool) -> Result<Head, HttpError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response
                .parse(self.available())
                .map_err(|error| HttpError::Malformed(format!("bad response head: {error}")))?;
            let httparse::Status::Complete(length) = parsed else {
                if self.available().len() > MAX_HEAD {
                    return Err(HttpError::Malformed(format!(
                        "response head longer than {MAX_HEAD} bytes"
                    )));
                }
                if self.fill().await? == 0 {
                    return Err(if self.received == 0 {
                        HttpError::ClosedBeforeResponse
                    } else {
                        HttpError::Malformed(
                            "the connection closed inside the response head".into(),
                        )
                    });
                }
                continue;
            };
            let status = response.code.unwrap_or(0);
            let head = describe(&response, want_session)?;
            self.pos += length;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(HttpError::Malformed(
                        "unexpected protocol switch (101)".into(),
                    ));
                }
                continue;
            }
            return Ok(head);
        }
    }
}

/// Reads the header lines that matter.
fn describe(response: &httparse::Response<'_, '_>, want_session: bool) -> Result<Head, HttpError> {
    let status = response.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut sse = false;
    let mut keep_alive = response.version == Some(1);
    let mut session_id = None;
    for header in response.headers.iter() {
        let name = header.name;
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HttpError::Malformed(format!("header {name} is not UTF-8")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: u64 = value
                .parse()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(HttpError::Malformed(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            let essence = value.split(';').next().unwrap_or("").trim();
            sse = essence.eq_ignore_ascii_case("text/event-stream");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if want_session && name.eq_ignore_ascii_case("mcp-session-id") {
            // It goes back into our request heads: visible ASCII only (as MCP requires).
            if value.is_empty() || value.len() > 256 || !value.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(HttpError::Malformed(format!(
                    "invalid Mcp-Session-Id {:?}",
                    snippet(value.as_bytes())
                )));
            }
            session_id = Some(Box::from(value));
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Done
    } else if chunked {
        Framing::Chunked(Chunk::Size)
    } else {
        match length {
            Some(0) => Framing::Done,
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    };
    Ok(Head {
        status,
        framing,
        sse,
        keep_alive,
        session_id,
    })
}
