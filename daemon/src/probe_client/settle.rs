//! The settle wait of the light liveness request, shared by the probes that start together:
//! the first probe to wait arms one timer and every probe that joins before it fires waits for
//! the same wake-up. A timer of its own per probe would cost the runtime one eventfd write each
//! (tokio unparks its driver for every timer earlier than the one it sleeps for, and a settle
//! wait always is), and at 1000 servers that was a write per probe.
//!
//! A probe joins the pending wait when it ends no sooner than half the settle time from now
//! (so every probe still gives its server at least that long to answer) and no later than the
//! full settle time. The probe that armed the timer opens the wait when it fires, or when it
//! is dropped before that (timed out, aborted): the others then read early, which costs them
//! a registration with the runtime for the rest of the answer, never correctness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// One shared wait: when it ends, and whether it has.
#[derive(Debug, Default)]
struct Gate {
    open: AtomicBool,
    opened: Notify,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }

    async fn passed(&self) {
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.open.load(Ordering::Acquire) {
                return;
            }
            opened.await;
        }
    }
}

/// The wait being armed for each settle time (there is one in the daemon; tests use others):
/// the settle time, its end and its gate.
static PENDING: Mutex<Vec<(Duration, Instant, Arc<Gate>)>> = Mutex::new(Vec::new());

/// Opens the gate when the arming probe's wait ends or is dropped.
struct Opener(Arc<Gate>);

impl Drop for Opener {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Waits about `settle` (at least half of it), sharing one timer with the probes that wait at
/// the same time.
pub async fn settle(settle: Duration) {
    let now = Instant::now();
    let joined = {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let slot = pending.iter().position(|(time, ..)| *time == settle);
        match slot.map(|slot| &pending[slot]) {
            Some((_, ends, gate))
                if *ends >= now + settle / 2 && *ends <= now + settle && !gate.is_open() =>
            {
                Ok(gate.clone())
            }
            _ => {
                let gate = Arc::new(Gate::default());
                let armed = (settle, now + settle, gate.clone());
                match slot {
                    Some(slot) => pending[slot] = armed,
                    None => pending.push(armed),
                }
                Err(gate)
            }
        }
    };
    match joined {
        Ok(gate) => gate.passed().await,
        Err(gate) => {
            let _opener = Opener(gate);
            tokio::time::sleep_until(now + settle).await;
        }
    }
}

impl Gate {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_waiting_together_share_one_wait_of_at_least_half_the_settle_time() {
        let settle_for = Duration::from_millis(40);
        let began = Instant::now();
        let waits: Vec<_> = (0..10)
            .map(|_| {
                tokio::spawn(async move {
                    settle(settle_for).await;
                    Instant::now()
                })
            })
            .collect();
        for wait in waits {
            let ended = wait.await.unwrap();
            assert!(ended >= began + settle_for / 2);
        }
    }

    #[tokio::test]
    async fn a_dropped_arming_wait_releases_the_others() {
        let settle_for = Duration::from_secs(3600);
        let armer = tokio::spawn(settle(settle_for));
        // Until the arming wait is pending, a joiner could arm a wait of its own.
        tokio::task::yield_now().await;
        let joiner = tokio::spawn(settle(settle_for));
        tokio::task::yield_now().await;
        armer.abort();
        // Joined: released by the abort. (Had it armed its own, this would wait an hour and
        // the test's timeout would say so.)
        tokio::time::timeout(Duration::from_secs(30), joiner)
            .await
            .expect("the joiner was released")
            .unwrap();
    }
}
