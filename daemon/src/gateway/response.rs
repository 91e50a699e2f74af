//! Response bodies and the JSON responses the gateway writes itself (errors, registry,
//! metadata).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use prometheus_client::metrics::gauge::Gauge;

use super::conn::BoxError;
use super::tap::Tap;
use super::upstream::ResponseBody;

/// A response body: either written by the gateway or streamed from an upstream server.
pub type Body = Either<Full<Bytes>, UpstreamBody>;

/// An upstream response body, passed through frame by frame; optionally counted in the
/// active-streams gauge until it ends or the client goes away.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Source,
    active: Option<Gauge>,
    /// Filters list answers and reads call outcomes (see [`Tap`]); taken when the body ends.
    tap: Option<Box<Tap>>,
    /// The tap after the body's end, dropped with the body (once its last byte is written):
    /// its audit records are queued then, off the client's wait.
    ended: Option<Box<Tap>>,
    /// Sent in place of an error of the upstream body, which then ends cleanly (a virtual
    /// server's SSE event saying which member broke off).
    on_cut: Option<Bytes>,
}

/// Hands `response` to the request's tap, which its body then holds until it is dropped,
/// once its last byte was written: the records of the calls it answers are queued then, with
/// their duration to that point. An upstream body streams through the tap (which reads its
/// head: filtering, outcomes); an answer the gateway wrote itself only gives its status, and
/// costs an allocation (its body boxed), on these answers only.
pub fn tapped(mut tap: Tap, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let mut body = match body {
        Either::Right(upstream) => {
            tap.begin(&mut parts);
            upstream
        }
        Either::Left(full) => {
            tap.set_status(parts.status.as_u16());
            UpstreamBody::local(Box::pin(
                full.map_err(|never| -> BoxError { match never {} }),
            ))
        }
    };
    body.set_tap(tap);
    Response::from_parts(parts, Either::Right(body))
}

/// A stream the gateway writes itself (a virtual server's listening stream).
pub type LocalBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send>>;

/// Where an [`UpstreamBody`]'s frames come from.
// Boxing the upstream body would cost an allocation on every proxied request; local bodies
// (a virtual server's listening stream) are the rare case.
#[allow(clippy::large_enum_variant)]
enum Source {
    Upstream(ResponseBody),
    /// A stdio server's answer, from its bridge.
    Bridged(crate::stdio::BridgeBody),
    Local(LocalBody),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Upstream(body) => body.fmt(f),
            Source::Bridged(body) => body.fmt(f),
            Source::Local(_) => f.write_str("LocalBody"),
        }
    }
}

impl Source {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Source::Upstream(body) => Pin::new(body).poll_frame(cx),
            Source::Bridged(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Source::Local(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Bridged(body) => body.is_end_stream(),
            Source::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Upstream(body) => body.size_hint(),
            Source::Bridged(body) => body.size_hint(),
            Source::Local(body) => body.size_hint(),
        }
    }
}

impl UpstreamBody {
    pub fn new(inner: ResponseBody) -> Self {
        UpstreamBody {
            inner: Source::Upstream(inner),
            active: None,
            tap: None,
            ended: None,
            on_cut: None,
        }
    }

    /// A stdio server's answer, from its bridge.
    pub fn bridged(inner: crate::stdio::BridgeBody) -> Self {
        UpstreamBody {
            inner: Source::Bridged(inner),
            active: None,
            tap: None,
            ended: None,
            on_cut: None,
        }
    }

    /// A body the gateway streams itself.
    pub fn local(inner: LocalBody) -> Self {
        UpstreamBody {
            inner: Source::Local(inner),
            active: None,
            tap: None,
            ended: None,
            on_cut: None,
        }
    }

    /// Ends the body with `tail` instead of an error if the upstream body breaks off.
    pub fn on_cut(&mut self, tail: Bytes) {
        self.on_cut = Some(tail);
    }

    /// Passes the body through `tap` (which has read the response head).
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(Box::new(tap));
    }

    /// Counts this body in `gauge` until it is dropped.
    pub fn track(&mut self, gauge: Gauge) {
        gauge.inc();
        if let Some(previous) = self.active.replace(gauge) {
            previous.dec();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(gauge) = &self.active {
            gauge.dec();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(tap) = &mut this.tap else {
            return match this.inner.poll_frame(cx) {
                Poll::Ready(Some(Err(_))) if this.on_cut.is_some() => {
                    this.inner = Source::Local(Box::pin(http_body_util::Empty::new().map_err(
                        |never: std::convert::Infallible| -> BoxError { match never {} },
                    )));
                    Poll::Ready(this.on_cut.take().map(|tail| Ok(Frame::data(tail))))
                }
                other => other,
            };
        };
        loop {
            match this.inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = tap.data(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    let rest = tap.end();
                    this.ended = this.tap.take();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Ready(Some(Err(_))) if this.on_cut.is_some() => {
                    // The tap records what it saw when dropped.
                    this.tap = None;
                    this.inner = Source::Local(Box::pin(http_body_util::Empty::new().map_err(
                        |never: std::convert::Infallible| -> BoxError { match never {} },
                    )));
                    return Poll::Ready(this.on_cut.take().map(|tail| Ok(Frame::data(tail))));
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tap.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.tap {
            Some(tap) if tap.filters() => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Serializing plain structs and `json!` values cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": message, "server": server}` (`server` omitted when there is none).
pub fn error(status: StatusCode, message: &str, server: Option<&str>) -> Response<Body> {
    let body = match server {
        Some(server) => serde_json::json!({ "error": message, "server": server }),
        None => serde_json::json!({ "error": message }),
    };
    json(status, &body)
}

/// 503 with `Retry-After`.
pub fn unavailable(message: &str, server: &str, retry_after_secs: u64) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message, Some(server));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// An error with a `WWW-Authenticate` challenge (401, 403, or 400 for a query-string token).
pub fn challenge(
    status: StatusCode,
    message: &str,
    server: &str,
    www_authenticate: String,
) -> Response<Body> {
    let mut response = error(status, message, Some(server));
    if let Ok(value) = HeaderValue::try_from(www_authenticate) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}
