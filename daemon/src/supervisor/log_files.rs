//! The files server logs go to: `<dir>/<name>.<period>.log`, one per server and rotation
//! period, created 0640 ([`log_mode`]), at most `logs.keep` of them per server (older periods
//! are deleted), and at most [`MAX_OPEN`] held open at once.
//!
//! Why not an appender per server: each kept a descriptor open for the daemon's life and
//! listed the whole directory, with a `stat` per entry, when it was made. With 1000 servers
//! that was 1000 descriptors that every fork copies and every exec closes again, and a million
//! `stat`s at start. Here one listing per batch of new servers (and one per period) prunes
//! them all, and a quiet server holds no descriptor. Pruning matches whole server names: the
//! files of `echo-admin` are not `echo`'s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::log_mode;
use crate::config::Rotation;

/// Log files held open at once; a write to another server's file closes the oldest.
pub const MAX_OPEN: usize = 64;

/// How long a file that could not be opened or written is left alone before the next write
/// to it tries again (a full disk that was cleared, a permission that was fixed).
pub const RETRY: Duration = Duration::from_secs(30);

/// The writer thread's files.
pub(super) struct RollingFiles {
    dir: PathBuf,
    rotation: Rotation,
    keep: usize,
    /// The current period, as file names spell it.
    period: String,
    /// Whether the directory exists (`None`: not tried yet).
    dir_ready: Option<bool>,
    /// Every server with a file here, and, for a file that could not be opened or written,
    /// when it is tried again.
    names: HashMap<Arc<str>, Option<Instant>>,
    /// How long a failed file is left alone ([`RETRY`]).
    retry: Duration,
    /// Servers whose files of older periods were not pruned yet.
    unpruned: Vec<Arc<str>>,
    /// Open files, oldest first.
    open: VecDeque<(Arc<str>, File)>,
}

impl RollingFiles {
    pub fn new(dir: PathBuf, rotation: Rotation, keep: usize) -> Self {
        RollingFiles {
            dir,
            rotation,
            keep: keep.max(1),
            period: log_mode::period(rotation, SystemTime::now()),
            dir_ready: None,
            names: HashMap::new(),
            retry: RETRY,
            unpruned: Vec::new(),
            open: VecDeque::new(),
        }
    }

    /// Starts `name`'s file for the current period (so it exists, 0640, before any line).
    pub fn add(&mut self, name: Arc<str>) {
        if !self.dir_ready() {
            return;
        }
        let path = log_mode::file_path(&self.dir, &name, &self.period);
        let retry_at = match log_mode::open_file(&path) {
            Ok(_) => None,
            Err(err) => {
                tracing::error!(log = %name, file = %path.display(), error = %err,
                    "cannot open this log file; its lines are not written until it works (a server's logs stay in memory, audit records are counted as dropped)");
                Some(Instant::now() + self.retry)
            }
        };
        self.unpruned.push(name.clone());
        self.names.insert(name, retry_at);
    }

    /// Moves to the period `now` falls in; the next write to each server opens its new file.
    pub fn roll(&mut self, now: SystemTime) {
        let period = log_mode::period(self.rotation, now);
        if period != self.period {
            self.period = period;
            self.open.clear();
            self.unpruned = self.names.keys().cloned().collect();
        }
    }

    /// Appends `bytes` to `name`'s file of the current period; false when they were not
    /// written (the file could not be opened or written, now or before).
    pub fn write(&mut self, name: &Arc<str>, bytes: &[u8]) -> bool {
        let retrying = match self.names.get(name) {
            None => return false,
            Some(None) => false,
            Some(Some(retry_at)) if Instant::now() < *retry_at => return false,
            Some(Some(_)) => true,
        };
        let at = match self.open.iter().position(|(open, _)| open == name) {
            Some(at) => at,
            None => {
                let path = log_mode::file_path(&self.dir, name, &self.period);
                match log_mode::open_file(&path) {
                    Ok(file) => {
                        if self.open.len() >= MAX_OPEN {
                            self.open.pop_front();
                        }
                        self.open.push_back((name.clone(), file));
                        self.open.len() - 1
                    }
                    Err(err) => {
                        self.failed(name, &err, retrying);
                        return false;
                    }
                }
            }
        };
        if let Err(err) = self.open[at].1.write_all(bytes) {
            self.open.remove(at);
            self.failed(name, &err, retrying);
            return false;
        }
        if retrying {
            tracing::info!(log = %name, "the log file is written again");
            self.names.insert(name.clone(), None);
        }
        true
    }

