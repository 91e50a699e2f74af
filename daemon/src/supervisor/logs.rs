//! Log capture: reads a child's stdout and stderr continuously, line by line, into the
//! server's ring buffer, its followers and its rotating file.
//!
//! Each line carries its stream: `out`, `err`, or `mcpd` for the daemon's own notes
//! ([`LogHub::note`]). The file has one line per entry, `<time> <stream> <text>`; a server's
//! line is always in the `out` or `err` column, so printing `[mcpd] ...` forges nothing.
//! Files are created mode 0640 ([`super::log_mode`]).
//!
//! Nothing here ever blocks the reader: the ring drops its oldest line, slow followers lag
//! (broadcast), and file writes go through a bounded queue to one writer thread that writes
//! in batches and drops lines (and says how many) when the disk cannot keep up. Lines are
//! capped at [`MAX_LINE`] bytes, so memory is bounded by `buffer_lines * MAX_LINE` per server.
//!
//! An idle server costs little: the ring grows with its lines, the followers' queue exists
//! only once someone follows, and a pipe has a read buffer only while output flows (a daemon
//! with 1000 servers has 2000 pipes, and its RSS also sets the cost of every fork).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;

use mcpd_protocol::terminal::{Keep, escape};

use super::log_files::RollingFiles;
use super::{LogLine, LogStream};
use crate::config::LogsConfig;

