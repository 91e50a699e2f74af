//! What configuration reads from its surroundings: environment variables, the working
//! directory, mcpd's own directory, the user id, and how a `binary` name becomes a file.
//!
//! Passed around as a value so tests describe their surroundings instead of changing the
//! process environment.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Finds the file a server's `binary` names, given `bin_dirs`; `Err` says why not.
pub type Resolver = dyn Fn(&str, &[PathBuf], &Env) -> Result<PathBuf, String> + Send + Sync;

/// The surroundings configuration is read in.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub vars: BTreeMap<String, String>,
    /// Relative `--config` paths and the default services dir resolve against it.
    pub cwd: PathBuf,
    /// The directory of the running mcpd binary (default `bin_dirs`).
    pub exe_dir: Option<PathBuf>,
    pub uid: u32,
}

/// The variables configuration looks at.
const VARS: &[&str] = &[
    "MCPD_CONFIG",
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
    "HOME",
    "RUNTIME_DIRECTORY",
    "XDG_RUNTIME_DIR",
    "LOGS_DIRECTORY",
    "PATH",
    "TMPDIR",
];

impl Env {
    /// The real process environment.
    pub fn from_process() -> Env {
        let vars = VARS
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .map(|value| ((*name).to_owned(), value))
            })
            .collect();
        Env {
            vars,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            uid: nix::unistd::getuid().as_raw(),
        }
    }

    /// A variable, `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The first entry of a systemd directory variable (which may list several, `:`-separated).
    fn systemd_dir(&self, name: &str) -> Option<PathBuf> {
        self.var(name)
            .and_then(|value| value.split(':').find(|part| !part.is_empty()))
            .map(PathBuf::from)
    }

    /// `$TMPDIR/mcpd-$UID` (`$TMPDIR` if set and absolute, else `/tmp`): the directory of
    /// last resort for the socket and state. Others can write to `/tmp`, so it must be mcpd's
    /// own: created 0700, refused when it is anything else (`control::private_dir`).
    pub fn fallback_dir(&self) -> PathBuf {
        let tmp = self
            .var("TMPDIR")
            .map(Path::new)
            .filter(|dir| dir.is_absolute())
            .unwrap_or(Path::new("/tmp"));
        tmp.join(format!("mcpd-{}", self.uid))
    }

    /// `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/mcpd`, else `~/.local/state/mcpd`.
    pub fn default_state_dir(&self) -> PathBuf {
        self.systemd_dir("STATE_DIRECTORY")
            .or_else(|| {
                self.var("XDG_STATE_HOME")
                    .map(|dir| Path::new(dir).join("mcpd"))
            })
            .or_else(|| {
                self.var("HOME")
                    .map(|home| Path::new(home).join(".local/state/mcpd"))
            })
            .unwrap_or_else(|| self.fallback_dir().join("state"))
    }

    /// `$RUNTIME_DIRECTORY/mcpd.sock`, else `$XDG_RUNTIME_DIR/mcpd.sock`, else `$TMPDIR/mcpd-$UID/mcpd.sock` (see `fallback_dir`).
    pub fn default_socket(&self) -> PathBuf {
        self.systemd_dir("RUNTIME_DIRECTORY")
            .or_else(|| self.var("XDG_RUNTIME_DIR").map(PathBuf::from))
            .unwrap_or_else(|| self.fallback_dir())
            .join("mcpd.sock")
    }

    /// `$LOGS_DIRECTORY`, else `<state_dir>/logs`.
    pub fn default_logs_dir(&self, state_dir: &Path) -> PathBuf {
        self.systemd_dir("LOGS_DIRECTORY")
            .unwrap_or_else(|| state_dir.join("logs"))
    }
}

