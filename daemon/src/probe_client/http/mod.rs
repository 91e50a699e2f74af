//! One HTTP/1.1 exchange of the probe client: the request goes out in one write, then the
//! reply is read from one buffer of what the connection delivered: its head ([`head`]), its
//! body framing ([`body`]) and what the body says as JSON-RPC ([`message`]). Every size is
//! bounded, and every failure is an [`HttpError`] whose text says what went wrong.

mod body;
mod head;
mod message;

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use body::BodyReader;
pub use message::Outcome;

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// Once the answer has arrived on an event stream, how long the rest of the response (its end)
/// may take before the connection is given up instead of kept for the next request.
const FINISH_GRACE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection ended (or was reset) before a single byte of the response arrived. On a
    /// kept connection this is the server having closed it while idle: safe to retry once.
    #[error("the server closed the connection without answering")]
    ClosedBeforeResponse,
    #[error("connection error: {0}")]
    Io(#[source] io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error("the response is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
}

#[derive(Debug)]
pub struct Reply<T> {
    pub status: u16,
    pub outcome: Outcome<T>,
    /// `Mcp-Session-Id`, when asked for and present.
    pub session_id: Option<Box<str>>,
    /// Whether the connection may carry the next request.
    pub reusable: bool,
}

/// Writes `request` and reads the reply to JSON-RPC request `id` (`None` for a notification),
/// with at most `limit` bytes of body.
pub async fn exchange<S, T>(
    stream: &mut S,
    request: &[u8],
    id: Option<u64>,
    limit: usize,
    want_session: bool,
) -> Result<Reply<T>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    if let Err(error) = stream.write_all(request).await {
        return Err(if is_reset(&error) {
            HttpError::ClosedBeforeResponse
        } else {
            HttpError::Io(error)
        });
    }
    read_reply(stream, id, limit, want_session).await
}

/// Reads one response from `stream` (see [`exchange`]).
pub async fn read_reply<R, T>(
    stream: &mut R,
    id: Option<u64>,
    limit: usize,
    want_session: bool,
) -> Result<Reply<T>, HttpError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut reader = Reader {
        io: stream,
        buf: Vec::with_capacity(READ_CHUNK),
        pos: 0,
        received: 0,
    };
    let head = reader.head(want_session).await?;
    let mut body = BodyReader::new(head.framing, limit);
    let success = (200..300).contains(&head.status);
    let mut reusable = head.keep_alive && head.framing.reusable();
    let outcome = if head.sse && success {
        let outcome = message::read_events(&mut reader, &mut body, id).await?;
        // Finish the response so the connection can carry the next request; a stream that
        // stays open after the answer costs the connection, not the probe.
        let finished = tokio::time::timeout(FINISH_GRACE, async {
            body.limit = usize::MAX;
            while !body.done() {
                body.out.clear();
                body.step(&mut reader).await?;
            }
            Ok::<_, HttpError>(())
        })
        .await;
        reusable &= matches!(finished, Ok(Ok(())));
        outcome
    } else {
        while !body.done() {
            body.step(&mut reader).await?;
        }
        message::classify(head.status, &body.out, id)?
    };
    reusable &= reader.pos == reader.buf.len();
    Ok(Reply {
        status: head.status,
        outcome,
        session_id: head.session_id,
        reusable,
    })
}

/// The bytes read from the connection and not yet consumed.
struct Reader<'r, R> {
    io: &'r mut R,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes read in all.
    received: usize,
}

impl<R: AsyncRead + Unpin> Reader<'_, R> {
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more; `Ok(0)` at the end of the connection.
    async fn fill(&mut self) -> Result<usize, HttpError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.capacity() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = match self.io.read_buf(&mut self.buf).await {
            Ok(read) => read,
            Err(error) if self.received == 0 && is_reset(&error) => {
                return Err(HttpError::ClosedBeforeResponse);
            }
            Err(error) => return Err(HttpError::Io(error)),
        };
        self.received += read;
        Ok(read)
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

pub(super) fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests;
