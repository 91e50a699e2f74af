//! The fallback directory `$TMPDIR/mcpd-$UID`, used for the socket (and state) when neither
//! `$RUNTIME_DIRECTORY` nor `$XDG_RUNTIME_DIR` is set: mcpd's alone, or not used at all.
//!
//! Anyone can create that path in `/tmp` first. A directory of another user would let that
//! user replace the socket with a listener of its own and read what operators send; a file
//! there would stop mcpd from starting with an obscure error. So the directory is created
//! mode 0700, and an existing one is used only when `lstat` (no symlink followed) shows a
//! directory owned by mcpd's user with no access for group or others. `/tmp` is sticky, so
//! nobody else can rename or remove a directory that passed.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error(
        "{} exists and is not a directory (it is {kind}); refusing to put the control socket \
         there: remove it, or set control.socket or $XDG_RUNTIME_DIR", path.display()
    )]
    NotADirectory { path: PathBuf, kind: &'static str },
    #[error(
        "{} belongs to uid {owner}, not to mcpd's uid {uid}: that user could replace the control \
         socket and read what mcpctl sends; refusing to use it (remove it as root, or set \
         control.socket or $XDG_RUNTIME_DIR)", path.display()
    )]
    OtherOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error(
        "{} has mode {mode:04o}, which lets other users in; refusing to use it (it must be \
         0700: `chmod 700 {}`, or remove it)", path.display(), path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot create the socket directory {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
}

/// Creates `dir` mode 0700, or checks that the existing one is a directory of this process's
/// effective user with mode 0700 or narrower.
pub fn ensure(dir: &Path) -> Result<(), PrivateDirError> {
    let uid = nix::unistd::geteuid().as_raw();
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(PrivateDirError::Create {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|source| PrivateDirError::Create {
        path: dir.to_owned(),
        source,
    })?;
    let file_type = meta.file_type();
    if !file_type.is_dir() {
        let kind = if file_type.is_symlink() {
            "a symbolic link"
        } else if file_type.is_file() {
            "a file"
        } else {
            "not a directory"
        };
        return Err(PrivateDirError::NotADirectory {
            path: dir.to_owned(),
            kind,
        });
    }
    if meta.uid() != uid {
        return Err(PrivateDirError::OtherOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateDirError::TooOpen {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use super::*;

    #[test]
    fn creates_0700_and_accepts_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mcpd-1");
        ensure(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure(&dir).unwrap();
    }

    #[test]
    fn refuses_a_file_a_symlink_and_a_wide_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = ensure(&file).unwrap_err();
        assert!(
            matches!(err, PrivateDirError::NotADirectory { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is a file"), "{err}");

        let real = tmp.path().join("real");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&real)
            .unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let err = ensure(&open).unwrap_err();
        assert!(err.to_string().contains("mode 0777"), "{err}");
        std::fs::set_permissions(&open, Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(
            ensure(&open),
            Err(PrivateDirError::TooOpen { mode: 0o750, .. })
        ));
    }
}
