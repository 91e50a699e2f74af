//! The audit log: one JSON line per `tools/call`, through the gateway or `mcpctl call`,
//! allowed or denied, in `<logs.dir>/audit.log` (rotated like server logs, mode 0640).
//!
//! Recording never blocks a request: records go through the bounded queue of a writer thread
//! of their own (not the server logs' one, so a chatty server cannot crowd them out); a full
//! queue drops the record and counts it (`mcpd_audit_dropped_total`). The request path only
//! queues what it knows ([`CallEntry`]: shared config and claims, the time as a `SystemTime`);
//! the writer renders each record's JSON line into its file buffer and hands it to followers
//! (`mcpctl audit -f`) as it is written.

mod entry;
mod queue;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;

use mcpd_protocol::AuditRecord;

pub use entry::{CallEntry, CallNames};
pub use reader::{AuditFilter, read_backlog};

use crate::config::AUDIT_LOG_NAME;
use crate::config::LogsConfig;
use crate::supervisor::logs::Files;
use queue::{Bound, Queue};
use writer::{Job, Writer};

/// Records queued for `mcpctl audit -f` followers before a slow one lags.
const FOLLOW_QUEUE: usize = 1024;
/// What may wait for the writer before records get dropped: 16 Ki records (taken every 50 ms,
/// [`writer::WINDOW`], that is over 320 000 records a second), and 64 MiB of them (a record
/// with its arguments is as large as the call's body, up to `gateway.max_body`). The queue
/// takes memory only for what it holds.
const QUEUE: Bound = Bound {
    records: 16 * 1024,
    bytes: 64 << 20,
};

#[derive(Debug)]
pub struct AuditLog {
    /// The writer thread's queue; `None` when the thread could not start.
    jobs: Option<Arc<Queue>>,
    followers: broadcast::Sender<Arc<str>>,
    /// Disconnected when the writer thread has written everything and stopped.
    finished: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    dropped: AtomicU64,
    dropped_metric: Counter,
    config: LogsConfig,
}

impl AuditLog {
    /// Starts the writer for `<config.dir>/audit.log`. Without a writer (the thread could not
    /// start) records still reach followers, and each is counted as dropped.
    pub fn new(config: &LogsConfig, dropped_metric: Counter) -> Arc<Self> {
        let followers = broadcast::Sender::new(FOLLOW_QUEUE);
        let jobs = Arc::new(Queue::default());
        let writer = Writer {
            files: Files::new(config),
            name: Arc::from(AUDIT_LOG_NAME),
            followers: followers.clone(),
        };
        let queue = jobs.clone();
        let (finishing, finished) = mpsc::channel::<()>();
        let started = std::thread::Builder::new()
            .name("mcpd-audit".into())
            .spawn(move || {
                writer.run(&queue);
                drop(finishing);
            });
        let jobs = match started {
            Ok(_) => Some(jobs),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the audit log writer; audit records are not written");
                None
            }
        };
        Arc::new(AuditLog {
            jobs,
            followers,
            finished: std::sync::Mutex::new(Some(finished)),
            dropped: AtomicU64::new(0),
            dropped_metric,
            config: config.clone(),
        })
    }

    /// Queues `record`; never waits. Rendered on the writer thread.
    pub fn record(&self, record: &AuditRecord) {
        self.queue(Job::Record(Box::new(record.clone())));
    }

    /// Queues a gateway call's record; never waits, and formats nothing on the caller's
    /// thread: the writer renders it.
    pub fn record_call(&self, call: CallEntry) {
        self.queue(Job::Call(call));
    }

    fn queue(&self, job: Job) {
        let Some(jobs) = &self.jobs else {
            // No writer: followers still get the record.
            if self.followers.receiver_count() > 0 {
                let mut line = Vec::new();
                writer::render(&job, &mut entry::TimeFormat::default(), &mut line);
                if let Ok(line) = String::from_utf8(line) {
                    let _ = self.followers.send(Arc::from(line));
                }
            }
            self.drop_one();
            return;
        };
        if !jobs.push_record(job, QUEUE) {
            self.drop_one();
        }
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_metric.inc();
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.followers.subscribe()
    }

    /// Waits (at most `timeout`) until every record queued so far is written (and sent to
    /// followers).
    pub async fn flush(&self, timeout: std::time::Duration) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let (done, wait) = mpsc::channel();
        if !jobs.push(Job::Flush(done)) {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(timeout)).await;
    }

    /// Takes no more records, and waits (at most `timeout`) until the writer has written
    /// every one queued and stopped: the daemon's last step, so none is lost on the way out.
    pub async fn close(&self, timeout: std::time::Duration) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        jobs.close();
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(finished) = finished {
            let _ = tokio::task::spawn_blocking(move || finished.recv_timeout(timeout)).await;
        }
    }

    pub fn config(&self) -> &LogsConfig {
        &self.config
    }
}

impl Drop for AuditLog {
    /// The writer writes what is queued and stops.
    fn drop(&mut self) {
        if let Some(jobs) = &self.jobs {
            jobs.close();
        }
    }
}

/// Now, as an audit record's `time` and `ts`.
pub fn now() -> (String, u64) {
    let at = SystemTime::now();
    (
        humantime::format_rfc3339_millis(at).to_string(),
        entry::unix_ms(at),
    )
}
