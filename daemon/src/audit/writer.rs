//! Writing the audit log: whoever writes a batch (a gateway worker about to sleep, or the
//! writer thread) takes the whole queue, renders each record as its JSON line straight into
//! the file buffer (one buffer, reused), hands the line to followers when there are any, and
//! writes the file with one `write`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;

use mcpd_protocol::AuditRecord;

use super::entry::{self, CallEntry, TimeFormat};
use super::queue::Queue;
use crate::supervisor::logs::Files;

/// How long the writer thread lets records accumulate after the first one arrives: the most a
/// record waits for the file and `mcpctl audit -f` when no gateway worker writes it. Longer
/// than the server logs' window (20 ms): the thread's cost per batch (its wake-up, the cold
/// code and records it touches, the `write`) is then spread over more records.
pub const WINDOW: Duration = Duration::from_millis(50);

/// What the writer is asked to do.
pub enum Job {
    Call(CallEntry),
    Record(Box<AuditRecord>),
    Flush(mpsc::Sender<()>),
}

impl Job {
    /// What the job holds, in bytes, for the queue's bound: its own size, and the text that
    /// comes with it from the caller (a tool name, a request id and arguments can be as large
    /// as a request's body).
    pub fn weight(&self) -> usize {
        let text = match self {
            Job::Call(call) => {
                call.names.tool().len()
                    + call.names.request_id().map_or(0, str::len)
                    + call.arguments.as_deref().map_or(0, str::len)
            }
            Job::Record(record) => {
                std::mem::size_of::<AuditRecord>()
                    + record.tool.len()
                    + record.request_id.as_deref().map_or(0, str::len)
                    + record.arguments.as_deref().map_or(0, str::len)
            }
            Job::Flush(_) => 0,
        };
        std::mem::size_of::<Job>() + text
    }
}

/// Renders `job`'s record (no newline) into `out`; false for a job that is not a record.
pub fn render(job: &Job, time: &mut TimeFormat, out: &mut Vec<u8>) -> bool {
    match job {
        Job::Call(call) => entry::render_call(call, time, out),
        Job::Record(record) => entry::render_record(record, out),
        Job::Flush(_) => return false,
    }
    true
}

/// When the audit log's batches are written.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The most a record waits for the writer thread when no gateway worker has written it.
    pub window: Duration,
    /// A worker's write that takes this long moves writing to the thread until a write of
    /// the thread's takes less.
    pub slow_write: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: WINDOW,
            slow_write: SLOW_WRITE,
        }
    }
}

/// Records queued after which a gateway worker about to sleep writes them: often enough that
/// the writer thread rarely has a batch left (at 10 000 calls a second, every 6 ms), seldom
/// enough that a `write` costs well under a microsecond per record.
pub const WORKER_BATCH: usize = 64;

/// A worker's write this slow (a slow or frozen disk, or a worker preempted mid-write) hands
/// writing to the thread; a page-cache write of a batch takes tens of microseconds.
pub const SLOW_WRITE: Duration = Duration::from_millis(5);

/// Where queued records are written, by whoever gets to it first: a gateway worker about to
/// sleep ([`Output::write_on_park`]), or the writer thread ([`Output::run`]) once a batch is
/// due. One writer at a time, taking the whole queue, so records are written in the order
/// they were queued.
///
/// Why workers write: with the writer thread alone, its batches cost a busy gateway ~2-4% of
/// its calls at 64 connections on a CPU it shares with the writer, though the work is the
/// same (bench/BENCH.md, "The audit log at 64 connections: the gateway thread runs longer, in
/// user code", and "The audit log written by idle gateway workers, built"); on the worker it
/// is done in time the worker would sleep, while its caches hold the records.
pub struct Output {
    pub queue: Queue,
    writer: Mutex<Writer>,
    options: Options,
    /// A worker's write was slow: workers leave writing to the thread.
    workers_paused: AtomicBool,
    /// Batches written by gateway workers and by the thread (`/metrics`).
    worker_batches: Counter,
    thread_batches: Counter,
    /// Records dropped (`mcpd_audit_dropped_total`): here, those the file did not take.
    dropped: Counter,
}

