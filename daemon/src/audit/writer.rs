//! The audit writer thread: takes records off the queue, renders each as its JSON line
//! straight into the file buffer (one buffer, reused), hands the line to followers when there
//! are any, and writes the file in batches like the server logs' writer.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::broadcast;

use mcpd_protocol::AuditRecord;

use super::entry::{self, CallEntry, TimeFormat};
use super::queue::Queue;
use crate::supervisor::logs::Files;

/// How long the writer lets records accumulate after the first one arrives: the most a record
/// waits for the file and `mcpctl audit -f`. Longer than the server logs' window (20 ms): the
/// writer's cost per batch (its wake-up, the cold code and records it touches, the `write`)
/// is then spread over more records when the gateway is not busy (at one connection, ~200
/// records a batch instead of ~80).
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

pub struct Writer {
    pub files: Files,
    pub name: Arc<str>,
    pub followers: broadcast::Sender<Arc<str>>,
}

impl Writer {
    /// Runs until the queue is closed.
    pub fn run(mut self, queue: &Queue) {
        crate::background::batch_scheduling();
        self.files.open(self.name.clone());
        let mut time = TimeFormat::default();
        let mut batch = Vec::new();
        // Blocks while nothing is recorded; then takes what came within the batch window.
        while queue.wait() {
            queue.gather(WINDOW);
            queue.take(&mut batch);
            // Every record of the batch was queued before this: dated from one reading.
            time.read_clocks();
            for job in batch.drain(..) {
                self.handle(job, &mut time);
            }
            self.files.write_pending();
        }
        self.files.flush();
    }

    fn handle(&mut self, job: Job, time: &mut TimeFormat) {
        if let Job::Flush(done) = job {
            self.files.flush();
            let _ = done.send(());
            return;
        }
        let out = self.files.pending(&self.name);
        let start = out.len();
        render(&job, time, out);
        if self.followers.receiver_count() > 0
            && let Ok(line) = std::str::from_utf8(&out[start..])
        {
            let _ = self.followers.send(Arc::from(line));
        }
        out.push(b'\n');
        // `job` (its shared config and claims) is released here, off the request path.
    }
}