/// `path` made absolute against `base`, with `.` and `..` removed lexically.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The real resolver: a name with a `/` is a path (it must exist and be executable); a bare
/// name is looked up in `bin_dirs`, then in `$PATH`.
pub fn resolve_binary(binary: &str, bin_dirs: &[PathBuf], env: &Env) -> Result<PathBuf, String> {
    if binary.contains('/') {
        let path = Path::new(binary);
        return match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                Ok(path.to_owned())
            }
            Ok(meta) if meta.is_file() => Err(format!("{binary} is not executable")),
            Ok(_) => Err(format!("{binary} is not a file")),
            Err(err) => Err(format!("{binary}: {err}")),
        };
    }
    let path_dirs = env
        .var("PATH")
        .unwrap_or("")
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    for dir in bin_dirs.iter().cloned().chain(path_dirs) {
        let candidate = dir.join(binary);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(absolute(&env.cwd, &candidate));
        }
    }
    let searched = bin_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>();
    Err(format!(
        "binary \"{binary}\" not found in bin_dirs [{}] or PATH",
        searched.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cwd: PathBuf::from("/work"),
            exe_dir: None,
            uid: 1234,
        }
    }

    #[test]
    fn state_dir_prefers_systemd_then_xdg_then_home() {
        let all = env(&[
            ("STATE_DIRECTORY", "/var/lib/mcpd:/other"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(all.default_state_dir(), PathBuf::from("/var/lib/mcpd"));
        assert_eq!(
            env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]).default_state_dir(),
            PathBuf::from("/x/mcpd")
        );
        assert_eq!(
            env(&[("HOME", "/h")]).default_state_dir(),
            PathBuf::from("/h/.local/state/mcpd")
        );
        assert_eq!(
            env(&[]).default_state_dir(),
            PathBuf::from("/tmp/mcpd-1234/state")
        );
    }

    #[test]
    fn socket_prefers_runtime_directory_then_xdg_then_tmp() {
        let both = env(&[
            ("RUNTIME_DIRECTORY", "/run/mcpd"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
        ]);
        assert_eq!(both.default_socket(), PathBuf::from("/run/mcpd/mcpd.sock"));
        assert_eq!(
            env(&[("XDG_RUNTIME_DIR", "/run/user/1")]).default_socket(),
            PathBuf::from("/run/user/1/mcpd.sock")
        );
        assert_eq!(
            env(&[("XDG_RUNTIME_DIR", "")]).default_socket(),
            PathBuf::from("/tmp/mcpd-1234/mcpd.sock")
        );
        assert_eq!(
            env(&[("TMPDIR", "/var/tmp/x")]).default_socket(),
            PathBuf::from("/var/tmp/x/mcpd-1234/mcpd.sock")
        );
        assert_eq!(
            env(&[("TMPDIR", "relative")]).default_socket(),
            PathBuf::from("/tmp/mcpd-1234/mcpd.sock")
        );
    }

    #[test]
    fn logs_dir_prefers_logs_directory_then_state() {
        let state = Path::new("/s");
        assert_eq!(
            env(&[("LOGS_DIRECTORY", "/var/log/mcpd")]).default_logs_dir(state),
            PathBuf::from("/var/log/mcpd")
        );
        assert_eq!(env(&[]).default_logs_dir(state), PathBuf::from("/s/logs"));
    }

    #[test]
    fn absolute_removes_dot_segments() {
        assert_eq!(
            absolute(Path::new("/a/services"), Path::new("../target/./release")),
            PathBuf::from("/a/target/release")
        );
        assert_eq!(
            absolute(Path::new("/a"), Path::new("/abs/x")),
            PathBuf::from("/abs/x")
        );
    }

    #[test]
    fn resolver_searches_bin_dirs_then_path_and_checks_executables() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let on_path = dir.path().join("path");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&on_path).unwrap();
        let write = |path: &Path, mode: u32| {
            std::fs::write(path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&bin.join("both"), 0o755);
        write(&on_path.join("both"), 0o755);
        write(&on_path.join("only-path"), 0o755);
        write(&bin.join("plain"), 0o644);
        let env = env(&[("PATH", on_path.to_str().unwrap())]);
        let dirs = [bin.clone()];
        assert_eq!(resolve_binary("both", &dirs, &env), Ok(bin.join("both")));
        assert_eq!(
            resolve_binary("only-path", &dirs, &env),
            Ok(on_path.join("only-path"))
        );
        let missing = resolve_binary("plain", &dirs, &env).unwrap_err();
        assert!(
            missing.contains("binary \"plain\" not found in bin_dirs"),
            "{missing}"
        );
        let abs = bin.join("plain");
        let not_exec = resolve_binary(abs.to_str().unwrap(), &dirs, &env).unwrap_err();
        assert!(not_exec.ends_with("is not executable"), "{not_exec}");
        let gone = resolve_binary("/nonexistent/x", &dirs, &env).unwrap_err();
        assert!(gone.contains("No such file"), "{gone}");
        assert_eq!(
            resolve_binary(bin.join("both").to_str().unwrap(), &dirs, &env),
            Ok(bin.join("both"))
        );
    }
}
