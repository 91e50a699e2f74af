//! The audit writer's queue: a vector behind a mutex, taken whole by the writer once per
//! batch, and a condition variable that wakes the writer only when the first job of a batch
//! arrives, or a flush, a full batch or the end cuts its batch window short.
//!
//! Cheaper per record than a channel: queueing is one uncontended lock and a push into a
//! vector whose capacity is kept between batches (the writer swaps in its emptied one), and
//! at most two wake-ups per batch instead of a channel's per-message bookkeeping.
//!
//! A batch is taken as soon as it holds [`BATCH`] records: on a busy gateway the window
//! alone would gather a thousand or more, and the vector, the records and the file buffer
//! they are rendered into would grow with the gateway's rate; capped, they stay small and
//! are reused while still in the CPU's caches (bench/BENCH.md, "the audit batch kept
//! small": no effect on throughput this machine could show).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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

    /// Queues `job` (a record when `record_bound` is given); only a batch's first job, a
    /// flush, or the record that fills the batch wakes the writer.
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
        } else {
            state.urgent = true;
        }
        let wake = state.jobs.is_empty() || record_bound.is_none() || state.records == BATCH;
        state.jobs.push(job);
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// Lets jobs gather for `window` after a batch's first one; returns sooner once a flush
    /// is queued, the batch is full, or the queue is closed (a stopping daemon does not wait
    /// out the window).
    pub fn gather(&self, window: Duration) {
        let state = self.lock();
        let _ = self
            .ready
            .wait_timeout_while(state, window, |state| {
                !state.urgent && !state.closed && state.records < BATCH
            })
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Waits until a job is queued; false once the queue is closed and empty.
    pub fn wait(&self) -> bool {
        let mut state = self.lock();
        while state.jobs.is_empty() && !state.closed {
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.jobs.is_empty()
    }

    /// Takes every queued job into `into` (which must be empty; its capacity is kept for the
    /// next batch).
    pub fn take(&self, into: &mut Vec<Job>) {
        let mut state = self.lock();
        std::mem::swap(&mut state.jobs, into);
        state.records = 0;
        state.bytes = 0;
        state.urgent = false;
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
        assert!(queue.wait());
        queue.take(&mut batch);
        assert_eq!(batch.len(), 3);
        batch.clear();
        assert!(
            queue.push_record(flush(), records(2)),
            "the bound is per batch"
        );
        queue.close();
        assert!(
            queue.wait(),
            "what was queued before closing is still written"
        );
        queue.take(&mut batch);
        assert_eq!(batch.len(), 1);
        assert!(!queue.wait());
        assert!(!queue.push(flush()));
    }

    #[test]
    fn a_flush_a_full_batch_or_the_end_cuts_the_batch_window_short() {
        let queue = std::sync::Arc::new(Queue::default());
        // A window no test would wait out: `gather` must return because of the job.
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
                    queue.gather(window);
                    done.send(()).unwrap();
                })
            };
            end(&queue);
            returned.recv_timeout(Duration::from_secs(60)).expect(
                "gather returned once a flush was queued, the batch filled or the queue closed",
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
                while queue.wait() {
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
}
