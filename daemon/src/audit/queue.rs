//! The audit log's queue: a vector behind a mutex, taken whole by whoever writes a batch (a
//! gateway worker about to sleep, or the writer thread), and a condition variable that wakes
//! the writer thread only when it sleeps with nothing queued, or a flush, a full batch or the
//! end needs it at once.
//!
//! Cheaper per record than a channel: queueing is one uncontended lock and a push into a
//! vector whose capacity is kept between batches (the taker swaps in its emptied one), and
//! the writer thread is woken at most once per batch window, not per batch: while it waits
//! out a window it is not woken for the batches gateway workers take meanwhile.
//!
//! A batch is due for the writer thread once its first record is a window old, or it holds
//! [`BATCH`] records: on a busy gateway whose workers never sleep the window alone would
//! gather a thousand or more, and the vector, the records and the file buffer they are
//! rendered into would grow with the gateway's rate; capped, they stay small and are reused
//! while still in the CPU's caches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::writer::Job;

/// Records after which a batch is written without waiting out its window.
pub const BATCH: usize = 256;

/// How many records, and how many bytes of them, may wait for the writer.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub records: usize,
    /// Counted by [`Job::weight`]: a record's size, its arguments included.
    pub bytes: usize,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    /// `State::records`, readable without the lock: a gateway worker about to sleep checks
    /// it on every park.
    queued: AtomicUsize,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    /// Records in `jobs` (flush requests are not counted against the bound).
    records: usize,
    /// Their weight in bytes.
    bytes: usize,
    /// No more jobs will come: the writer drains what is queued and stops.
    closed: bool,
    /// A flush is queued: someone waits for the batch, which should not wait out its window.
    urgent: bool,
    /// When the first job of `jobs` was queued.
    first_at: Option<Instant>,
    /// The writer thread sleeps until a job is queued (not a batch window): the next job
    /// wakes it.
    idle: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record unless it would pass `bound` (or the queue is closed); false when it
    /// was not queued.
    pub fn push_record(&self, job: Job, bound: Bound) -> bool {
        self.enqueue(job, Some(bound))
    }

    /// Queues a job that is not a record (a flush request), whatever the bound; false when
    /// the queue is closed.
    pub fn push(&self, job: Job) -> bool {
        self.enqueue(job, None)
    }

    /// Queues `job` (a record when `record_bound` is given); wakes the writer thread only
    /// when it sleeps with nothing queued, or for a flush or the record that fills the batch.
    fn enqueue(&self, job: Job, record_bound: Option<Bound>) -> bool {
        let weight = job.weight();
        let mut state = self.lock();
        let full = |bound: Bound| {
            state.records >= bound.records || state.bytes.saturating_add(weight) > bound.bytes
        };
        if state.closed || record_bound.is_some_and(full) {
            return false;
        }
        if record_bound.is_some() {
            state.records += 1;
            state.bytes += weight;
            self.queued.store(state.records, Ordering::Relaxed);
        } else {
            state.urgent = true;
        }
        if state.jobs.is_empty() {
            state.first_at = Some(Instant::now());
        }
        let wake = state.idle || record_bound.is_none() || state.records == BATCH;
        state.idle = false;
        state.jobs.push(job);
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// Records queued, read without the lock (it may be a moment old).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits until what is queued is due for the writer thread: its first job is `window`
    /// old, or a flush is queued, the batch is full, or the queue is closed (a stopping daemon
    /// does not wait out the window). A batch taken by someone else meanwhile restarts the
    /// wait. False once the queue is closed and empty.
    pub fn wait_due(&self, window: Duration) -> bool {
        let mut state = self.lock();
        loop {
            let Some(first_at) = state.first_at else {
                if state.closed {
                    return false;
                }
                state.idle = true;
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle = false;
                continue;
            };
            if state.urgent || state.closed || state.records >= BATCH {
                return true;
            }
            let Some(left) = (first_at + window).checked_duration_since(Instant::now()) else {
                return true;
            };
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes every queued job into `into` (which must be empty; its capacity is kept for the
    /// next batch).
    pub fn take(&self, into: &mut Vec<Job>) {
        let mut state = self.lock();
        std::mem::swap(&mut state.jobs, into);
        state.records = 0;
        state.bytes = 0;
        state.urgent = false;
        state.first_at = None;
        self.queued.store(0, Ordering::Relaxed);
    }

    /// No more jobs: the writer stops once it has written what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Queue")
            .field("jobs", &state.jobs.len())
            .field("closed", &state.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNBOUNDED: Bound = Bound {
        records: usize::MAX,
        bytes: usize::MAX,
    };

    fn flush() -> Job {
        Job::Flush(std::sync::mpsc::channel().0)
    }

    fn records(records: usize) -> Bound {
        Bound {
            records,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn records_beyond_the_bound_are_refused_and_flushes_are_not() {
        let queue = Queue::default();
        assert!(queue.push_record(flush(), records(2)));
        assert!(queue.push_record(flush(), records(2)));
        assert!(!queue.push_record(flush(), records(2)));
        assert!(queue.push(flush()));
        let mut batch = Vec::new();
        assert!(queue.wait_due(Duration::ZERO));
        queue.take(&mut batch);
        assert_eq!(batch.len(), 3);
        batch.clear();
        assert!(
            queue.push_record(flush(), records(2)),
            "the bound is per batch"
        );
        queue.close();
        assert!(
            queue.wait_due(Duration::ZERO),
            "what was queued before closing is still written"
        );
        queue.take(&mut batch);
        assert_eq!(batch.len(), 1);
        assert!(!queue.wait_due(Duration::ZERO));
        assert!(!queue.push(flush()));
    }

    #[test]
    fn a_flush_a_full_batch_or_the_end_cuts_the_batch_window_short() {
        let queue = std::sync::Arc::new(Queue::default());
        // A window no test would wait out: `wait_due` must return because of the job.
        let window = Duration::from_secs(24 * 3600);
        for end in [
            &(|queue: &Queue| assert!(queue.push(flush()))) as &dyn Fn(&Queue),
            &|queue: &Queue| {
                // The batch's first record is queued: these fill it.
                for _ in 1..BATCH {
                    assert!(queue.push_record(flush(), UNBOUNDED));
                }
            },
            &|queue: &Queue| queue.close(),
        ] {
            assert!(queue.push_record(flush(), UNBOUNDED));
            let (done, returned) = std::sync::mpsc::channel();
            let gatherer = {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    assert!(queue.wait_due(window));
                    done.send(()).unwrap();
                })
            };
            end(&queue);
            returned.recv_timeout(Duration::from_secs(60)).expect(
                "the batch was due once a flush was queued, the batch filled or the queue closed",
            );
            gatherer.join().unwrap();
            let mut batch = Vec::new();
            queue.take(&mut batch);
        }
    }

    #[test]
    fn the_writer_wakes_for_a_job_from_another_thread() {
        let queue = std::sync::Arc::new(Queue::default());
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                let mut taken = 0;
                let mut batch = Vec::new();
                while queue.wait_due(Duration::ZERO) {
                    queue.take(&mut batch);
                    taken += batch.len();
                    batch.clear();
                }
                taken
            })
        };
        for _ in 0..100 {
            assert!(queue.push_record(flush(), UNBOUNDED));
        }
        queue.close();
        assert_eq!(writer.join().unwrap(), 100);
    }

    #[test]
    fn a_batch_taken_by_a_worker_meanwhile_is_not_due_for_the_writer_thread() {
        let queue = std::sync::Arc::new(Queue::default());
        assert!(queue.push_record(flush(), UNBOUNDED));
        assert_eq!(queue.queued(), 1);
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                let due = queue.wait_due(Duration::from_secs(24 * 3600));
                let mut batch = Vec::new();
                queue.take(&mut batch);
                (due, batch.len())
            })
        };
        // A worker takes the batch while the writer waits out its window.
        let mut batch = Vec::new();
        queue.take(&mut batch);
        assert_eq!((batch.len(), queue.queued()), (1, 0));
        queue.close();
        assert_eq!(
            writer.join().unwrap(),
            (false, 0),
            "the writer found nothing to write, and stopped"
        );
    }
}