    /// `name`'s file could not be opened or written: it is left alone for a while. Said once
    /// when it stops working, not at every retry.
    fn failed(&mut self, name: &Arc<str>, err: &std::io::Error, retrying: bool) {
        if !retrying {
            tracing::error!(log = %name, error = %err,
                "cannot write this log file; its lines are not written until it works (a server's logs stay in memory, audit records are counted as dropped)");
        }
        self.names
            .insert(name.clone(), Some(Instant::now() + self.retry));
    }

    /// Deletes the files of older periods beyond `keep` (the current one included) of every
    /// server added or rolled since the last call, with one listing of the directory.
    pub fn prune(&mut self) {
        if self.unpruned.is_empty() {
            return;
        }
        let names: HashSet<Arc<str>> = std::mem::take(&mut self.unpruned).into_iter().collect();
        if self.rotation == Rotation::Never || self.dir_ready != Some(true) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut periods: HashMap<&str, Vec<String>> = HashMap::new();
        for entry in entries.flatten() {
            // A regular file only: a symlink or directory of that name is not ours to delete.
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let file_name = entry.file_name();
            let Some((name, period)) = file_name.to_str().and_then(split_file_name) else {
                continue;
            };
            if let Some(name) = names.get(name) {
                periods.entry(name).or_default().push(period.to_owned());
            }
        }
        for (name, mut old) in periods {
            old.retain(|period| *period != self.period);
            old.sort_unstable_by(|a, b| b.cmp(a));
            for period in old.iter().skip(self.keep - 1) {
                let path = log_mode::file_path(&self.dir, name, period);
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(server = %name, file = %path.display(), error = %err,
                        "cannot delete an old log file");
                }
            }
        }
    }

    fn dir_ready(&mut self) -> bool {
        let dir = &self.dir;
        *self
            .dir_ready
            .get_or_insert_with(|| match log_mode::create_dir(dir) {
                Ok(()) => true,
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err,
                        "cannot create the log directory; server logs are kept in memory only \
                         (`mcpctl logs` still works)");
                    false
                }
            })
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// `echo.2026-11-29.log` -> (`echo`, `2026-11-29`): a server name (which has no dot) and a
/// period of any rotation (digits and dashes, 10, 13 or 16 long).
fn split_file_name(file_name: &str) -> Option<(&str, &str)> {
    let (name, period) = file_name.strip_suffix(".log")?.split_once('.')?;
    let is_period = matches!(period.len(), 10 | 13 | 16)
        && period.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    is_period.then_some((name, period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn file_names_split_into_server_and_period() {
        assert_eq!(
            split_file_name("echo.2026-11-29.log"),
            Some(("echo", "2026-11-29"))
        );
        assert_eq!(
            split_file_name("echo-admin.2026-11-29-16-40.log"),
            Some(("echo-admin", "2026-11-29-16-40"))
        );
        assert_eq!(split_file_name("echo.log"), None);
        assert_eq!(split_file_name("echo.2026-11-29.log.gz"), None);
        assert_eq!(split_file_name("echo.notadate10.log"), None);
        assert_eq!(split_file_name("echo.2026.log"), None);
    }

    #[test]
    fn a_new_period_gets_its_own_file_0640_and_writes_go_there() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let mut files = RollingFiles::new(logs.clone(), Rotation::Daily, 3);
        let name: Arc<str> = Arc::from("rot");
        let day = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        files.roll(day(1_700_000_000));
        files.add(name.clone());
        let first = log_mode::file_path(&logs, "rot", "2023-11-14");
        assert_eq!(mode(&first), 0o640);
        assert_eq!(mode(&logs), 0o750);
        files.write(&name, b"one\n");
        // The next day's file exists already, too open (another writer, umask 022).
        let second = log_mode::file_path(&logs, "rot", "2023-11-15");
        std::fs::write(&second, "").unwrap();
        std::fs::set_permissions(&second, std::fs::Permissions::from_mode(0o644)).unwrap();
        files.roll(day(1_700_000_000 + 86_400));
        files.write(&name, b"two\n");
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "two\n");
        assert_eq!(mode(&second), 0o640);
    }

    #[test]
    fn pruning_keeps_the_newest_files_of_exactly_that_server() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().to_path_buf();
        let touch = |name: &str| std::fs::write(logs.join(name), "x").unwrap();
        for day in ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"] {
            touch(&format!("echo.{day}.log"));
            touch(&format!("echo-admin.{day}.log"));
        }
        touch("echo.log");
        std::fs::create_dir(logs.join("echo.2019-01-01.log")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", logs.join("echo.2019-01-02.log")).unwrap();
        let mut files = RollingFiles::new(logs.clone(), Rotation::Daily, 3);
        files.add(Arc::from("echo"));
        files.prune();
        let mut left: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("echo."))
            .collect();
        left.sort();
        let today = log_mode::period(Rotation::Daily, SystemTime::now());
        let mut expected = vec![
            "echo.2019-01-01.log".to_owned(),
            "echo.2019-01-02.log".to_owned(),
            "echo.2020-01-03.log".to_owned(),
            "echo.2020-01-04.log".to_owned(),
            format!("echo.{today}.log"),
            "echo.log".to_owned(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        // Another server's files, even with the same prefix, are untouched.
        for day in ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"] {
            assert!(logs.join(format!("echo-admin.{day}.log")).exists());
        }
        // Nothing more happens until a server is added or the period changes.
        touch("echo.2020-01-05.log");
        files.prune();
        assert!(logs.join("echo.2020-01-03.log").exists());
    }

    #[test]
    fn at_most_max_open_files_are_held_and_every_line_lands() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().to_path_buf();
        let mut files = RollingFiles::new(logs.clone(), Rotation::Never, 1);
        let names: Vec<Arc<str>> = (0..MAX_OPEN + 10)
            .map(|i| Arc::from(format!("s{i}")))
            .collect();
        for name in &names {
            files.add(name.clone());
        }
        for round in 0..2 {
            for name in &names {
                files.write(name, format!("{round}\n").as_bytes());
            }
            assert!(files.open_count() <= MAX_OPEN);
        }
        for name in &names {
            let path = log_mode::file_path(&logs, name, "");
            assert_eq!(std::fs::read_to_string(path).unwrap(), "0\n1\n");
        }
    }

    #[test]
    fn an_unwritable_file_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().to_path_buf();
        // A directory where the file should be: it cannot be opened for writing.
        std::fs::create_dir(logs.join("bad.log")).unwrap();
        let mut files = RollingFiles::new(logs.clone(), Rotation::Never, 1);
        let (bad, good): (Arc<str>, Arc<str>) = (Arc::from("bad"), Arc::from("good"));
        files.add(bad.clone());
        files.add(good.clone());
        files.write(&bad, b"lost\n");
        files.write(&good, b"kept\n");
        assert_eq!(files.open_count(), 1);
        let kept = std::fs::read_to_string(log_mode::file_path(&logs, "good", "")).unwrap();
        assert_eq!(kept, "kept\n");
    }

    #[test]
    fn a_file_that_failed_is_tried_again_after_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().to_path_buf();
        std::fs::create_dir(logs.join("bad.log")).unwrap();
        let bad: Arc<str> = Arc::from("bad");
        let read = || std::fs::read_to_string(log_mode::file_path(&logs, "bad", "")).unwrap();

        // Not before its time.
        let mut files = RollingFiles::new(logs.clone(), Rotation::Never, 1);
        files.add(bad.clone());
        assert!(!files.write(&bad, b"lost\n"));
        std::fs::remove_dir(logs.join("bad.log")).unwrap();
        assert!(!files.write(&bad, b"lost too\n"), "left alone for `RETRY`");

        // Once it is due, the next write tries again, and from then on it is written.
        std::fs::create_dir(logs.join("bad.log")).unwrap();
        let mut files = RollingFiles::new(logs.clone(), Rotation::Never, 1);
        files.retry = Duration::ZERO;
        files.add(bad.clone());
        assert!(!files.write(&bad, b"lost\n"));
        assert!(!files.write(&bad, b"still lost\n"), "still a directory");
        std::fs::remove_dir(logs.join("bad.log")).unwrap();
        assert!(files.write(&bad, b"back\n"));
        files.retry = Duration::from_secs(3600);
        assert!(files.write(&bad, b"and on\n"));
        assert_eq!(read(), "back\nand on\n");
    }
}
