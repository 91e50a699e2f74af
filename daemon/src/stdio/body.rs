//! The response body of a bridged request: a whole JSON answer, or an SSE stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http_body::{Frame, SizeHint};

/// A body the bridge answers with.
pub enum BridgeBody {
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn Stream<Item = Bytes> + Send>>),
}

impl std::fmt::Debug for BridgeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeBody::Full(bytes) => f
                .debug_tuple("Full")
                .field(&bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            BridgeBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl http_body::Body for BridgeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            BridgeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BridgeBody::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, BridgeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            BridgeBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            BridgeBody::Full(None) => SizeHint::with_exact(0),
            BridgeBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// One SSE `message` event carrying `json` (one line, see `bridge::one_line`).
pub fn sse_event(json: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(json.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    let start = event.len();
    event.extend_from_slice(json);
    super::bridge::one_line(&mut event[start..]);
    event.extend_from_slice(b"\n\n");
    event
}
