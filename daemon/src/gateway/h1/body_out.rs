//! Sends a response body to the client as its frames come, from one hand-written future: the
//! frames ready at one wake-up gathered into one write, a lone frame written at once (an SSE
//! event never waits for the next), and the client watched for going away while the body
//! waits. The body is polled with the task's own waker, once per frame and once more to learn
//! that nothing else is ready, so a streamed event costs one read upstream and one write to
//! the client.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::gateway::conn::{BoxError, OpenStream};

/// Gathered output is written once it reaches this size (no more frames are gathered first).
pub const FLUSH_AT: usize = 64 * 1024;
/// A data frame at least this large is written from its own buffer, not copied.
pub const DIRECT_AT: usize = 16 * 1024;

/// How the frames are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// As they are, at most this many bytes in all.
    Length(u64),
    Chunked,
}

/// How sending the body ended. In every case what was gathered and not written yet is in
/// `out`, for the caller's last write.
#[derive(Debug)]
pub enum Sent {
    /// The body ended; this many bytes of it came.
    Ended(u64),
    /// The body failed, or broke its length.
    Failed(BoxError),
    /// The client closed its side, or its socket failed: the connection must close.
    ClientGone(BoxError),
}

/// Sends `body` through `out` (which may already hold the response head) to `io`, until the
/// body ends. Bytes the client sends meanwhile are kept in `read` (a pipelined request), and
/// once there are some nothing more is read.
pub async fn send<S, B>(
    io: &mut S,
    read: &mut BytesMut,
    out: &mut Vec<u8>,
    body: &mut B,
    wire: Wire,
    stream: &OpenStream,
) -> Sent
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut relay = Relay {
        wire,
        sent: 0,
        written: 0,
        direct: Bytes::new(),
        tail: b"",
        blocked: false,
    };
    let sent = poll_fn(|cx| relay.poll(cx, io, read, out, body, stream)).await;
    relay.unwritten_into(out);
    sent
}

struct Relay {
    wire: Wire,
    sent: u64,
    /// How much of `out` is written.
    written: usize,
    /// A large frame written from its own buffer after `out`, then `tail`.
    direct: Bytes,
    tail: &'static [u8],
    /// The client's socket took less than offered: the body waits until it takes the rest
    /// (back-pressure).
    blocked: bool,
}

impl Relay {
    fn poll<S, B>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        read: &mut BytesMut,
        out: &mut Vec<u8>,
        body: &mut B,
        stream: &OpenStream,
    ) -> Poll<Sent>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            // Gather every frame ready now, unless the client is not taking what was written,
            // or enough is gathered.
            let mut waiting = false;
            while !self.blocked && self.direct.is_empty() && out.len() < FLUSH_AT {
                let frame = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                    Poll::Ready(None) => return Poll::Ready(Sent::Ended(self.sent)),
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Sent::Failed(err.into())),
                    Poll::Ready(Some(Ok(frame))) => frame,
                };
                stream.moved();
                let Ok(data) = frame.into_data() else {
                    continue; // Trailers are not forwarded.
                };
                if data.is_empty() {
                    continue;
                }
                self.sent += data.len() as u64;
                if let Wire::Length(length) = self.wire
                    && self.sent > length
                {
                    return Poll::Ready(Sent::Failed(
                        format!("response body longer than its length {length}").into(),
                    ));
                }
                let tail: &'static [u8] = match self.wire {
                    Wire::Chunked => {
                        chunk_size_line(out, data.len());
                        b"\r\n"
                    }
                    Wire::Length(_) => b"",
                };
                if data.len() >= DIRECT_AT {
                    self.direct = data;
                    self.tail = tail;
                } else {
                    out.extend_from_slice(&data);
                    out.extend_from_slice(tail);
                }
            }
            match self.poll_write(cx, io, out) {
                Poll::Ready(Ok(())) if waiting => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Sent::ClientGone(err.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Everything is written and the body waits: a client that goes away ends it (an SSE
        // stream held open).
        match ready!(poll_client_gone(cx, io, read)) {
            Ok(()) => Poll::Ready(Sent::ClientGone("the client closed the connection".into())),
            Err(err) => Poll::Ready(Sent::ClientGone(err.into())),
        }
    }

    /// Leaves in `out` only what is not written yet.
    fn unwritten_into(&mut self, out: &mut Vec<u8>) {
        out.drain(..self.written);
        self.written = 0;
        out.extend_from_slice(&self.direct);
        self.direct = Bytes::new();
        out.extend_from_slice(self.tail);
        self.tail = b"";
    }

    /// Writes `out` (from `written`), then `direct`, then `tail`, with vectored writes; ready
    /// when all of it is written (`out` is then emptied).
    fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        out: &mut Vec<u8>,
    ) -> Poll<io::Result<()>> {
        loop {
            let head = &out[self.written..];
            if head.is_empty() && self.direct.is_empty() && self.tail.is_empty() {
                out.clear();
                self.written = 0;
                self.blocked = false;
                return Poll::Ready(Ok(()));
            }
            let slices = [
                IoSlice::new(head),
                IoSlice::new(&self.direct),
                IoSlice::new(self.tail),
            ];
            let Poll::Ready(written) = Pin::new(&mut *io).poll_write_vectored(cx, &slices) else {
                self.blocked = true;
                return Poll::Pending;
            };
            let mut n = written?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(head.len());
            self.written += from_head;
            n -= from_head;
            let from_direct = n.min(self.direct.len());
            bytes::Buf::advance(&mut self.direct, from_direct);
            n -= from_direct;
            self.tail = &self.tail[n..];
        }
    }
}

