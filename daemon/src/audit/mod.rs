//! The audit log: one JSON line per `tools/call`, through the gateway or `mcpctl call`,
//! allowed or denied, in `<logs.dir>/audit.log` (rotated like server logs, mode 0640).
//!
//! Recording never blocks a request: records go through the bounded queue of a writer thread
//! of their own (not the server logs' one, so a chatty server cannot crowd them out); a full
//! queue drops the record and counts it (`mcpd_audit_dropped_total`). Followers
//! (`mcpctl audit -f`) get each record as it is made.

mod reader;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;

use mcpd_protocol::AuditRecord;

pub use reader::{AuditFilter, read_backlog};

use crate::config::AUDIT_LOG_NAME;
use crate::config::LogsConfig;
use crate::supervisor::LogFiles;

/// Records queued for `mcpctl audit -f` followers before a slow one lags.
const FOLLOW_QUEUE: usize = 1024;

#[derive(Debug)]
pub struct AuditLog {
    files: Option<LogFiles>,
    name: Arc<str>,
    followers: broadcast::Sender<Arc<str>>,
    dropped: AtomicU64,
    dropped_metric: Counter,
    config: LogsConfig,
}

impl AuditLog {
    /// Starts the writer for `<config.dir>/audit.log`. Without a writer (the thread could not
    /// start) records still reach followers, and each is counted as dropped.
    pub fn new(config: &LogsConfig, dropped_metric: Counter) -> Arc<Self> {
        let name: Arc<str> = Arc::from(AUDIT_LOG_NAME);
        let files = match LogFiles::new(config) {
            Ok(files) => {
                files.open(name.clone());
                Some(files)
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot start the audit log writer; audit records are not written");
                None
            }
        };
        Arc::new(AuditLog {
            files,
            name,
            followers: broadcast::Sender::new(FOLLOW_QUEUE),
            dropped: AtomicU64::new(0),
            dropped_metric,
            config: config.clone(),
        })
    }

    /// Queues `record`; never waits.
    pub fn record(&self, record: &AuditRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        if self.followers.receiver_count() > 0 {
            let _ = self.followers.send(Arc::from(line.as_str()));
        }
        line.push('\n');
        let queued = self
            .files
            .as_ref()
            .is_some_and(|files| files.write(&self.name, line.into_bytes()));
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_metric.inc();
        }
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.followers.subscribe()
    }

    /// Waits (at most `timeout`) until every record queued so far is written.
    pub async fn flush(&self, timeout: std::time::Duration) {
        if let Some(files) = &self.files {
            files.flush(timeout).await;
        }
    }

    pub fn config(&self) -> &LogsConfig {
        &self.config
    }
}

/// Now, as an audit record's `time` and `ts`.
pub fn now() -> (String, u64) {
    let at = SystemTime::now();
    let ts = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    (humantime::format_rfc3339_millis(at).to_string(), ts)
}
