//! Log capture: reads a child's stdout and stderr continuously, line by line, into the
//! server's ring buffer, its followers and its rotating file.
//!
//! Nothing here ever blocks the reader: the ring drops its oldest line, slow followers lag
//! (broadcast), and file writes go through a bounded queue to one writer thread that drops
//! lines (and says how many) when the disk cannot keep up. Lines are capped at
//! [`MAX_LINE`] bytes, so memory is bounded by `buffer_lines * MAX_LINE` per server.
//!
//! An idle server costs little: the ring grows with its lines, the followers' queue exists
//! only once someone follows, and each pipe is read through a small buffer (a daemon with
//! 1000 servers holds 2000 of them, and its RSS also sets the cost of every fork).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast;
use tracing_appender::rolling::{RollingFileAppender, Rotation as FileRotation};

use super::{LogLine, LogStream};
use crate::config::{LogsConfig, Rotation};

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines queued for the writer thread before lines get dropped.
const FILE_QUEUE: usize = 64 * 1024;
const FOLLOW_QUEUE: usize = 1024;
/// Read buffer per pipe. Longer lines are assembled across reads (up to [`MAX_LINE`]).
const READ_BUFFER: usize = 4 * 1024;

enum FileJob {
    Open(Arc<str>),
    Write(Arc<str>, Vec<u8>),
    Flush(std_mpsc::Sender<()>),
}

/// The log writer thread shared by every server; cheap to clone.
#[derive(Clone, Debug)]
pub struct LogFiles {
    jobs: std_mpsc::SyncSender<FileJob>,
}

impl LogFiles {
    /// Starts the writer thread for files in `config.dir`.
    pub fn new(config: &LogsConfig) -> std::io::Result<Self> {
        let (jobs, queue) = std_mpsc::sync_channel(FILE_QUEUE);
        let dir = config.dir.clone();
        let rotation = match config.rotation {
            Rotation::Minutely => FileRotation::MINUTELY,
            Rotation::Hourly => FileRotation::HOURLY,
            Rotation::Daily => FileRotation::DAILY,
            Rotation::Never => FileRotation::NEVER,
        };
        let keep = config.keep.max(1);
        std::thread::Builder::new()
            .name("mcpd-logs".into())
            .spawn(move || writer(queue, dir, rotation, keep))?;
        Ok(LogFiles { jobs })
    }

    /// Waits (at most `timeout`) until every line queued so far is written.
    pub async fn flush(&self, timeout: std::time::Duration) {
        let (done, wait) = std_mpsc::channel();
        if self.jobs.try_send(FileJob::Flush(done)).is_err() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(timeout)).await;
    }
}

fn writer(queue: std_mpsc::Receiver<FileJob>, dir: PathBuf, rotation: FileRotation, keep: usize) {
    let mut files: HashMap<Arc<str>, Option<RollingFileAppender>> = HashMap::new();
    let mut dir_ready = None::<bool>;
    for job in queue {
        match job {
            FileJob::Open(name) => {
                let ready = *dir_ready.get_or_insert_with(|| match std::fs::create_dir_all(&dir) {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::error!(dir = %dir.display(), error = %err,
                            "cannot create the log directory; server logs are kept in memory only \
                             (`mcpctl logs` still works)");
                        false
                    }
                });
                let appender = ready
                    .then(|| {
                        RollingFileAppender::builder()
                            .rotation(rotation.clone())
                            .filename_prefix(&*name)
                            .filename_suffix("log")
                            .max_log_files(keep)
                            .build(&dir)
                            .map_err(|err| {
                                tracing::error!(server = %name, dir = %dir.display(), error = %err,
                                    "cannot open the server's log file; its logs are kept in \
                                     memory only");
                            })
                            .ok()
                    })
                    .flatten();
                files.insert(name, appender);
            }
            FileJob::Write(name, bytes) => {
                if let Some(Some(file)) = files.get_mut(&name)
                    && let Err(err) = file.write_all(&bytes)
                {
                    tracing::error!(server = %name, error = %err,
                        "cannot write the server's log file; its logs are kept in memory only");
                    files.insert(name, None);
                }
            }
            FileJob::Flush(done) => {
                for file in files.values_mut().flatten() {
                    let _ = file.flush();
                }
                let _ = done.send(());
            }
        }
    }
}

/// One server's logs: ring buffer, followers and file. Lives as long as the server is
/// configured, across restarts.
#[derive(Debug)]
pub struct LogHub {
    name: Arc<str>,
    ring: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    /// Created by the first follower: a broadcast queue preallocates all its slots.
    followers: OnceLock<broadcast::Sender<LogLine>>,
    files: Option<LogFiles>,
    dropped: AtomicU64,
}

impl LogHub {
    pub fn new(name: &str, capacity: usize, files: Option<LogFiles>) -> Self {
        let name: Arc<str> = Arc::from(name);
        if let Some(files) = &files {
            let _ = files.jobs.try_send(FileJob::Open(name.clone()));
        }
        LogHub {
            name,
            ring: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            followers: OnceLock::new(),
            files,
            dropped: AtomicU64::new(0),
        }
    }

