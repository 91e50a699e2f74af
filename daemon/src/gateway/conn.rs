//! Liveness of one client connection: the watchdog that closes it when it makes no progress,
//! and the body wrappers that report progress and end a body that moves no byte.
//!
//! Each connection has one `Watch` (two counters) and its driver one timer, reset on progress
//! and checked a few times per timeout: a request that is opened, a data frame that moves in
//! either direction, or a stream that ends is progress. With no request seen yet, the
//! connection must deliver its first complete request head within the header timeout; with
//! no stream open, it is closed after the idle timeout; with streams open but no byte moving
//! (a stalled request body, a client that stopped reading), after the body idle timeout.
//! Closing the connection drops its streams, and with them their upstream connections.
//!
//! Bodies add their own per-stream timer (`IdleTimer`), created only the first time a body
//! has to wait: a body that moves no byte for the body idle timeout ends with an error, so
//! one stalled stream is cut even while others on the same connection flow. A response body
//! that hyper does not poll at all (its h2 stream has no flow-control window) cannot time
//! itself out: each open stream has a slot in the `Watch` with the time it last moved, and
//! the watchdog closes the connection when one stood still for twice the body idle timeout.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::side_wake::SideWake;

/// The error a body ends with when it moved no byte for the body idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no byte moved for {0:?} (gateway.body_idle_timeout)")]
pub struct BodyIdle(pub Duration);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A free stream slot.
const FREE: u64 = u64::MAX;

/// Most stream slots of one connection (a `gateway.max_streams` above it leaves the streams
/// past it to their per-body timers only).
pub const MAX_TRACKED_STREAMS: usize = 1024;

/// The counters one connection's streams and bodies report to, and one slot per stream the
/// connection may have open, holding when that stream last moved (on the watchdog's coarse
/// clock).
#[derive(Debug)]
pub struct Watch {
    open: AtomicUsize,
    progress: AtomicU64,
    /// Milliseconds since the connection was accepted, as of the watchdog's last check.
    clock_ms: AtomicU64,
    slots: Box<[AtomicU64]>,
}

impl Watch {
    /// A watch for a connection with at most `streams` streams open at once (1 for HTTP/1.1).
    pub fn new(streams: usize) -> Self {
        Watch {
            open: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            clock_ms: AtomicU64::new(0),
            slots: (0..streams.max(1)).map(|_| AtomicU64::new(FREE)).collect(),
        }
    }

    fn progressed(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// True when an open stream has not moved for `limit` (its client gave it no window, so
    /// hyper no longer polls its body, while other streams keep the connection busy).
    fn has_stalled_stream(&self, now_ms: u64, limit: Duration) -> bool {
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.slots.iter().any(|slot| {
            let moved = slot.load(Ordering::Relaxed);
            moved != FREE && now_ms.saturating_sub(moved) >= limit
        })
    }
}

/// What a stream's bodies report progress to.
#[derive(Debug, Clone)]
pub struct StreamProgress {
    watch: Arc<Watch>,
    slot: Option<usize>,
}

impl StreamProgress {
    pub fn moved(&self) {
        self.watch.progressed();
        if let Some(slot) = self.slot {
            let now = self.watch.clock_ms.load(Ordering::Relaxed);
            self.watch.slots[slot].store(now, Ordering::Relaxed);
        }
    }
}

/// One request in flight on a connection, from its head until its response body is done.
#[derive(Debug)]
pub struct OpenStream(StreamProgress);

impl OpenStream {
    pub fn new(watch: &Arc<Watch>) -> Self {
        watch.open.fetch_add(1, Ordering::Relaxed);
        watch.progressed();
        let now = watch.clock_ms.load(Ordering::Relaxed);
        let slot = watch.slots.iter().position(|slot| {
            slot.compare_exchange(FREE, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        });
        OpenStream(StreamProgress {
            watch: Arc::clone(watch),
            slot,
        })
    }

    /// The handle the stream's request body reports to.
    pub fn progress(&self) -> StreamProgress {
        self.0.clone()
    }

    /// The response head is ready.
    pub fn moved(&self) {
        self.0.moved();
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let watch = &self.0.watch;
        if let Some(slot) = self.0.slot {
            watch.slots[slot].store(FREE, Ordering::Relaxed);
        }
        watch.open.fetch_sub(1, Ordering::Relaxed);
        watch.progressed();
    }
}

/// The timeouts the watchdog applies.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body_idle: Duration,
}

/// How long an SSE stream that mcpd writes itself (a stdio server's, a virtual server's) may
/// stay quiet before it carries a `: keep-alive` comment: a third of `body_idle`, at most 30 s.
/// So the watchdog never ends a stream that is only waiting (on a slow tool, or on a person's
/// answer to an elicitation), whatever `gateway.body_idle_timeout` is set to.
pub fn sse_keep_alive(body_idle: Duration) -> Duration {
    (body_idle / 3).min(Duration::from_secs(30))
}

/// How a connection driven by [`drive`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Finished,
    ForceClosed,
    /// The watchdog closed it; says which timeout.
    TimedOut(&'static str),
}

/// Runs `connection` until it ends, `force_close` is cancelled, or it makes no progress for
/// the timeout that applies to its state (measured from `accepted`).
///
/// The connection is polled on every wake-up of the task; the shutdown signal and the
/// watchdog's timer only after their own waker fired (`SideWake`): they are ready once in a
/// long while, and polling them on each wake-up cost more than the rest of the watchdog.
pub async fn drive<C, E>(
    connection: C,
    force_close: &CancellationToken,
    watch: &Watch,
    timeouts: Timeouts,
    accepted: Instant,
    peer: std::net::SocketAddr,
) -> Ended
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = pin!(connection);
    let mut force_closed = pin!(force_close.cancelled());
    let mut timer = pin!(tokio::time::sleep_until(accepted + timeouts.header / 4));
    let mut progress = Progress {
        seen: 0,
        since: accepted,
    };
    let side = SideWake::new();
    poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(err) = result {
                tracing::debug!(%peer, cause = %err, "client connection ended with an error");
            }
            return Poll::Ready(Ended::Finished);
        }
        if !side.due(cx) {
            return Poll::Pending;
        }
        let mut side_cx = side.context();
        if force_closed.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(Ended::ForceClosed);
        }
        while timer.as_mut().poll(&mut side_cx).is_ready() {
            match progress.check(watch, &timeouts, accepted, peer) {
                Ok(next) => timer.as_mut().reset(next),
                Err(ended) => return Poll::Ready(ended),
            }
        }
        Poll::Pending
    })
    .await
}

