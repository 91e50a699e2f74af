//! Watching `services_dir`: turns file changes into debounced reload requests.
//!
//! Editors save in many ways (write in place, write a temp file then rename over the
//! original, delete and recreate); all of them end as a burst of events on a `*.yaml` path.
//! The debouncer folds a burst into one request, so 100 rapid writes cause one reload.
//!
//! The parent directory is watched too, for `services_dir` itself: when the directory is
//! deleted (the kernel drops a watch with its directory), moved away or (re)created, the
//! watch on it is re-armed and a reload is requested, so deleting and recreating the
//! directory, or creating it after the daemon started, needs no restart.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{Event, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the directory must be quiet before a reload is requested.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// The longest a burst can postpone its reload: a file rewritten without pause still reloads.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir}: {source}")]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

/// What the thread that owns the watcher hears.
enum Message {
    /// A change to a `*.yaml` file of the directory (`rearm: false`), or to `services_dir`
    /// itself, which appeared, vanished or moved (`rearm: true`: watch it again first).
    Changed {
        rearm: bool,
    },
    Stop,
}

/// A running watch; dropping it stops watching.
pub struct ServicesWatch {
    messages: std_mpsc::Sender<Message>,
}

impl Drop for ServicesWatch {
    fn drop(&mut self) {
        let _ = self.messages.send(Message::Stop);
    }
}

/// A burst of changes being folded into one reload request: pure, times come in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Burst {
    /// When the burst's first and last changes were seen; `None` between bursts.
    span: Option<(Instant, Instant)>,
    rearm: bool,
}

impl Burst {
    fn changed(&mut self, now: Instant, rearm: bool) {
        let first = self.span.map_or(now, |(first, _)| first);
        self.span = Some((first, now));
        self.rearm |= rearm;
    }

    /// When the request is due: [`DEBOUNCE`] after the last change, at most [`MAX_DELAY`]
    /// after the first; `None` when nothing is pending (wait without a timeout).
    fn due(&self) -> Option<Instant> {
        self.span
            .map(|(first, last)| (last + DEBOUNCE).min(first + MAX_DELAY))
    }

    /// Ends the burst; returns whether the directory must be watched again.
    fn take(&mut self) -> bool {
        std::mem::take(self).rearm
    }
}

/// Watches `dir` (non-recursively) and sends `()` on `requests` after each quiet burst of
/// changes to a `*.yaml` file, and after `dir` itself is created, deleted or moved. Requests
/// coalesce: the channel holds at most one.
///
/// `dir` need not exist yet when its parent does: watching starts when it appears.
///
/// An idle watch costs no wake-ups: the kernel's inotify thread and the owner thread both
/// block until an event arrives; only a pending burst sets a timeout.
pub fn watch_services(dir: &Path, requests: mpsc::Sender<()>) -> Result<ServicesWatch, WatchError> {
    let wrap = |source| WatchError {
        dir: dir.to_owned(),
        source,
    };
    let dir = std::path::absolute(dir).map_err(|e| wrap(notify::Error::io(e)))?;
    let (messages, inbox) = std_mpsc::channel();
    let handler = {
        let dir = dir.clone();
        let messages = messages.clone();
        move |result: notify::Result<Event>| match result {
            // Opening or closing a file changes nothing; every real change also has a
            // create, modify, rename or remove event.
            Ok(event) if !event.kind.is_access() => {
                let mut reload = false;
                let mut rearm = false;
                for path in &event.paths {
                    if *path == dir {
                        rearm = true;
                    } else if path.parent() == Some(dir.as_path()) && is_service_file(path) {
                        reload = true;
                    }
                }
                if reload || rearm {
                    let _ = messages.send(Message::Changed { rearm });
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "watching services_dir"),
        }
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(wrap)?;
    let parent_watched = match dir.parent() {
        Some(parent) => match watcher.watch(parent, RecursiveMode::NonRecursive) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, dir = %parent.display(), "cannot watch the parent of services_dir; deleting and recreating services_dir will need a reload");
                false
            }
        },
        None => false,
    };
    if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        if !parent_watched {
            return Err(wrap(error));
        }
        tracing::warn!(%error, dir = %dir.display(), "cannot watch services_dir yet; watching starts when it appears");
    }
    let owner = move || {
        let mut burst = Burst::default();
        loop {
            let message = match burst.due() {
                None => inbox
                    .recv()
                    .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
                Some(due) => inbox.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            match message {
                Ok(Message::Changed { rearm }) => burst.changed(Instant::now(), rearm),
                Ok(Message::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    if burst.take() {
                        // Re-armed before the reload is requested, so no change made after
                        // the reload read the directory goes unseen. A deleted directory's
                        // watch is gone already; unwatching may fail, harmlessly.
                        let _ = watcher.unwatch(&dir);
                        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                            Ok(()) => tracing::info!(dir = %dir.display(), "watching services_dir"),
                            Err(error) => {
                                tracing::warn!(%error, dir = %dir.display(), "services_dir is gone; watching resumes when it reappears");
                            }
                        }
                    }
                    // A full channel means a reload is already pending; nothing is lost.
                    let _ = requests.try_send(());
                }
            }
        }
    };
    std::thread::Builder::new()
        .name("mcpd-watch".into())
        .spawn(owner)
        .map_err(|e| wrap(notify::Error::io(e)))?;
    Ok(ServicesWatch { messages })
}

