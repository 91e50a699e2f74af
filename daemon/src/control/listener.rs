//! Binding the control socket: parent directory, stale-socket detection, file mode without an
//! over-permissive window, a path that appears only once it accepts connections (bound under
//! a staging name, then renamed), and removal of the socket file when the listener goes away.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

use crate::config::ControlConfig;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another mcpd is already listening on {}", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{} exists and is not a socket; remove it or set control.socket to another path", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot create the socket directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot check whether {} is in use: {source}", path.display())]
    Probe { path: PathBuf, source: io::Error },
    #[error("cannot remove the stale socket {}: {source}", path.display())]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set mode {mode:04o} on {}: {source}", path.display())]
    Chmod {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
    #[error(transparent)]
    PrivateDir(#[from] super::private_dir::PrivateDirError),
}

/// A bound control socket, not yet serving. Dropping it removes the socket file (if the file
/// is still the one it created).
pub struct ControlListener {
    pub(super) listener: Listener,
    guard: SocketGuard,
}

impl std::fmt::Debug for ControlListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlListener")
            .field("path", &self.guard.path)
            .finish()
    }
}

impl ControlListener {
    /// Binds `config.socket` with `config.mode`. Must run inside a tokio runtime.
    ///
    /// The fallback directory (`config.private_dir`) is created 0700 or refused when it is not
    /// mcpd's alone (see `private_dir`). Creates a missing parent directory (mode 0755, less
    /// if the umask says so). An existing socket file is removed only when nothing answers on
    /// it; if a daemon answers, binding fails with [`BindError::AlreadyRunning`]. The socket is
    /// created with the configured mode applied before `bind` (the umask can only narrow it),
    /// then set to exactly that mode, so the file is never more open than configured.
    pub fn bind(config: &ControlConfig) -> Result<ControlListener, BindError> {
        let path = config.socket.clone();
        if let Some(dir) = &config.private_dir {
            super::private_dir::ensure(dir)?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|source| BindError::CreateDir {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        remove_if_stale(&path)?;

        // Bound and listening under a staging name first, then renamed into place: the path
        // appears only once connections to it are accepted (a client or a second daemon that
        // finds the file between bind and listen would take it for a dead daemon's).
        let staging = staging_path(&path);
        let _ = std::fs::remove_file(&staging); // left by an earlier daemon with this pid
        let name = staging
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(|source| BindError::Bind {
                path: path.clone(),
                source,
            })?;
        let listener = ListenerOptions::new()
            .name(name)
            .mode(config.mode as libc::mode_t)
            .reclaim_name(false)
            .try_overwrite(false)
            .create_tokio()
            .map_err(|source| BindError::Bind {
                path: path.clone(),
                source,
            })?;
        // From here on the file is ours: the guard removes it if anything below fails.
        let meta = std::fs::symlink_metadata(&staging).map_err(|source| BindError::Bind {
            path: path.clone(),
            source,
        })?;
        let mut guard = SocketGuard {
            path: staging.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(config.mode)).map_err(
            |source| BindError::Chmod {
                path: path.clone(),
                mode: config.mode,
                source,
            },
        )?;
        // Never over another daemon's socket that appeared since the stale check.
        let moved = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            staging.as_path(),
            nix::fcntl::AT_FDCWD,
            path.as_path(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        );
        // A file system without RENAME_NOREPLACE (EINVAL): a plain rename after the check above.
        let moved = match moved {
            Err(nix::errno::Errno::EINVAL) => std::fs::rename(&staging, &path)
                .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            other => other,
        };
        match moved {
            Ok(()) => guard.path = path.clone(),
            Err(nix::errno::Errno::EEXIST) => return Err(BindError::AlreadyRunning { path }),
            Err(errno) => {
                return Err(BindError::Bind {
                    path,
                    source: io::Error::from(errno),
                });
            }
        }
        Ok(ControlListener { listener, guard })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.guard.path
    }
}

/// Where the socket is bound before it is renamed to `path`: a hidden name beside it.
fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "mcpd.sock".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.{}.new", std::process::id()))
}

/// Removes an existing socket file at `path` if nobody is listening on it.
fn remove_if_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Probe {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::AlreadyRunning {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(BindError::RemoveStale {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(source) => Err(BindError::Probe {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes the socket file on drop, unless another process has replaced it since.
struct SocketGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the control socket");
                }
            }
            _ => {}
        }
    }
}
