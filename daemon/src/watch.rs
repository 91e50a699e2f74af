//! Watching `services_dir`: turns file changes into debounced reload requests.
//!
//! Editors save in many ways (write in place, write a temp file then rename over the
//! original, delete and recreate); all of them end as a burst of events on a `*.yaml` path.
//! The debouncer folds a burst into one request, so 100 rapid writes cause one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

/// How long the directory must be quiet before a reload is requested.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir}: {source}")]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

/// A running watch; dropping it stops watching.
pub struct ServicesWatch {
    _debouncer: Box<dyn std::any::Any + Send>,
}

/// Watches `dir` (non-recursively) and sends `()` on `requests` after each quiet burst of
/// changes to a `*.yaml` file. Requests coalesce: the channel holds at most one.
pub fn watch_services(dir: &Path, requests: mpsc::Sender<()>) -> Result<ServicesWatch, WatchError> {
    let handler = move |result: DebounceEventResult| match result {
        Ok(events) => {
            // Opening or closing a file changes nothing; every real change also has a
            // create, modify, rename or remove event.
            let relevant = events
                .iter()
                .filter(|event| !event.kind.is_access())
                .flat_map(|event| event.paths.iter())
                .any(|path| is_service_file(path));
            if relevant {
                // A full channel means a reload is already pending; nothing is lost.
                let _ = requests.try_send(());
            }
        }
        Err(errors) => {
            for error in errors {
                tracing::warn!(%error, "watching services_dir");
            }
        }
    };
    let wrap = |source| WatchError {
        dir: dir.to_owned(),
        source,
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler).map_err(wrap)?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(wrap)?;
    Ok(ServicesWatch {
        _debouncer: Box::new(debouncer),
    })
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
        // The burst was folded: no second request follows once the directory is quiet.
        let again = tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await;
        assert!(again.is_err(), "one burst must give one request");
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
}
