//! The audit log: one JSON line per `tools/call`, through the gateway or `mcpctl call`,
//! allowed or denied, in `<logs.dir>/audit.log` (rotated like server logs, mode 0640).
//!
//! Recording never blocks a request: records go into a bounded queue of their own (not the
//! server logs' one, so a chatty server cannot crowd them out); a full queue drops the record
//! and counts it (`mcpd_audit_dropped_total`). The request path only queues what it knows
//! ([`CallEntry`]: shared config and claims, the time as a `SystemTime`). A gateway worker
//! about to sleep writes the queue once it holds a batch ([`AuditLog::on_worker_park`]); the
//! audit thread writes what no worker did within its window, flushes, and takes over while a
//! worker's write was slow. Either renders each record's JSON line into the file buffer and
//! hands it to followers (`mcpctl audit -f`) as it is written.

mod entry;
mod queue;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::Arc;
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
use entry::TimeFormat;
use queue::Bound;
use writer::{Job, Output, Writer};
pub use writer::{Options, WORKER_BATCH};

/// Records queued for `mcpctl audit -f` followers before a slow one lags.
const FOLLOW_QUEUE: usize = 1024;
/// What may wait for a writer before records get dropped: 16 Ki records (taken every 50 ms at
/// least, [`writer::WINDOW`], that is over 320 000 records a second), and 64 MiB of them (a record
/// with its arguments is as large as the call's body, up to `gateway.max_body`). The queue
/// takes memory only for what it holds.
const QUEUE: Bound = Bound {
    records: 16 * 1024,
    bytes: 64 << 20,
};

/// The audit log's metrics (`/metrics`); clones share their values.
#[derive(Debug, Clone, Default)]
pub struct AuditCounters {
    /// Records dropped: the queue was full, or the file did not take them.
    pub dropped: Counter,
    /// Batches written by a gateway worker about to sleep, and by the audit thread.
    pub batches_by_gateway: Counter,
    pub batches_by_thread: Counter,
}

#[derive(Debug)]
pub struct AuditLog {
    /// The queue and the file; `None` when the writer thread could not start.
    output: Option<Arc<Output>>,
    followers: broadcast::Sender<Arc<str>>,
    /// Disconnected when the writer thread has written everything and stopped.
    finished: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    /// Records dropped (`mcpd_audit_dropped_total`), by the queue or by the writer.
    dropped: Counter,
    config: LogsConfig,
}

impl AuditLog {
    /// Starts the writer for `<config.dir>/audit.log`. Without a writer (the thread could not
    /// start) records still reach followers, and each is counted as dropped.
    pub fn new(config: &LogsConfig, dropped_metric: Counter) -> Arc<Self> {
        let counters = AuditCounters {
            dropped: dropped_metric,
            ..AuditCounters::default()
        };
        Self::with_options(config, counters, Options::default())
    }

    /// [`AuditLog::new`], counting in `counters`, with the batch window and the slow-write
    /// bound given.
    pub fn with_options(
        config: &LogsConfig,
        counters: AuditCounters,
        options: Options,
    ) -> Arc<Self> {
        let followers = broadcast::Sender::new(FOLLOW_QUEUE);
        let mut writer = Writer {
            files: Files::new(config),
            name: Arc::from(AUDIT_LOG_NAME),
            followers: followers.clone(),
            time: TimeFormat::default(),
            batch: Vec::new(),
            flushed: Vec::new(),
        };
        writer.open();
        let output = Arc::new(Output::new(
            writer,
            options,
            [counters.batches_by_gateway, counters.batches_by_thread],
            counters.dropped.clone(),
        ));
        let thread_output = output.clone();
        let (finishing, finished) = mpsc::channel::<()>();
        let started = std::thread::Builder::new()
            .name("mcpd-audit".into())
            .spawn(move || {
                thread_output.run();
                drop(finishing);
            });
        let output = match started {
            Ok(_) => Some(output),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the audit log writer; audit records are not written");
                None
            }
        };
        Arc::new(AuditLog {
            output,
            followers,
            finished: std::sync::Mutex::new(Some(finished)),
            dropped: counters.dropped,
            config: config.clone(),
        })
    }

    /// Queues `record`; never waits, and renders nothing on the caller's thread.
    pub fn record(&self, record: &AuditRecord) {
        self.queue(Job::Record(Box::new(record.clone())));
    }

    /// Queues a gateway call's record; never waits, and formats nothing here: it is rendered
    /// when its batch is written.
    pub fn record_call(&self, call: CallEntry) {
        self.queue(Job::Call(call));
    }

    fn queue(&self, job: Job) {
        let Some(output) = &self.output else {
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
        if !output.queue.push_record(job, QUEUE) {
            self.drop_one();
        }
    }

    fn drop_one(&self) {
        self.dropped.inc();
    }

    /// For a gateway worker about to sleep: writes the queued records once they make a batch
    /// (see [`Output::write_on_park`]). Cheap when there is nothing to write: one atomic load.
    ///
    /// A panic while writing (none is known) must not take the gateway worker with it: it
    /// is caught, and workers leave writing to the audit thread from then on (the writer's
    /// lock is poisoned, and a worker only ever tries a clean one).
    pub fn on_worker_park(&self) {
        if let Some(output) = &self.output {
            let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                output.write_on_park();
            }));
            if wrote.is_err() {
                output.pause_workers();
                tracing::error!(
                    "writing the audit log on a gateway worker panicked; the audit thread writes from now on"
                );
            }
        }
    }

    /// Batches written so far by gateway workers and by the writer thread.
    #[cfg(test)]
    pub fn batches_written(&self) -> (u64, u64) {
        self.output
            .as_ref()
            .map_or((0, 0), |output| output.batches())
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.followers.subscribe()
    }

    /// Waits (at most `timeout`) until every record queued so far is written (and sent to
    /// followers).
    pub async fn flush(&self, timeout: std::time::Duration) {
        let Some(output) = &self.output else {
            return;
        };
        let (done, wait) = mpsc::channel();
        if !output.queue.push(Job::Flush(done)) {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(timeout)).await;
    }

    /// Takes no more records, and waits (at most `timeout`) until the writer has written
    /// every one queued and stopped: the daemon's last step, so none is lost on the way out.
    pub async fn close(&self, timeout: std::time::Duration) {
        let Some(output) = &self.output else {
            return;
        };
        output.queue.close();
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
        if let Some(output) = &self.output {
            output.queue.close();
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