/// True for `name.yaml`, false for editors' temp and backup files and hidden files.
fn is_service_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_yaml_files_count() {
        assert!(is_service_file(Path::new("/x/echo.yaml")));
        assert!(!is_service_file(Path::new("/x/.echo.yaml.swp")));
        assert!(!is_service_file(Path::new("/x/echo.yaml~")));
        assert!(!is_service_file(Path::new("/x/notes.txt")));
        assert!(!is_service_file(Path::new("/x/.#echo.yaml")));
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(dir.path(), tx).unwrap();
        for i in 0..100 {
            std::fs::write(dir.path().join("a.yaml"), format!("# {i}\n")).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a reload request after the burst")
            .unwrap();
        // The burst was folded (exactly how is `bursts_fold_into_one_request`'s to check; a
        // writer descheduled for longer than DEBOUNCE may split it), never one per write.
        let mut extra = 0;
        while tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await.is_ok() {
            extra += 1;
            assert!(extra < 10, "100 writes gave one reload request each");
        }
    }

    #[test]
    fn bursts_fold_into_one_request() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut burst = Burst::default();
        assert_eq!(burst.due(), None, "idle: no timeout at all");
        // Changes closer together than DEBOUNCE postpone the request...
        for at in (0..=500).step_by(50) {
            burst.changed(ms(at), false);
        }
        assert_eq!(burst.due(), Some(ms(500) + DEBOUNCE));
        // ...but never past MAX_DELAY after the first one.
        for at in (550..=2000).step_by(50) {
            burst.changed(ms(at), false);
        }
        assert_eq!(burst.due(), Some(ms(0) + MAX_DELAY));
        assert!(!burst.take());
        assert_eq!(burst.due(), None, "one request per burst");
        // A change to the directory itself anywhere in a burst re-arms the watch.
        burst.changed(ms(3000), true);
        burst.changed(ms(3010), false);
        assert!(burst.take());
        burst.changed(ms(4000), false);
        assert!(!burst.take());
    }

    #[tokio::test]
    async fn atomic_rename_save_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("echo.yaml"), "a: 1\n").unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(dir.path(), tx).unwrap();
        std::fs::write(dir.path().join(".echo.yaml.tmp"), "a: 2\n").unwrap();
        std::fs::rename(
            dir.path().join(".echo.yaml.tmp"),
            dir.path().join("echo.yaml"),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a reload request after the rename")
            .unwrap();
    }

    #[tokio::test]
    async fn other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(dir.path(), tx).unwrap();
        std::fs::write(dir.path().join("README.txt"), "x").unwrap();
        let got = tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await;
        assert!(got.is_err(), "a non-yaml file must not request a reload");
    }
    /// Drains requests until the directory has been quiet for a while.
    async fn drain(rx: &mut mpsc::Receiver<()>) {
        while tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await.is_ok() {}
    }

    async fn expect_request(rx: &mut mpsc::Receiver<()>, what: &str) {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("a reload request after {what}"))
            .unwrap();
    }

    #[tokio::test]
    async fn watching_resumes_after_the_directory_is_deleted_and_recreated() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mcp");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "a: 1\n").unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(&dir, tx).unwrap();

        std::fs::remove_dir_all(&dir).unwrap();
        expect_request(&mut rx, "the directory was deleted").await;
        drain(&mut rx).await;

        std::fs::create_dir(&dir).unwrap();
        expect_request(&mut rx, "the directory was recreated").await;
        drain(&mut rx).await;

        // The new directory is watched: a file written into it later is seen.
        std::fs::write(dir.join("b.yaml"), "b: 1\n").unwrap();
        expect_request(&mut rx, "a write into the recreated directory").await;
    }

    #[tokio::test]
    async fn a_directory_missing_at_start_is_watched_once_it_appears() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mcp");
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(&dir, tx).unwrap();
        std::fs::create_dir(&dir).unwrap();
        expect_request(&mut rx, "the directory appeared").await;
        drain(&mut rx).await;
        std::fs::write(dir.join("a.yaml"), "a: 1\n").unwrap();
        expect_request(&mut rx, "a write into the new directory").await;
    }

    #[tokio::test]
    async fn yaml_files_beside_the_directory_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mcp");
        std::fs::create_dir(&dir).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watch = watch_services(&dir, tx).unwrap();
        // The daemon file usually sits in the parent; it is reloaded by SIGHUP, not by edits.
        std::fs::write(root.path().join("mcpd.yaml"), "x: 1\n").unwrap();
        let got = tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await;
        assert!(
            got.is_err(),
            "a file outside services_dir must not request a reload"
        );
    }
}
