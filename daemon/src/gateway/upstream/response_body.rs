//! An upstream response body: hyper's (a remote server's) or decoded here from a local
//! server's connection; reading it drives the connection, reading it to its end gives the
//! connection back to the pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::body::Decoder;
use super::{Conn, Key, Link, Pool, UpstreamError};
use crate::gateway::conn::{BoxError, IdleTimer};

/// An upstream response body. Reading it drives the connection; reading it to the end gives
/// the connection back to the pool.
pub struct ResponseBody {
    pub(super) source: Source,
    pub(super) link: Option<Link>,
    /// Read to its end (hyper's body: the connection goes back when the body is dropped).
    pub(super) finished: bool,
    pub(super) pool: Arc<Pool>,
    pub(super) port: Key,
    pub(super) idle: IdleTimer,
}

pub(super) enum Source {
    Hyper(Incoming),
    /// Decoded here from the link's read buffer; `keep_alive`: the head allows another
    /// request on the connection.
    H1 {
        decoder: Decoder,
        keep_alive: bool,
    },
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("port", &self.port)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// Polls hyper's connection so it reads and hands over what the server sent.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(Link {
            conn: Conn::Hyper(conn),
            ..
        }) = self.link.as_mut()
            && Pin::new(&mut conn.connection).poll(cx).is_ready()
        {
            // The connection ended; the body sees its end or its error.
            self.link = None;
        }
    }

    /// A hand-read body reached its end: its connection goes back to the pool at once when
    /// the head allowed it and the server sent nothing beyond the body; else it is closed.
    pub(super) fn end_h1(&mut self) {
        self.finished = true;
        let Source::H1 { keep_alive, .. } = self.source else {
            return;
        };
        let Some(link) = self.link.take() else {
            return;
        };
        let clean = matches!(&link.conn, Conn::H1(conn) if conn.read.is_empty());
        if keep_alive && clean {
            self.pool.give_back(self.port, link);
        } else if !clean {
            tracing::debug!(
                to = %self.port,
                "upstream sent bytes beyond its response; closing the connection"
            );
        }
    }

    fn poll_h1(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (
            Source::H1 { decoder, .. },
            Some(Link {
                conn: Conn::H1(conn),
                ..
            }),
        ) = (&mut self.source, self.link.as_mut())
        else {
            return Poll::Ready(None);
        };
        match conn.poll_data(decoder, cx) {
            Poll::Ready(Some(Ok(data))) => {
                self.idle.moved();
                if decoder.is_done() {
                    // The caller may not poll again after the last bytes of a known length.
                    self.end_h1();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(None) => {
                self.end_h1();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(to = %self.port, cause = %err, "upstream response body failed");
                self.link = None;
                Poll::Ready(Some(Err(UpstreamError::from(err).into())))
            }
            Poll::Pending if self.idle.expired(cx) => {
                tracing::debug!(
                    to = %self.port,
                    "response body moved no byte within gateway.body_idle_timeout"
                );
                self.link = None;
                Poll::Ready(Some(Err(self.idle.error())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if matches!(this.source, Source::H1 { .. }) {
            return this.poll_h1(cx);
        }
        this.drive(cx);
        let Source::Hyper(incoming) = &mut this.source else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(&mut *incoming).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending if this.idle.expired(cx) => {
                // Ends the body; the connection is dropped with it (not finished).
                tracing::debug!(
                    to = %this.port,
                    "response body moved no byte within gateway.body_idle_timeout"
                );
                return Poll::Ready(Some(Err(this.idle.error())));
            }
            Poll::Pending => return Poll::Pending,
        };
        this.idle.moved();
        match &frame {
            None => this.finished = true,
            Some(Ok(_)) if incoming.is_end_stream() => {
                // A body of known length that is complete: the caller may not poll again, so
                // let the connection finish the message now.
                this.finished = true;
                this.drive(cx);
            }
            Some(_) => {}
        }
        Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Hyper(incoming) => incoming.is_end_stream(),
            Source::H1 { decoder, .. } => decoder.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Hyper(incoming) => incoming.size_hint(),
            Source::H1 { decoder, .. } => match decoder.remaining() {
                Some(left) => SizeHint::with_exact(left),
                None => SizeHint::default(),
            },
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.finished
            && let Some(link) = self.link.take()
        {
            self.pool.give_back(self.port, link);
        }
    }
}
