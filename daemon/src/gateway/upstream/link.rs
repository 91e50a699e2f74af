//! One plain HTTP/1.1 connection to a local server, and the exchange of one request on it:
//! the request head (and a whole body with it) written with one `writev`, a streamed body
//! written as it comes (with the client's `Content-Length`, else chunked), and the response
//! head read into a buffer the connection keeps from request to request.
//!
//! The request body is written while the response head is awaited: a server that answers
//! before reading the whole body (an early error) is heard, and its connection is then not
//! reused.

use std::future::poll_fn;
use std::io::Write as _;
use std::io::{ErrorKind, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use http::{Method, Request};
use http_body::Body as HttpBody;
use http_body_util::Either;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::RequestBody;
use super::body::Decoder;
use super::response_head::{self, H1Error, Head};
use crate::gateway::MAX_HEAD_BYTES;
use crate::gateway::proxy::decimal;

/// Spare room made in the read buffer before a read that would find less than a quarter.
const READ_SIZE: usize = 8 * 1024;

/// A connection and its buffers.
#[derive(Debug)]
pub struct H1Link {
    pub(super) stream: TcpStream,
    /// Bytes read and not yet consumed; body data is split off it, not copied.
    pub(super) read: BytesMut,
    /// The request head being written (then chunk-size lines).
    write: Vec<u8>,
    /// The response head's deadline, kept from exchange to exchange and moved to each new
    /// one (made by the first exchange; `None` while one is in flight).
    deadline: Option<Pin<Box<Sleep>>>,
}

/// The request could not be sent at all; here it is back.
pub enum Failed {
    NotSent(Box<Request<RequestBody>>),
    Error(H1Error),
}

impl H1Link {
    pub fn new(stream: TcpStream) -> Self {
        H1Link {
            stream,
            read: BytesMut::new(),
            write: Vec::new(),
            deadline: None,
        }
    }

    /// An idle connection still open and silent: not closed by its server, and with nothing
    /// sent unasked (a desynchronised server's leftovers must not answer the next request).
    /// Costs no system call while the socket's readiness says nothing happened.
    pub fn is_idle_open(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(err) if err.kind() == ErrorKind::WouldBlock)
    }

    /// Reads more into the read buffer: the number of bytes, 0 at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
        let room = self.read.capacity() - self.read.len();
        loop {
            match self.stream.try_read_buf(&mut self.read) {
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_read_ready(cx))?;
                }
                Ok(read) if read > 0 && read < room => {
                    // A short read emptied the socket: forget its readiness (as tokio's own
                    // `poll_read` does), so the next read and the idle check wait for the
                    // reactor's next event instead of asking the kernel for an EAGAIN.
                    // Bytes that arrive later raise a new event.
                    let _ = self.stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(std::io::Error::from(ErrorKind::WouldBlock))
                    });
                    return Poll::Ready(Ok(read));
                }
                other => return Poll::Ready(other),
            }
        }
    }

    /// Writes `request`, with the header lines `extra` after its own, and reads the final
    /// response head, by `deadline`.
    pub async fn exchange(
        &mut self,
        request: Request<RequestBody>,
        deadline: Instant,
        extra: &[u8],
    ) -> Result<Head, Failed> {
        let mut timer = match self.deadline.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let result = self.exchange_until(request, extra, &mut timer).await;
        self.deadline = Some(timer);
        result
    }

    async fn exchange_until(
        &mut self,
        request: Request<RequestBody>,
        extra: &[u8],
        timer: &mut Pin<Box<Sleep>>,
    ) -> Result<Head, Failed> {
        let head_request = request.method() == Method::HEAD;
        let (parts, mut body) = request.into_parts();

        let mut out = Out::default();
        let mut framing = BodyWrite::None;
        self.write.clear();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str());
        self.write
            .extend_from_slice(parts.method.as_str().as_bytes());
        self.write.push(b' ');
        self.write.extend_from_slice(target.as_bytes());
        self.write.extend_from_slice(b" HTTP/1.1\r\n");
        let client_length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let client_chunked = parts.headers.contains_key(TRANSFER_ENCODING);
        match &mut body {
            Either::Left(full) => {
                let data = poll_now(full).unwrap_or_default();
                self.write.extend_from_slice(b"content-length: ");
                self.write
                    .extend_from_slice(decimal(data.len() as u64, &mut [0; 20]));
                self.write.extend_from_slice(b"\r\n");
                out.data = data;
            }
            Either::Right(stream) => {
                framing = match client_length {
                    Some(length) if !client_chunked => {
                        let _ = write!(self.write, "content-length: {length}\r\n");
                        BodyWrite::Length(length)
                    }
                    _ if stream.is_end_stream() && !client_chunked => BodyWrite::Length(0),
                    _ => {
                        self.write
                            .extend_from_slice(b"transfer-encoding: chunked\r\n");
                        BodyWrite::Chunked
                    }
                };
            }
        }
        for (name, value) in &parts.headers {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            self.write.extend_from_slice(name.as_str().as_bytes());
            self.write.extend_from_slice(b": ");
            self.write.extend_from_slice(value.as_bytes());
            self.write.extend_from_slice(b"\r\n");
        }
        self.write.extend_from_slice(extra);
        self.write.extend_from_slice(b"\r\n");
        out.head_len = self.write.len();

        let mut exchange = Exchange {
            link: self,
            parts: Some(parts),
            out,
            body,
            framing,
            written: 0,
            sent: false,
            write_error: None,
            scanned: 0,
        };
        poll_fn(|cx| match exchange.poll(cx, head_request) {
            Poll::Pending if timer.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(Failed::Error(H1Error::HeadTimeout)))
            }
            polled => polled,
        })
        .await
    }
}

