//! One HTTP/1.1 exchange of the probe client: the request goes out in one write; the response
//! head is parsed with `httparse`; the body is framed by `Content-Length`, chunked encoding or
//! the end of the connection, and read either as one JSON document or as a `text/event-stream`
//! until the JSON-RPC response with the expected id arrives. Every size is bounded, and every
//! failure is an [`HttpError`] whose text says what went wrong.

use std::io;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header lines a response head may have.
const MAX_HEADERS: usize = 32;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 1024;
/// Once the answer has arrived on an event stream, how long the rest of the response (its end)
/// may take before the connection is given up instead of kept for the next request.
const FINISH_GRACE: Duration = Duration::from_millis(50);
/// How much of an error response's body is quoted in the error.
const SNIPPET: usize = 200;

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

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RpcError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// What the server answered.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The JSON-RPC result of our request.
    Result(T),
    /// A JSON-RPC error for our request (with any HTTP status).
    Error(RpcError),
    /// A 2xx status with an empty body (the answer to a notification).
    Accepted,
    /// Any other answer: a non-2xx status without a JSON-RPC error for our request. Carries
    /// the start of the body, cleaned for a log line.
    Status(String),
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
    let mut body = BodyReader {
        framing: head.framing,
        out: Vec::new(),
        decoded: 0,
        limit,
    };
    let success = (200..300).contains(&head.status);
    let mut reusable = head.keep_alive && head.framing.reusable();
    let outcome = if head.sse && success {
        let outcome = read_events(&mut reader, &mut body, id).await?;
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
        classify(head.status, &body.out, id)?
    };
    reusable &= reader.pos == reader.buf.len();
    Ok(Reply {
        status: head.status,
        outcome,
        session_id: head.session_id,
        reusable,
    })
}

/// Reads an event stream until the JSON-RPC message answering `id` arrives.
async fn read_events<R, T>(
    reader: &mut Reader<'_, R>,
    body: &mut BodyReader,
    id: Option<u64>,
) -> Result<Outcome<T>, HttpError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(id) = id else {
        return Err(HttpError::Malformed(
            "an event stream in answer to a notification".into(),
        ));
    };
    let mut data = Vec::new();
    let mut scanned = 0;
    loop {
        // Every complete line of what has been decoded so far.
        while let Some(end) = memchr(b'\n', &body.out[scanned..]) {
            let line = &body.out[scanned..scanned + end];
            scanned += end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if !data.is_empty() {
                    if let Some(outcome) = match_message(&data, id)? {
                        return Ok(outcome);
                    }
                    data.clear();
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            }
            // `id:`, `event:`, `retry:` and `:` comment lines carry nothing a probe needs.
        }
        body.out.drain(..scanned);
        scanned = 0;
        if body.done() {
            return Err(HttpError::Malformed(format!(
                "the event stream ended without the response to request {id}"
            )));
        }
        body.step(reader).await?;
    }
}

/// The outcome of a complete (non event-stream) body.
fn classify<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
    id: Option<u64>,
) -> Result<Outcome<T>, HttpError> {
    let success = (200..300).contains(&status);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(if success {
            Outcome::Accepted
        } else {
            Outcome::Status(String::new())
        });
    }
    if let Some(id) = id {
        match match_message(body, id) {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) | Err(_) if !success => {}
            Ok(None) => {
                return Err(HttpError::Malformed(format!(
                    "the body is not the response to request {id}"
                )));
            }
            Err(error) => return Err(error),
        }
    } else if success {
        // A notification answered with a body (some servers send `{}` or `null`): fine.
        return Ok(Outcome::Accepted);
    }
    Ok(Outcome::Status(snippet(body)))
}

/// A JSON-RPC message as far as a client needs it.
#[derive(Deserialize)]
struct Message<T> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    result: Option<T>,
    error: Option<RpcError>,
}

/// `Some` when `json` is the response (or error) for request `id`; `None` for any other
/// message (a notification, a request from the server, another id).
fn match_message<T: DeserializeOwned>(
    json: &[u8],
    id: u64,
) -> Result<Option<Outcome<T>>, HttpError> {
    let is_ours =
        |value: &Option<serde_json::Value>| value.as_ref().and_then(|v| v.as_u64()) == Some(id);
    match serde_json::from_slice::<Message<T>>(json) {
        Ok(message) if is_ours(&message.id) => match (message.result, message.error) {
            (_, Some(error)) => Ok(Some(Outcome::Error(error))),
            (Some(result), None) => Ok(Some(Outcome::Result(result))),
            (None, None) => Err(HttpError::Malformed(format!(
                "the response to request {id} has neither result nor error"
            ))),
        },
        Ok(_) => Ok(None),
        Err(error) => {
            // Is it ours with a result of an unexpected shape, or someone else's message?
            match serde_json::from_slice::<Message<IgnoredAny>>(json) {
                Ok(message) if !is_ours(&message.id) => Ok(None),
                Ok(_) => Err(HttpError::Malformed(format!(
                    "unexpected result for request {id}: {error}"
                ))),
                Err(_) => Err(HttpError::Malformed(format!(
                    "invalid JSON-RPC message: {error}"
                ))),
            }
        }
    }
}

