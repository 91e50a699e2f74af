//! Futures that a task polls only when their own waker fired, next to one it polls every time.
//!
//! A client connection's task drives the connection (woken for every read and write) and,
//! beside it, the watchdog's shutdown signal and timer, which are ready once in a long while.
//! Polled together on every wake-up (as `select!` does), those two cost more than a thousand
//! instructions per proxied call for nothing: a look at the cancellation token under its
//! mutex, the re-registration of its waiter, the timer entry's check. Polled with a waker of
//! their own instead, they are polled again only after that waker was woken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};

use futures::task::AtomicWaker;

/// The waker handed to the side futures: marks them due and wakes the task.
#[derive(Debug)]
struct Due {
    /// A side future's waker was woken since the task last polled them (true at first, so
    /// the first poll registers them).
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Due {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// One task's side futures' waker.
#[derive(Debug)]
pub struct SideWake {
    due: Arc<Due>,
    waker: Waker,
}

impl SideWake {
    pub fn new() -> Self {
        let due = Arc::new(Due {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(due.clone());
        SideWake { due, waker }
    }

    /// Called on every poll of the task, with its context: true when the side futures are
    /// to be polled now (with [`SideWake::context`]). The task's waker is registered first,
    /// so a side wake-up that comes after this look still wakes the task again.
    pub fn due(&self, task: &Context<'_>) -> bool {
        self.due.task.register(task.waker());
        self.due.woken.swap(false, Ordering::AcqRel)
    }

    /// The context to poll the side futures with.
    pub fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

impl Default for SideWake {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Future, poll_fn};
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    /// A side future is polled on the first poll and after its own wake-up only; a main
    /// future's wake-ups do not poll it, and its wake-up reaches the task.
    #[tokio::test]
    async fn side_futures_are_polled_first_and_after_their_own_wakeup_only() {
        let side = SideWake::new();
        let side_polls = AtomicUsize::new(0);
        let (main_tx, mut main_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (side_tx, side_rx) = tokio::sync::oneshot::channel::<()>();
        let mut side_rx = pin!(side_rx);
        let mut main_seen = 0;
        let driver = poll_fn(|cx| {
            while let Poll::Ready(Some(())) = main_rx.poll_recv(cx) {
                main_seen += 1;
            }
            if side.due(cx) {
                side_polls.fetch_add(1, Ordering::Relaxed);
                if side_rx.as_mut().poll(&mut side.context()).is_ready() {
                    return Poll::Ready(main_seen);
                }
            }
            Poll::Pending
        });
        let feeder = async {
            for _ in 0..50 {
                main_tx.send(()).unwrap();
                tokio::task::yield_now().await;
            }
            side_tx.send(()).unwrap();
        };
        let (seen, ()) = tokio::join!(driver, feeder);
        assert_eq!(seen, 50, "every main wake-up was seen");
        assert_eq!(
            side_polls.load(Ordering::Relaxed),
            2,
            "the side future was polled once to register and once after its wake-up"
        );
    }

    /// A timer polled only through the side waker still ends the task when it fires.
    #[tokio::test(start_paused = true)]
    async fn a_side_timer_fires() {
        let side = SideWake::new();
        let mut timer = pin!(tokio::time::sleep(Duration::from_secs(3600)));
        let fired = poll_fn(|cx| {
            if side.due(cx) && timer.as_mut().poll(&mut side.context()).is_ready() {
                return Poll::Ready(true);
            }
            Poll::Pending
        });
        assert!(fired.await);
    }
}
