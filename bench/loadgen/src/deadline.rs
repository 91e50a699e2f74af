//! The time limit of each request (`--request-timeout`), kept without a timer operation per
//! request: a connection keeps one timer armed and moves it on only when it fires.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// The time limit of one connection's requests, which it sends one after the other.
///
/// A fresh timer per request (`tokio::time::timeout`) would be registered with the runtime's
/// timer wheel and removed again for every request, on the path the benchmark measures.
/// Instead the connection's one timer stays armed at the limit of an earlier request, which
/// is never later than the current request's (requests start in order). When it fires while
/// the current request is still within its own limit, it is moved on to that limit; so it is
/// reset at most once per `timeout`, whatever the rate of requests.
pub struct Deadline {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Deadline {
    pub fn new(timeout: Duration) -> Deadline {
        Deadline {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `request`, started at `started`, until it completes (`Some` of its output) or the
    /// timeout has passed since `started` (`None`; the request is dropped).
    pub async fn limit<F: Future>(&mut self, started: Instant, request: F) -> Option<F::Output> {
        let limit = tokio::time::Instant::from_std(started + self.timeout);
        if self.timer.deadline() > limit {
            // Only when a caller passes an earlier start than the previous request's.
            self.timer.as_mut().reset(limit);
        }
        let mut request = pin!(request);
        poll_fn(|cx| {
            if let Poll::Ready(output) = request.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            while self.timer.as_mut().poll(cx).is_ready() {
                if self.timer.deadline() >= limit {
                    return Poll::Ready(None);
                }
                // The timer was set for an earlier request: this one has time left.
                self.timer.as_mut().reset(limit);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_counts_from_each_request_s_own_start() {
        let start = now();
        let mut deadline = Deadline::new(Duration::from_secs(1));
        let first = deadline.limit(now(), tokio::time::sleep(Duration::from_millis(900)));
        assert_eq!(first.await, Some(()));
        // Answered at 1.4 s: after the first request's limit (1 s), within its own (1.9 s).
        let second = deadline.limit(now(), tokio::time::sleep(Duration::from_millis(500)));
        assert_eq!(second.await, Some(()));
        // Never answered: given up at its own limit (2.4 s), not earlier.
        let started = now();
        let third = deadline.limit(started, std::future::pending::<()>());
        assert_eq!(third.await, None);
        assert!(
            now() >= started + Duration::from_secs(1),
            "{:?}",
            now() - start
        );
        assert!(
            now() < started + Duration::from_secs(2),
            "{:?}",
            now() - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_start_than_the_last_request_s_still_gets_its_own_limit() {
        let early = now();
        let mut deadline = Deadline::new(Duration::from_secs(1));
        let first = deadline.limit(now(), tokio::time::sleep(Duration::from_millis(900)));
        assert_eq!(first.await, Some(()));
        // Answered at 1.4 s: the timer fired at 1 s and was moved on to 1.9 s.
        let second = deadline.limit(now(), tokio::time::sleep(Duration::from_millis(500)));
        assert_eq!(second.await, Some(()));
        // Its limit (1 s) is already past: given up at once, not when the timer fires (1.9 s).
        let late = deadline.limit(early, std::future::pending::<()>());
        assert_eq!(late.await, None);
        assert!(
            now() < early + Duration::from_millis(1500),
            "{:?}",
            now() - early
        );
    }
}