/// The first bytes of `body` as one clean line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.truncate(line.trim_end().len());
    if body.len() > SNIPPET {
        line.push_str("...");
    }
    line
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// What the head says about the body and the connection.
struct Head {
    status: u16,
    framing: Framing,
    sse: bool,
    keep_alive: bool,
    session_id: Option<Box<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length` bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
    Done,
}

impl Framing {
    fn reusable(self) -> bool {
        !matches!(self, Framing::UntilClose)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
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

    /// Reads and parses the response head (skipping interim 1xx responses).
    async fn head(&mut self, want_session: bool) -> Result<Head, HttpError> {
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

/// Decodes the body into `out`, counting what was decoded against `limit`.
struct BodyReader {
    framing: Framing,
    out: Vec<u8>,
    decoded: usize,
    limit: usize,
}

impl BodyReader {
    fn done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Decodes what is available, reading once from the connection if that was not enough
    /// for any progress.
    async fn step<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut Reader<'_, R>,
    ) -> Result<(), HttpError> {
        let before = (self.decoded, self.framing);
        self.decode(reader)?;
        if (self.decoded, self.framing) != before || self.done() {
            return Ok(());
        }
        if reader.fill().await? == 0 {
            if self.framing == Framing::UntilClose {
                self.framing = Framing::Done;
                return Ok(());
            }
            return Err(HttpError::Malformed(
                "the connection closed before the end of the body".into(),
            ));
        }
        self.decode(reader)
    }

    /// Moves as many body bytes as possible from `reader` to `out`.
    fn decode<R>(&mut self, reader: &mut Reader<'_, R>) -> Result<(), HttpError> {
        loop {
            let available = &reader.buf[reader.pos..];
            match self.framing {
                Framing::Done => return Ok(()),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if available.is_empty() {
                        return Ok(());
                    }
                    let take = available
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.emit(&available[..take])?;
                    reader.pos += take;
                    let left = left - take as u64;
                    self.framing = match (self.framing, left) {
                        (Framing::Length(_), 0) => Framing::Done,
                        (Framing::Length(_), left) => Framing::Length(left),
                        (_, 0) => Framing::Chunked(Chunk::DataEnd),
                        (_, left) => Framing::Chunked(Chunk::Data(left)),
                    };
                }
                Framing::UntilClose => {
                    if available.is_empty() {
                        return Ok(());
                    }
                    let take = available.len();
                    self.emit(&reader.buf[reader.pos..reader.pos + take])?;
                    reader.pos += take;
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    reader.pos += line.len();
                    let text = std::str::from_utf8(trim_line(line))
                        .ok()
                        .map(|text| text.split(';').next().unwrap_or("").trim())
                        .filter(|text| !text.is_empty() && text.len() <= 15)
                        .ok_or_else(|| HttpError::Malformed("bad chunk size line".into()))?;
                    let size = u64::from_str_radix(text, 16)
                        .map_err(|_| HttpError::Malformed(format!("bad chunk size {text:?}")))?;
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    if !trim_line(line).is_empty() {
                        return Err(HttpError::Malformed(
                            "chunk data longer than its size".into(),
                        ));
                    }
                    reader.pos += line.len();
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailer) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    reader.pos += line.len();
                    if trim_line(line).is_empty() {
                        self.framing = Framing::Done;
                    }
                }
            }
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.decoded = self.decoded.saturating_add(bytes.len());
        if self.decoded > self.limit {
            return Err(HttpError::TooLarge { limit: self.limit });
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// The next line of `available` including its `\n`, if complete.
fn line(available: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    match memchr(b'\n', &available[..available.len().min(MAX_LINE)]) {
        Some(end) => Ok(Some(&available[..=end])),
        None if available.len() >= MAX_LINE => {
            Err(HttpError::Malformed("chunk framing line too long".into()))
        }
        None => Ok(None),
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