impl Output {
    /// Writes with `writer`, counting batches in `[by workers, by the thread]`, and records
    /// the file did not take in `dropped`.
    pub fn new(
        writer: Writer,
        options: Options,
        [worker_batches, thread_batches]: [Counter; 2],
        dropped: Counter,
    ) -> Self {
        Output {
            queue: Queue::default(),
            writer: Mutex::new(writer),
            options,
            workers_paused: AtomicBool::new(false),
            worker_batches,
            thread_batches,
            dropped,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: writes each batch no worker wrote once it is due, flushes as asked,
    /// and returns once the queue is closed and everything in it is written.
    pub fn run(&self) {
        crate::background::batch_scheduling();
        while self.queue.wait_due(self.options.window) {
            let mut writer = self.lock();
            let started = Instant::now();
            if writer.write_queued(&self.queue, &self.dropped) {
                self.thread_batches.inc();
                if started.elapsed() < self.options.slow_write {
                    self.workers_paused.store(false, Ordering::Relaxed);
                }
            }
            answer(writer);
        }
        // A worker may still be writing the last batch it took: the lock waits for it.
        self.lock().files.flush();
    }

    /// Called by a gateway worker about to sleep: writes what is queued once it is a worker's
    /// batch, unless another writer is at it or workers are paused by a slow write. Never
    /// waits for a lock.
    pub fn write_on_park(&self) {
        if self.queue.queued() < WORKER_BATCH || self.workers_paused.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut writer) = self.writer.try_lock() else {
            return;
        };
        let started = Instant::now();
        if writer.write_queued(&self.queue, &self.dropped) {
            self.worker_batches.inc();
            let took = started.elapsed();
            if took >= self.options.slow_write {
                self.workers_paused.store(true, Ordering::Relaxed);
                tracing::debug!(
                    took_ms = took.as_secs_f64() * 1e3,
                    "a gateway worker's audit write was slow; the audit thread writes until a write is fast"
                );
            }
        }
        answer(writer);
    }

    /// Batches written so far by gateway workers and by the writer thread.
    pub fn batches(&self) -> (u64, u64) {
        (self.worker_batches.get(), self.thread_batches.get())
    }

    /// Whether workers leave writing to the thread after a slow write.
    pub fn workers_paused(&self) -> bool {
        self.workers_paused.load(Ordering::Relaxed)
    }

    /// Leaves writing to the thread until one of its writes is fast.
    pub fn pause_workers(&self) {
        self.workers_paused.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .field("workers_paused", &self.workers_paused())
            .field("batches", &self.batches())
            .finish()
    }
}

/// Releases `writer`, then tells those who asked for a flush in its batch that it is done:
/// the batch is counted and the next writer may start.
fn answer(mut writer: MutexGuard<'_, Writer>) {
    let flushed = std::mem::take(&mut writer.flushed);
    drop(writer);
    for done in flushed {
        let _ = done.send(());
    }
}

/// The audit file and what renders into it.
pub struct Writer {
    pub files: Files,
    pub name: Arc<str>,
    pub followers: broadcast::Sender<Arc<str>>,
    pub time: TimeFormat,
    /// The batch being written; its capacity is kept.
    pub batch: Vec<Job>,
    /// Flushes done, answered once the batch is counted.
    pub flushed: Vec<mpsc::Sender<()>>,
}

impl Writer {
    /// Starts the file: before any batch, since `Files` writes only files it has started.
    pub fn open(&mut self) {
        self.files.open(self.name.clone());
    }

    /// Takes the whole queue and writes it with one `write`; false when it was empty. Flushes
    /// asked for in the batch are answered after it (see [`answer`]). Records the file did
    /// not take (it could not be opened or written) are counted in `dropped`.
    fn write_queued(&mut self, queue: &Queue, dropped: &Counter) -> bool {
        let mut batch = std::mem::take(&mut self.batch);
        queue.take(&mut batch);
        if batch.is_empty() {
            self.batch = batch;
            return false;
        }
        // Every record of the batch was queued before this: dated from one reading.
        self.time.read_clocks();
        let out = self.files.pending(&self.name);
        let mut records = 0;
        for job in batch.drain(..) {
            if let Job::Flush(done) = job {
                // Written with the batch, which holds every record queued before it.
                self.flushed.push(done);
                continue;
            }
            records += 1;
            let start = out.len();
            render(&job, &mut self.time, out);
            if self.followers.receiver_count() > 0
                && let Ok(line) = std::str::from_utf8(&out[start..])
            {
                let _ = self.followers.send(Arc::from(line));
            }
            out.push(b'\n');
            // `job` (its shared config and claims) is released here, off the request path.
        }
        self.batch = batch;
        if !self.files.write_pending() {
            dropped.inc_by(records);
        }
        true
    }
}