/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines queued for the writer thread before lines get dropped.
/// The queue preallocates its slots; written every 20 ms, 8 Ki lines is over 400 000 lines
/// a second.
const FILE_QUEUE: usize = 8 * 1024;
const FOLLOW_QUEUE: usize = 1024;
/// Read buffer per pipe. Longer lines are assembled across reads (up to [`MAX_LINE`]).
const READ_BUFFER: usize = 4 * 1024;
/// Room for lines of one turn kept between turns (a turn of a flood of short lines may need
/// far more, and gives it back).
const KEPT_LINE_SLOTS: usize = 256;
/// Most read in one turn before the reader pauses again: a pipe's capacity.
const TURN_BYTES: usize = 64 * 1024;
/// First pause between turns once output flows. A server that logs a line per request then
/// costs the daemon one wake-up per pause rather than one per line.
const READ_PAUSE: Duration = Duration::from_millis(2);
/// Longest pause: while every turn finds output the pause doubles up to this, so a server
/// that logs steadily costs ~60 wake-ups a second whatever its rate (a line reaches the ring
/// and `mcpctl logs -f` within it). A pipe holds 64 KiB: a child would have to write over
/// 4 MB/s to find it full.
const READ_PAUSE_MAX: Duration = Duration::from_millis(16);

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
        let files = Files::new(config);
        std::thread::Builder::new()
            .name("mcpd-logs".into())
            .spawn(move || {
                crate::background::batch_scheduling();
                writer(queue, files)
            })?;
        Ok(LogFiles { jobs })
    }

    /// Opens (creates, 0640) the file for `name`'s lines.
    pub fn open(&self, name: Arc<str>) {
        let _ = self.jobs.try_send(FileJob::Open(name));
    }

    /// Queues `bytes` (whole lines) for `name`'s file; false when the queue is full.
    pub fn write(&self, name: &Arc<str>, bytes: Vec<u8>) -> bool {
        self.jobs
            .try_send(FileJob::Write(name.clone(), bytes))
            .is_ok()
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

/// How long the writer thread lets lines accumulate after the first one arrives. A busy
/// server's lines are then written in batches, one `write` per file, and its reader does not
/// wake the writer for every line; the ring (`mcpctl logs`) has each line at once.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(20);

fn writer(queue: std_mpsc::Receiver<FileJob>, mut files: Files) {
    // Blocks while every server is quiet; then takes what came within the batch window.
    while let Ok(first) = queue.recv() {
        files.handle(first);
        std::thread::sleep(BATCH_WINDOW);
        while let Ok(job) = queue.try_recv() {
            files.handle(job);
        }
        files.write_pending();
    }
    files.write_pending();
}

/// A writer thread's state: the files and the lines not yet written to them. Owned by the
/// server logs' thread, and by the audit log's (`crate::audit`).
pub(crate) struct Files {
    files: RollingFiles,
    pending: HashMap<Arc<str>, Vec<u8>>,
}

impl Files {
    /// Files in `config.dir`, rotated and kept as `config` says; nothing is created yet.
    pub(crate) fn new(config: &LogsConfig) -> Self {
        Files {
            files: RollingFiles::new(config.dir.clone(), config.rotation, config.keep),
            pending: HashMap::new(),
        }
    }

    fn handle(&mut self, job: FileJob) {
        match job {
            FileJob::Open(name) => self.open(name),
            FileJob::Write(name, bytes) => match self.pending.get_mut(&name) {
                Some(buffer) => buffer.extend_from_slice(&bytes),
                None => {
                    self.pending.insert(name, bytes);
                }
            },
            FileJob::Flush(done) => {
                self.flush();
                let _ = done.send(());
            }
        }
    }

    /// Starts (creates, 0640) the file for `name`'s lines. Its old files are pruned with the
    /// batch's: a listing of the directory per server opened cost 1000 listings of a
    /// directory of 1000 files at 1000 servers' start.
    pub(crate) fn open(&mut self, name: Arc<str>) {
        self.write_lines();
        self.files.add(name);
    }

    /// The bytes waiting for `name`'s file: append whole lines.
    pub(crate) fn pending(&mut self, name: &Arc<str>) -> &mut Vec<u8> {
        self.pending.entry(name.clone()).or_default()
    }

    /// Writes everything pending (files are not buffered: written is flushed).
    pub(crate) fn flush(&mut self) {
        self.write_pending();
    }

    /// One `write` per file for the lines of the batch, then the pruning of old files of
    /// servers started or rolled over since the last batch. False when some lines could not
    /// be written (their file failed, now or before).
    pub(crate) fn write_pending(&mut self) -> bool {
        let written = self.write_lines();
        self.files.prune();
        written
    }

    fn write_lines(&mut self) -> bool {
        let mut written = true;
        if !self.pending.is_empty() {
            self.files.roll(SystemTime::now());
            for (name, bytes) in self.pending.drain() {
                if !bytes.is_empty() {
                    written &= self.files.write(&name, &bytes);
                }
            }
        }
        written
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
        let (at, stream) = (line.at, line.stream);
        self.push_lines(at, stream, &mut vec![line.text]);
    }

    /// Records `texts` (taken, leaving the vector empty), lines of one stream read at `at`:
    /// one stamp, one file job and one lock of the ring for them all.
    pub fn push_lines(&self, at: SystemTime, stream: LogStream, texts: &mut Vec<String>) {
        if texts.is_empty() {
            return;
        }
        if let Some(files) = &self.files {
            self.queue_for_file(files, at, stream, texts);
        }
        let followers = self
            .followers
            .get()
            .filter(|followers| followers.receiver_count() > 0);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for text in texts.drain(..) {
            let line = LogLine { at, stream, text };
            if let Some(followers) = followers {
                let _ = followers.send(line.clone());
            }
            if ring.len() >= self.capacity {
                ring.pop_front();
            }
            ring.push_back(line);
        }
    }

    /// A line of the daemon's own about this server (e.g. why it restarted), kept with its
    /// output on the [`LogStream::Daemon`] stream. It often quotes the server (an error it
    /// answered), so control characters are escaped and the note stays one line.
    pub fn note(&self, text: String) {
        let text = match escape(&text, Keep::Nothing) {
            Cow::Borrowed(_) => text,
            Cow::Owned(escaped) => escaped,
        };
        self.push(LogLine {
            at: SystemTime::now(),
            stream: LogStream::Daemon,
            text,
        });
    }

    fn queue_for_file(
        &self,
        files: &LogFiles,
        at: SystemTime,
        stream: LogStream,
        texts: &[String],
    ) {
        let stamp = humantime::format_rfc3339_millis(at).to_string();
        let stream = match stream {
            LogStream::Stdout => "out",
            LogStream::Stderr => "err",
            LogStream::Daemon => "mcpd",
        };
        let size: usize = texts.iter().map(|text| text.len()).sum();
        let mut bytes = Vec::with_capacity(size + texts.len() * (stamp.len() + 6) + 64);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                bytes,
                "{stamp} mcpd {dropped} lines dropped (disk too slow)"
            );
        }
        for text in texts {
            for part in [
                stamp.as_bytes(),
                b" ",
                stream.as_bytes(),
                b" ",
                text.as_bytes(),
                b"\n",
            ] {
                bytes.extend_from_slice(part);
            }
        }
        if files
            .jobs
            .try_send(FileJob::Write(self.name.clone(), bytes))
            .is_err()
        {
            self.dropped
                .fetch_add(dropped + texts.len() as u64, Ordering::Relaxed);
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

/// Reads a child's pipe until EOF, pushing each line (capped at [`MAX_LINE`]) into `hub`.
///
/// While the pipe is quiet the task waits for it in the runtime's epoll set. Once output
/// flows it leaves the set and reads what the pipe holds in turns, [`READ_PAUSE`] apart at
/// first and up to [`READ_PAUSE_MAX`] while output keeps coming, until a turn finds nothing:
/// a server that logs a line per request then costs a wake-up per pause, where an epoll
/// registration would wake the daemon for every line written. A turn's lines reach the
/// ring, the followers and the file queue together. The read buffer exists only while
/// output flows.
pub async fn capture(pipe: OwnedFd, stream: LogStream, hub: Arc<LogHub>) {
    let mut lines = Lines::new(stream, hub);
    let mut pipe = File::from(pipe);
    if let Err(err) = set_nonblocking(&pipe) {
        tracing::warn!(server = %lines.hub.name, error = %err, "cannot read the log pipe");
        return;
    }
    loop {
        // SAFETY: `pipe` owns its descriptor, which stays open and the same until
        // `into_inner` hands the file back.
        pipe = match unsafe { AsyncFd::register_with_interest(pipe, Interest::READABLE) } {
            Ok(quiet) => {
                if let Err(err) = quiet.readable().await {
                    tracing::debug!(server = %lines.hub.name, error = %err, "log pipe wait failed");
                }
                quiet.into_inner()
            }
            Err(err) => {
                // Cannot join the epoll set (out of memory or descriptors): poll slowly.
                let (pipe, cause) = err.into_parts();
                tracing::debug!(server = %lines.hub.name, error = %cause, "log pipe polled");
                tokio::time::sleep(READ_PAUSE * 50).await;
                pipe
            }
        };
        let mut buf = vec![0u8; READ_BUFFER];
        let mut pause = READ_PAUSE;
        loop {
            match read_turn(&mut pipe, &mut buf, &mut lines) {
                Turn::Output => {}
                Turn::Empty => break,
                Turn::End => {
                    lines.finish();
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(READ_PAUSE_MAX);
        }
    }
}

/// What one turn of reads found.
enum Turn {
    /// Output, now in the hub.
    Output,
    /// Nothing to read: the pipe is quiet.
    Empty,
    /// The end of the pipe (or an error reading it).
    End,
}

/// Reads what the pipe holds (at most [`TURN_BYTES`]) and pushes its lines to the hub at once.
fn read_turn(pipe: &mut File, buf: &mut [u8], lines: &mut Lines) -> Turn {
    let mut read = 0;
    let turn = loop {
        match pipe.read(buf) {
            Ok(0) => break Turn::End,
            Ok(n) => {
                lines.feed(&buf[..n]);
                read += n;
                if read >= TURN_BYTES {
                    break Turn::Output;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                break if read > 0 { Turn::Output } else { Turn::Empty };
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::debug!(server = %lines.hub.name, error = %err, "log pipe read failed");
                break Turn::End;
            }
        }
    };
    lines.publish();
    turn
}

fn set_nonblocking(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Splits a pipe's bytes into lines for the hub.
struct Lines {
    stream: LogStream,
    hub: Arc<LogHub>,
    line: Vec<u8>,
    truncated: bool,
    /// Whole lines of this turn, not yet in the hub.
    done: Vec<String>,
}

impl Lines {
    fn new(stream: LogStream, hub: Arc<LogHub>) -> Self {
        Lines {
            stream,
            hub,
            line: Vec::new(),
            truncated: false,
            done: Vec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (chunk, rest) = match memchr::memchr(b'\n', bytes) {
                Some(pos) => (&bytes[..pos], Some(&bytes[pos + 1..])),
                None => (bytes, None),
            };
            let room = MAX_LINE - self.line.len();
            if chunk.len() > room {
                self.truncated = true;
            }
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            match rest {
                Some(rest) => {
                    self.end_line();
                    bytes = rest;
                }
                None => break,
            }
        }
    }

    /// The end of the pipe: a last line without a newline is still a line.
    fn finish(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.publish();
        self.line = Vec::new();
    }

    fn end_line(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.truncated {
            text.push_str(" [truncated]");
        }
        self.done.push(text);
        self.line.clear();
        self.truncated = false;
    }

    /// Hands this turn's whole lines to the hub, stamped with one reading of the clock.
    fn publish(&mut self) {
        if !self.done.is_empty() {
            self.hub
                .push_lines(SystemTime::now(), self.stream, &mut self.done);
        }
        // A flood of short lines made the list long: let its room go with the flood.
        if self.done.capacity() > KEPT_LINE_SLOTS {
            self.done = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogsConfig, Rotation};
    use std::path::PathBuf;

    /// A real pipe carrying `input`, written by another thread and then closed.
    fn pipe_with(input: &[u8]) -> OwnedFd {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            // Larger than the pipe's buffer: written while the reader drains.
            writer.write_all(&input).unwrap();
        });
        OwnedFd::from(reader)
    }

    fn logs_config(dir: PathBuf) -> LogsConfig {
        LogsConfig {
            dir,
            rotation: Rotation::Never,
            keep: 2,
            buffer_lines: 3,
            audit: true,
        }
    }

    /// Servers opened together are pruned together, with one listing of the directory, when
    /// their batch is written; not one listing per server as each is opened.
    #[test]
    fn servers_opened_in_one_batch_are_pruned_when_the_batch_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().to_path_buf();
        let old = |name: &str, day: &str| logs.join(format!("{name}.{day}.log"));
        let days = ["2020-01-01", "2020-01-02", "2020-01-03"];
        for name in ["one", "two", "three"] {
            for day in days {
                std::fs::write(old(name, day), "x").unwrap();
            }
        }
        let mut config = logs_config(logs.clone());
        config.rotation = Rotation::Daily;
        let mut files = Files::new(&config);
        for name in ["one", "two", "three"] {
            files.open(Arc::from(name));
        }
        for name in ["one", "two", "three"] {
            assert!(
                old(name, days[0]).exists(),
                "{name}: pruned before its batch was written"
            );
        }
        files.write_pending();
        for name in ["one", "two", "three"] {
            // keep: 2 is today's file and the newest old one.
            assert!(
                !old(name, days[0]).exists() && !old(name, days[1]).exists(),
                "{name}"
            );
            assert!(old(name, days[2]).exists(), "{name}");
        }
    }

    #[tokio::test]
    async fn lines_go_to_ring_followers_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(&logs_config(dir.path().join("logs"))).unwrap();
        let hub = Arc::new(LogHub::new("echo", 3, Some(files.clone())));
        let mut follower = hub.subscribe();
        let input: &[u8] = b"one\ntwo\r\nthree\nfour\nfive without newline";
        capture(pipe_with(input), LogStream::Stdout, hub.clone()).await;
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
    async fn daemon_notes_are_flagged_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(&logs_config(dir.path().join("logs"))).unwrap();
        let hub = Arc::new(LogHub::new("forge", 10, Some(files.clone())));
        capture(
            pipe_with(b"[mcpd] process ended: exit code 0\n"),
            LogStream::Stdout,
            hub.clone(),
        )
        .await;
        hub.note("process ended: exit code 1\n2026-01-01T00:00:00.000Z mcpd fake\x1b[2J".into());
        let tail = hub.tail(10);
        assert_eq!(tail[0].stream, LogStream::Stdout);
        assert_eq!(tail[0].text, "[mcpd] process ended: exit code 0");
        assert_eq!(tail[1].stream, LogStream::Daemon);
        assert_eq!(
            tail[1].text,
            "process ended: exit code 1\\x0a2026-01-01T00:00:00.000Z mcpd fake\\x1b[2J"
        );
        files.flush(std::time::Duration::from_secs(5)).await;
        let path = dir.path().join("logs/forge.log");
        let written = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 2, "{written}");
        assert!(
            lines[0].ends_with(" out [mcpd] process ended: exit code 0"),
            "{written}"
        );
        assert!(
            lines[1].contains(" mcpd process ended: exit code 1\\x0a"),
            "{written}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o640);
        assert_eq!(mode(&dir.path().join("logs")), 0o750);
    }

    #[tokio::test]
    async fn long_lines_are_truncated() {
        let hub = Arc::new(LogHub::new("long", 10, None));
        let mut input = vec![b'x'; MAX_LINE * 3 + 7];
        input.extend_from_slice(b"\nshort\n");
        capture(pipe_with(&input), LogStream::Stderr, hub.clone()).await;
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
        capture(pipe_with(b"a\nb\n"), LogStream::Stdout, hub.clone()).await;
        files.flush(std::time::Duration::from_secs(5)).await;
        assert_eq!(hub.tail(5).len(), 2);
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_pipe_is_captured_whole_and_in_order() {
        let hub = Arc::new(LogHub::new("burst", 100_000, None));
        let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        assert!(input.len() > 64 * 1024);
        capture(pipe_with(input.as_bytes()), LogStream::Stdout, hub.clone()).await;
        let tail = hub.tail(100_000);
        assert_eq!(tail.len(), 20_000);
        assert!(
            tail.iter()
                .enumerate()
                .all(|(i, line)| line.text == format!("line {i}"))
        );
    }

    /// Lines already in the pipe when it is read are one turn: one stamp, one file job.
    #[tokio::test]
    async fn lines_read_together_share_a_stamp_and_a_file_write() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(&logs_config(dir.path().join("logs"))).unwrap();
        let hub = Arc::new(LogHub::new("turn", 100, Some(files.clone())));
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"a\nb\nc\n").unwrap();
        drop(writer);
        capture(OwnedFd::from(reader), LogStream::Stderr, hub.clone()).await;
        let lines = hub.tail(10);
        let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert!(lines.iter().all(|line| line.at == lines[0].at));
        files.flush(std::time::Duration::from_secs(5)).await;
        let written = std::fs::read_to_string(dir.path().join("logs/turn.log")).unwrap();
        let stamps: Vec<&str> = written
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(written.lines().count(), 3, "{written}");
        assert!(stamps.iter().all(|stamp| *stamp == stamps[0]), "{written}");
        assert!(
            written.lines().all(|line| line.contains(" err ")),
            "{written}"
        );
    }
}