/// Ready when the client closed its side (`Ok`) or its socket failed; bytes that arrive
/// meanwhile (a pipelined request) are kept in `read`, and once there are some nothing more
/// is read (pending for ever).
fn poll_client_gone<S: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut S,
    read: &mut BytesMut,
) -> Poll<io::Result<()>> {
    while read.is_empty() {
        let mut probe = [0u8; 1024];
        let mut probe = ReadBuf::new(&mut probe);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut probe))?;
        if probe.filled().is_empty() {
            return Poll::Ready(Ok(()));
        }
        read.extend_from_slice(probe.filled());
    }
    Poll::Pending
}

/// Appends `{size:x}\r\n`.
fn chunk_size_line(out: &mut Vec<u8>, size: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut left = size;
    loop {
        at -= 1;
        digits[at] = HEX[left & 0xf];
        left >>= 4;
        if left == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body::Frame;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;
    use crate::gateway::conn::Watch;

    /// A body whose frames the test sends through a channel; it ends when the sender goes.
    struct Channel(mpsc::UnboundedReceiver<Bytes>);

    impl HttpBody for Channel {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    /// The gateway's side of a client connection, recording the size of every write.
    struct Recorded {
        inner: TcpStream,
        writes: Arc<Mutex<Vec<usize>>>,
    }

    impl Recorded {
        fn record(&self, written: &Poll<io::Result<usize>>) {
            if let Poll::Ready(Ok(n)) = written {
                self.writes.lock().unwrap().push(*n);
            }
        }
    }

    impl AsyncRead for Recorded {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorded {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write(cx, buf);
            self.record(&written);
            written
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            self.record(&written);
            written
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A connected pair: the gateway's side (recorded) and the client's.
    async fn connection() -> (Recorded, TcpStream, Arc<Mutex<Vec<usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Recorded {
            inner: server,
            writes: writes.clone(),
        };
        (recorded, client, writes)
    }

    fn chunk(data: &str) -> String {
        format!("{:x}\r\n{data}\r\n", data.len())
    }

    /// Sends the frames `rx` gives on `io` as `wire` says, `head` waiting in the output buffer:
    /// what `send` returned, and what it left in that buffer.
    async fn relay(
        mut io: Recorded,
        rx: mpsc::UnboundedReceiver<Bytes>,
        head: &[u8],
        wire: Wire,
    ) -> (Sent, Vec<u8>) {
        let watch = Arc::new(Watch::new(1));
        let open = OpenStream::new(&watch);
        let mut read = BytesMut::new();
        let mut out = head.to_vec();
        let mut body = Channel(rx);
        let sent = send(&mut io, &mut read, &mut out, &mut body, wire, &open).await;
        (sent, out)
    }

    async fn receive(client: &mut TcpStream, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    #[tokio::test]
    async fn frames_ready_together_leave_in_one_write_and_a_lone_frame_at_once() {
        let (io, mut client, writes) = connection().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let events = ["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"];
        for event in events {
            tx.send(Bytes::from_static(event.as_bytes())).unwrap();
        }
        let relay = tokio::spawn(relay(io, rx, b"HTTP/1.1 200 OK\r\n\r\n", Wire::Chunked));

        // The head and the three events that were ready together: one write.
        let first = format!(
            "HTTP/1.1 200 OK\r\n\r\n{}",
            events.iter().map(|event| chunk(event)).collect::<String>()
        );
        receive(&mut client, &first).await;
        assert_eq!(*writes.lock().unwrap(), [first.len()]);

        // A lone event goes out at once, while the body stays open.
        tx.send(Bytes::from_static(b"data: 4\n\n")).unwrap();
        let lone = chunk("data: 4\n\n");
        receive(&mut client, &lone).await;
        assert_eq!(*writes.lock().unwrap(), [first.len(), lone.len()]);

        // The body ends: nothing is left for the caller's last write but its own bytes.
        drop(tx);
        let (sent, out) = relay.await.unwrap();
        assert!(matches!(sent, Sent::Ended(36)), "{sent:?}");
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_frame_too_large_to_copy_goes_out_with_what_was_gathered_in_one_write() {
        let (io, mut client, writes) = connection().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let large = "x".repeat(DIRECT_AT);
        tx.send(Bytes::from_static(b"small")).unwrap();
        tx.send(Bytes::from(large.clone())).unwrap();
        drop(tx);
        let relay = tokio::spawn(relay(io, rx, b"", Wire::Chunked));
        let expected = format!("{}{}", chunk("small"), chunk(&large));
        receive(&mut client, &expected).await;
        let (sent, out) = relay.await.unwrap();
        assert!(matches!(sent, Sent::Ended(n) if n == 5 + DIRECT_AT as u64));
        assert!(out.is_empty());
        assert_eq!(writes.lock().unwrap().iter().sum::<usize>(), expected.len());
    }

    #[tokio::test]
    async fn a_body_longer_than_its_length_fails_and_a_client_that_leaves_ends_the_wait() {
        let (io, _client, _) = connection().await;
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Bytes::from_static(b"12345")).unwrap();
        let (sent, _) = relay(io, rx, b"", Wire::Length(4)).await;
        assert!(matches!(sent, Sent::Failed(_)), "{sent:?}");

        let (io, client, _) = connection().await;
        let (_tx, rx) = mpsc::unbounded_channel();
        drop(client);
        let (sent, _) = relay(io, rx, b"", Wire::Chunked).await;
        assert!(matches!(sent, Sent::ClientGone(_)), "{sent:?}");
    }

    #[test]
    fn chunk_size_lines_are_lowercase_hex() {
        for size in [1, 9, 10, 255, 4096, 0xdead_beef, usize::MAX] {
            let mut out = Vec::new();
            chunk_size_line(&mut out, size);
            assert_eq!(out, format!("{size:x}\r\n").into_bytes());
        }
    }
}
