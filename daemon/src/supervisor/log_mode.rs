//! Who may read server log files: each file is created mode 0640 (owner read-write, group
//! read, others nothing) whatever the umask, and the log directory 0750.
//!
//! A new file gets exactly 0640 whatever the process umask; an existing file found more open
//! than that is narrowed when it is opened.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Rotation;

/// Mode of every server log file.
pub const LOG_FILE_MODE: u32 = 0o640;
/// Mode of a log directory mcpd creates.
pub const LOG_DIR_MODE: u32 = 0o750;

/// Creates `dir` (and missing parents) with [`LOG_DIR_MODE`]; an existing one is left as is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(LOG_DIR_MODE)
        .create(dir)
}

/// The rotation period `at` falls in, as file names spell it (UTC):
/// `2026-11-29`, `2026-11-29-16`, `2026-11-29-16-40`, or empty for no rotation.
pub fn period(rotation: Rotation, at: SystemTime) -> String {
    // 2026-11-29T16:40:34Z
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let (day, hour, minute) = (&stamp[..10], &stamp[11..13], &stamp[14..16]);
    match rotation {
        Rotation::Never => String::new(),
        Rotation::Daily => day.to_owned(),
        Rotation::Hourly => format!("{day}-{hour}"),
        Rotation::Minutely => format!("{day}-{hour}-{minute}"),
    }
}

/// The file `name`'s lines go to during `period`.
pub fn file_path(dir: &Path, name: &str, period: &str) -> PathBuf {
    if period.is_empty() {
        dir.join(format!("{name}.log"))
    } else {
        dir.join(format!("{name}.{period}.log"))
    }
}

/// Opens `path` for appending: created with [`LOG_FILE_MODE`] if it does not exist, narrowed
/// to that mode if it is more open. A symlink is not followed.
pub fn open_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .append(true)
        .mode(LOG_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW);
    match options.clone().create_new(true).open(path) {
        // New: exactly 0640, whatever the umask took away.
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(LOG_FILE_MODE))?;
            Ok(file)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let file = options.open(path)?;
            let mode = file.metadata()?.permissions().mode() & 0o7777;
            if mode & !LOG_FILE_MODE != 0 {
                file.set_permissions(Permissions::from_mode(LOG_FILE_MODE))?;
            }
            Ok(file)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn periods_and_file_names() {
        // 2023-11-14T22:13:20Z
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(period(Rotation::Never, at), "");
        assert_eq!(period(Rotation::Daily, at), "2023-11-14");
        assert_eq!(period(Rotation::Hourly, at), "2023-11-14-22");
        assert_eq!(period(Rotation::Minutely, at), "2023-11-14-22-13");
        let dir = Path::new("/logs");
        assert_eq!(file_path(dir, "echo", ""), Path::new("/logs/echo.log"));
        assert_eq!(
            file_path(dir, "echo", "2023-11-14"),
            Path::new("/logs/echo.2023-11-14.log")
        );
    }

    #[test]
    fn files_are_created_0640_and_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        open_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o640);
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        open_file(&path).unwrap();
        assert_eq!(mode(&path), 0o640);
        // A narrower mode chosen by the operator is kept.
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        open_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