/// The watchdog's view of a connection's progress between two checks.
struct Progress {
    /// The progress count at the last check that saw it move.
    seen: u64,
    /// When it last moved.
    since: Instant,
}

impl Progress {
    /// A check, when the watchdog's timer fires: `Ok` with when to check next, or `Err` with
    /// why the connection is to be closed.
    fn check(
        &mut self,
        watch: &Watch,
        timeouts: &Timeouts,
        accepted: Instant,
        peer: std::net::SocketAddr,
    ) -> Result<Instant, Ended> {
        let now = Instant::now();
        let now_ms = u64::try_from((now - accepted).as_millis()).unwrap_or(u64::MAX);
        watch.clock_ms.store(now_ms, Ordering::Relaxed);
        let progress = watch.progress.load(Ordering::Relaxed);
        if progress != self.seen {
            self.seen = progress;
            self.since = now;
        }
        let open = watch.open.load(Ordering::Relaxed) > 0;
        // Per-body timers end a stalled body at the body idle timeout; a stream that is not
        // even polled (no flow-control window) is caught here, at twice it.
        if open && watch.has_stalled_stream(now_ms, timeouts.body_idle * 2) {
            tracing::debug!(%peer, "closing a client connection with a stream that stood still");
            return Err(Ended::TimedOut("gateway.body_idle_timeout"));
        }
        let (limit, which) = if open {
            (timeouts.body_idle, "gateway.body_idle_timeout")
        } else if progress == 0 {
            (timeouts.header, "gateway.header_timeout")
        } else {
            (timeouts.idle, "gateway.idle_timeout")
        };
        let deadline = self.since + limit;
        if now >= deadline {
            tracing::debug!(%peer, timeout = which, "closing a client connection that made no progress");
            return Err(Ended::TimedOut(which));
        }
        Ok((now + limit / 4).min(deadline))
    }
}

/// A per-body timer that fires when the body moved no byte for `idle`. Allocated the first
/// time the body has to wait, then reset in place.
#[derive(Debug)]
pub struct IdleTimer {
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    moved: bool,
}

impl IdleTimer {
    pub fn new(idle: Duration) -> Self {
        IdleTimer {
            idle,
            sleep: None,
            moved: false,
        }
    }

    /// The body yielded a frame.
    pub fn moved(&mut self) {
        self.moved = true;
    }

    /// The body has to wait: arms the timer (from now, if it moved since the last wait) and
    /// returns true when it expired.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if std::mem::take(&mut self.moved) {
                    sleep.as_mut().reset(Instant::now() + self.idle);
                }
                sleep
            }
            None => {
                self.moved = false;
                self.sleep.insert(Box::pin(tokio::time::sleep(self.idle)))
            }
        };
        sleep.as_mut().poll(cx).is_ready()
    }

    pub fn error(&self) -> BoxError {
        Box::new(BodyIdle(self.idle))
    }
}

/// A client's request body: reports progress to its connection and ends with [`BodyIdle`]
/// when it moves no byte for the body idle timeout.
#[derive(Debug)]
pub struct ClientBody {
    source: Source,
    progress: StreamProgress,
    timer: IdleTimer,
}