    /// Records one line.
    pub fn push(&self, line: LogLine) {
        if let Some(files) = &self.files {
            self.queue_for_file(files, &line);
        }
        if let Some(followers) = self.followers.get()
            && followers.receiver_count() > 0
        {
            let _ = followers.send(line.clone());
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(line);
    }

    /// A line of the daemon's own about this server (e.g. why it restarted), kept with its output.
    pub fn note(&self, text: String) {
        self.push(LogLine {
            at: SystemTime::now(),
            stream: LogStream::Stderr,
            text: format!("[mcpd] {text}"),
        });
    }

    fn queue_for_file(&self, files: &LogFiles, line: &LogLine) {
        let mut bytes = Vec::with_capacity(line.text.len() + 40);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let stamp = humantime::format_rfc3339_millis(line.at);
        if dropped > 0 {
            let _ = writeln!(
                bytes,
                "{stamp} mcpd: {dropped} lines dropped (disk too slow)"
            );
        }
        let stream = match line.stream {
            LogStream::Stdout => "out",
            LogStream::Stderr => "err",
        };
        let _ = writeln!(bytes, "{stamp} {stream} {}", line.text);
        if files
            .jobs
            .try_send(FileJob::Write(self.name.clone(), bytes))
            .is_err()
        {
            self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.followers
            .get_or_init(|| broadcast::channel(FOLLOW_QUEUE).0)
            .subscribe()
    }
}

/// Reads `pipe` until EOF, pushing each line (capped at [`MAX_LINE`]) into `hub`.
pub async fn capture(pipe: impl AsyncRead + Unpin, stream: LogStream, hub: Arc<LogHub>) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(err) => {
                tracing::debug!(server = %hub.name, error = %err, "log pipe read failed");
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let (chunk, end_of_line) = match buf.iter().position(|b| *b == b'\n') {
            Some(pos) => (&buf[..pos], Some(pos + 1)),
            None => (buf, None),
        };
        let room = MAX_LINE - line.len();
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = end_of_line.unwrap_or(buf.len());
        reader.consume(used);
        if end_of_line.is_some() {
            emit(&hub, stream, &mut line, &mut truncated);
        }
    }
    if !line.is_empty() {
        emit(&hub, stream, &mut line, &mut truncated);
    }
}

fn emit(hub: &LogHub, stream: LogStream, line: &mut Vec<u8>, truncated: &mut bool) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *truncated {
        text.push_str(" [truncated]");
    }
    hub.push(LogLine {
        at: SystemTime::now(),
        stream,
        text,
    });
    line.clear();
    *truncated = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogsConfig;

    fn logs_config(dir: PathBuf) -> LogsConfig {
        LogsConfig {
            dir,
            rotation: Rotation::Never,
            keep: 2,
            buffer_lines: 3,
        }
    }

    #[tokio::test]
    async fn lines_go_to_ring_followers_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(&logs_config(dir.path().join("logs"))).unwrap();
        let hub = Arc::new(LogHub::new("echo", 3, Some(files.clone())));
        let mut follower = hub.subscribe();
        let input: &[u8] = b"one\ntwo\r\nthree\nfour\nfive without newline";
        capture(input, LogStream::Stdout, hub.clone()).await;
        let tail: Vec<String> = hub.tail(10).into_iter().map(|l| l.text).collect();
        assert_eq!(tail, vec!["three", "four", "five without newline"]);
        assert_eq!(hub.tail(1)[0].text, "five without newline");
        assert_eq!(follower.recv().await.unwrap().text, "one");
        assert_eq!(follower.recv().await.unwrap().text, "two");
        files.flush(std::time::Duration::from_secs(5)).await;
        let written = std::fs::read_to_string(dir.path().join("logs/echo.log")).unwrap();
        assert_eq!(written.lines().count(), 5, "{written}");
        assert!(
            written.lines().next().unwrap().ends_with(" out one"),
            "{written}"
        );
    }

    #[tokio::test]
    async fn long_lines_are_truncated() {
        let hub = Arc::new(LogHub::new("long", 10, None));
        let mut input = vec![b'x'; MAX_LINE * 3 + 7];
        input.extend_from_slice(b"\nshort\n");
        capture(&input[..], LogStream::Stderr, hub.clone()).await;
        let tail = hub.tail(10);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].text.len(), MAX_LINE + " [truncated]".len());
        assert_eq!(tail[1].text, "short");
        assert_eq!(tail[1].stream, LogStream::Stderr);
    }

    #[tokio::test]
    async fn an_unwritable_log_dir_keeps_the_ring_working() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let files = LogFiles::new(&logs_config(blocker.join("logs"))).unwrap();
        let hub = Arc::new(LogHub::new("x", 3, Some(files.clone())));
        capture(&b"a\nb\n"[..], LogStream::Stdout, hub.clone()).await;
        files.flush(std::time::Duration::from_secs(5)).await;
        assert_eq!(hub.tail(5).len(), 2);
    }
}