/// How the rest of a streamed request body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyWrite {
    /// Nothing (left) to write: a whole body went out with the head.
    None,
    /// This many bytes still to come from the body.
    Length(u64),
    Chunked,
}

/// What is waiting to be written: the bytes of `H1Link::write` from `head_pos` to
/// `head_len`, then `data`, then `tail`.
#[derive(Default)]
struct Out {
    head_pos: usize,
    head_len: usize,
    data: Bytes,
    tail: &'static [u8],
}

struct Exchange<'a> {
    link: &'a mut H1Link,
    /// The request head, to give the request back when none of it could be written.
    parts: Option<http::request::Parts>,
    out: Out,
    body: RequestBody,
    framing: BodyWrite,
    written: usize,
    /// The whole request was written.
    sent: bool,
    write_error: Option<std::io::Error>,
    /// How much of the read buffer was searched for the end of the head.
    scanned: usize,
}

impl Exchange<'_> {
    fn poll(&mut self, cx: &mut Context<'_>, head_request: bool) -> Poll<Result<Head, Failed>> {
        if !self.sent && self.write_error.is_none() {
            match self.poll_send(cx) {
                Poll::Ready(Ok(())) => self.sent = true,
                Poll::Ready(Err(Failed::Error(H1Error::Io(_)))) if self.written == 0 => {
                    return Poll::Ready(Err(self.unsent()));
                }
                Poll::Ready(Err(Failed::Error(H1Error::Io(err)))) => self.write_error = Some(err),
                Poll::Ready(Err(failed)) => return Poll::Ready(Err(failed)),
                Poll::Pending => {}
            }
        }
        loop {
            let buf = &self.link.read;
            if response_head::has_head_end(buf, self.scanned) || buf.len() > MAX_HEAD_BYTES {
                let fields = match &mut self.parts {
                    Some(parts) if self.sent => &mut parts.headers,
                    _ => &mut HeaderMap::new(),
                };
                match response_head::parse(&mut self.link.read, head_request, fields) {
                    Ok(Some(mut head)) => {
                        // An answer before the whole request went out: the server and this
                        // side no longer agree where the next message starts.
                        head.keep_alive &= self.sent;
                        return Poll::Ready(Ok(head));
                    }
                    Ok(None) => {}
                    Err(err) => return Poll::Ready(Err(Failed::Error(err))),
                }
            }
            self.scanned = self.link.read.len();
            let received = self.link.read.len();
            match ready!(self.link.poll_fill(cx)) {
                Ok(0) => {
                    let err = match self.write_error.take() {
                        Some(err) => H1Error::Io(err),
                        None if received == 0 => H1Error::Closed,
                        None => H1Error::ClosedInHead,
                    };
                    return Poll::Ready(Err(Failed::Error(err)));
                }
                Ok(_) => {}
                Err(err) => return Poll::Ready(Err(Failed::Error(H1Error::Io(err)))),
            }
        }
    }

    /// The request, whole again, when nothing of it was written (the body was not polled
    /// yet: the head goes out first).
    fn unsent(&mut self) -> Failed {
        let body = match std::mem::replace(&mut self.body, Either::Left(Default::default())) {
            Either::Left(_) => Either::Left(http_body_util::Full::new(std::mem::take(
                &mut self.out.data,
            ))),
            stream => stream,
        };
        match self.parts.take() {
            Some(parts) => Failed::NotSent(Box::new(Request::from_parts(parts, body))),
            None => Failed::Error(H1Error::Closed),
        }
    }

    /// Writes what is pending, then the body as it comes; ready when the whole request is out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        loop {
            ready!(self.poll_write_out(cx)).map_err(|err| Failed::Error(H1Error::Io(err)))?;
            let Either::Right(stream) = &mut self.body else {
                return Poll::Ready(Ok(()));
            };
            if self.framing == BodyWrite::None {
                // The last chunk is out.
                return Poll::Ready(Ok(()));
            }
            if self.framing == BodyWrite::Length(0) && stream.is_end_stream() {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut *stream).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // Trailers are not forwarded.
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.link.write.clear();
                    self.out.head_pos = 0;
                    match &mut self.framing {
                        BodyWrite::Length(left) => {
                            *left = left
                                .checked_sub(data.len() as u64)
                                .ok_or(Failed::Error(H1Error::RequestLength))?;
                        }
                        BodyWrite::Chunked => {
                            let _ = write!(self.link.write, "{:x}\r\n", data.len());
                            self.out.tail = b"\r\n";
                        }
                        BodyWrite::None => {}
                    }
                    self.out.head_len = self.link.write.len();
                    self.out.data = data;
                }
                Some(Err(err)) => {
                    return Poll::Ready(Err(Failed::Error(H1Error::RequestBody(err))));
                }
                None => {
                    match self.framing {
                        BodyWrite::Length(0) | BodyWrite::None => {}
                        BodyWrite::Length(_) => {
                            return Poll::Ready(Err(Failed::Error(H1Error::RequestLength)));
                        }
                        BodyWrite::Chunked => {
                            self.out.tail = b"0\r\n\r\n";
                            self.framing = BodyWrite::None;
                            return self
                                .poll_write_out(cx)
                                .map_err(|err| Failed::Error(H1Error::Io(err)));
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let out = &mut self.out;
            let head = &self.link.write[out.head_pos..out.head_len];
            if head.is_empty() && out.data.is_empty() && out.tail.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let slices = [
                IoSlice::new(head),
                IoSlice::new(&out.data),
                IoSlice::new(out.tail),
            ];
            match self.link.stream.try_write_vectored(&slices) {
                Ok(0) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Ok(mut n) => {
                    self.written += n;
                    let from_head = n.min(head.len());
                    out.head_pos += from_head;
                    n -= from_head;
                    let from_data = n.min(out.data.len());
                    bytes::Buf::advance(&mut out.data, from_data);
                    n -= from_data;
                    out.tail = &out.tail[n..];
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    ready!(self.link.stream.poll_write_ready(cx))?;
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// The data of a whole body, which is ready at once.
fn poll_now(full: &mut http_body_util::Full<Bytes>) -> Option<Bytes> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(full).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    }
}

impl H1Link {
    /// The next piece of the response body `decoder` frames: `None` at its end (then the
    /// decoder is done), an error when the server broke the framing or closed too early.
    pub fn poll_data(
        &mut self,
        decoder: &mut Decoder,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, H1Error>>> {
        loop {
            match decoder.decode(&mut self.read) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if decoder.is_done() => return Poll::Ready(None),
                Ok(None) => {}
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    return Poll::Ready(match decoder.eof() {
                        Ok(()) => None,
                        Err(err) => Some(Err(err)),
                    });
                }
                Ok(_) => {}
                Err(err) => return Poll::Ready(Some(Err(H1Error::Io(err)))),
            }
        }
    }
}