#[derive(Debug)]
enum Source {
    Incoming(Incoming),
    /// A body the hand HTTP/1.1 path (`h1`) read whole, yielded as one frame.
    Read(Option<Bytes>),
}

impl ClientBody {
    pub fn new(incoming: Incoming, progress: StreamProgress, idle: Duration) -> Self {
        ClientBody {
            source: Source::Incoming(incoming),
            progress,
            timer: IdleTimer::new(idle),
        }
    }

    /// A body already read whole (its progress was reported as it was read).
    pub fn read(body: Bytes, progress: StreamProgress, idle: Duration) -> Self {
        ClientBody {
            source: Source::Read(Some(body).filter(|body| !body.is_empty())),
            progress,
            timer: IdleTimer::new(idle),
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let incoming = match &mut this.source {
            Source::Incoming(incoming) => incoming,
            Source::Read(read) => {
                return Poll::Ready(read.take().map(|data| Ok(Frame::data(data))));
            }
        };
        match Pin::new(incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progress.moved();
                this.timer.moved();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.timer.expired(cx) => {
                tracing::debug!("request body moved no byte within gateway.body_idle_timeout");
                Poll::Ready(Some(Err(this.timer.error())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Incoming(incoming) => incoming.is_end_stream(),
            Source::Read(read) => read.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Incoming(incoming) => incoming.size_hint(),
            Source::Read(read) => {
                SizeHint::with_exact(read.as_ref().map_or(0, |data| data.len() as u64))
            }
        }
    }
}

/// A response body on its way to the client: reports progress to the connection, and keeps
/// its request counted as open until it is dropped.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    stream: OpenStream,
}

impl<B> Watched<B> {
    pub fn new(inner: B, stream: OpenStream) -> Self {
        Watched { inner, stream }
    }
}

impl<B> HttpBody for Watched<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if matches!(frame, Some(Ok(_))) {
            this.stream.moved();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body_idle: Duration::from_secs(300),
        }
    }

    async fn run(watch: &Watch, connection: impl Future<Output = Result<(), String>>) -> Ended {
        let never = CancellationToken::new();
        let peer = "127.0.0.1:1".parse().unwrap();
        drive(connection, &never, watch, timeouts(), Instant::now(), peer).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_header_deadline() {
        let watch = Watch::new(1);
        let start = Instant::now();
        let ended = run(&watch, std::future::pending()).await;
        assert_eq!(ended, Ended::TimedOut("gateway.header_timeout"));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(10) && took <= Duration::from_millis(12_500));
    }

    #[tokio::test(start_paused = true)]
    async fn open_streams_get_the_body_idle_timeout_and_idle_connections_the_idle_one() {
        let watch = Arc::new(Watch::new(4));
        let stream = OpenStream::new(&watch);
        let start = Instant::now();
        let ended = run(&watch, std::future::pending()).await;
        assert_eq!(ended, Ended::TimedOut("gateway.body_idle_timeout"));
        assert!(start.elapsed() >= Duration::from_secs(300));
        drop(stream);
        let start = Instant::now();
        let ended = run(&watch, std::future::pending()).await;
        assert_eq!(ended, Ended::TimedOut("gateway.idle_timeout"));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(60) && took <= Duration::from_secs(76));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_keeps_a_connection_open() {
        let watch = Arc::new(Watch::new(4));
        let stream = OpenStream::new(&watch);
        let feeder = {
            let progress = stream.progress();
            async move {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_secs(100)).await;
                    progress.moved();
                }
                Ok::<(), String>(())
            }
        };
        assert_eq!(run(&watch, feeder).await, Ended::Finished);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_stands_still_among_moving_ones_closes_the_connection() {
        let watch = Arc::new(Watch::new(4));
        let stalled = OpenStream::new(&watch);
        let moving = OpenStream::new(&watch);
        let feeder = {
            let moving = moving.progress();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    moving.moved();
                }
            }
        };
        let start = Instant::now();
        let ended = run(&watch, async {
            feeder.await;
            Ok(())
        })
        .await;
        assert_eq!(ended, Ended::TimedOut("gateway.body_idle_timeout"));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(600) && took <= Duration::from_secs(700));
        drop((stalled, moving));
        assert!(
            watch
                .slots
                .iter()
                .all(|slot| slot.load(Ordering::Relaxed) == FREE)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timer_fires_only_after_a_quiet_period() {
        let mut timer = IdleTimer::new(Duration::from_secs(5));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!timer.expired(&mut cx));
        tokio::time::advance(Duration::from_secs(4)).await;
        timer.moved();
        assert!(!timer.expired(&mut cx));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!timer.expired(&mut cx));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(timer.expired(&mut cx));
    }
}
