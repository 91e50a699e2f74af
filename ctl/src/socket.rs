//! Where the control socket is: `--socket`/`$MCPD_SOCKET`, else `control.socket` of the daemon
//! config file, else the daemon's default path. Mirrors the daemon's rules without depending
//! on the daemon crate: only `control.socket` is read from the file.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The system-wide daemon config, used when neither `--config` nor `$MCPD_CONFIG` is given.
pub const SYSTEM_CONFIG: &str = "/etc/mcpd/mcpd.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error("cannot read the daemon config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse the daemon config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// What the resolution looks at besides the flags, so tests can supply their own.
#[derive(Debug, Clone)]
pub struct Environment {
    pub vars: HashMap<String, OsString>,
    pub system_config: PathBuf,
    pub uid: u32,
}

impl Environment {
    /// The real process environment.
    pub fn process() -> Environment {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
                .collect(),
            system_config: PathBuf::from(SYSTEM_CONFIG),
            // SAFETY: getuid has no preconditions and cannot fail.
            uid: unsafe { libc::getuid() },
        }
    }

    fn non_empty(&self, name: &str) -> Option<&OsString> {
        self.vars.get(name).filter(|v| !v.is_empty())
    }
}

/// Only the part of `mcpd.yaml` mcpctl needs; every other key is ignored.
#[derive(Deserialize, Default)]
struct DaemonFile {
    #[serde(default)]
    control: Option<ControlSection>,
}

#[derive(Deserialize, Default)]
struct ControlSection {
    #[serde(default)]
    socket: Option<PathBuf>,
}

/// Resolves the socket path. `socket` is `--socket` (clap already folds in `$MCPD_SOCKET`).
pub fn resolve(
    socket: Option<&Path>,
    config: Option<&Path>,
    env: &Environment,
) -> Result<PathBuf, SocketPathError> {
    if let Some(socket) = socket {
        return Ok(socket.to_owned());
    }
    let config_file = match config {
        Some(path) => Some(path.to_owned()),
        None => match env.non_empty("MCPD_CONFIG") {
            Some(path) => Some(PathBuf::from(path)),
            None => env
                .system_config
                .exists()
                .then(|| env.system_config.clone()),
        },
    };
    if let Some(file) = config_file
        && let Some(socket) = socket_from_config(&file)?
    {
        return Ok(socket);
    }
    Ok(default_socket(env))
}

/// `control.socket` of `file`, resolved against the file's directory; `None` if not set.
fn socket_from_config(file: &Path) -> Result<Option<PathBuf>, SocketPathError> {
    let text = std::fs::read_to_string(file).map_err(|source| SocketPathError::Read {
        path: file.to_owned(),
        source,
    })?;
    let parsed: DaemonFile = if text.trim().is_empty() {
        DaemonFile::default()
    } else {
        yaml_serde::from_str(&text).map_err(|e| SocketPathError::Parse {
            path: file.to_owned(),
            message: e.to_string(),
        })?
    };
    Ok(parsed.control.and_then(|c| c.socket).map(|socket| {
        if socket.is_absolute() {
            socket
        } else {
            file.parent().unwrap_or(Path::new(".")).join(socket)
        }
    }))
}

/// The daemon's default: `$RUNTIME_DIRECTORY/mcpd.sock` (its first entry), else
/// `$XDG_RUNTIME_DIR/mcpd.sock`, else `$TMPDIR/mcpd-$UID/mcpd.sock` (`$TMPDIR` when set and
/// absolute, else `/tmp`).
pub fn default_socket(env: &Environment) -> PathBuf {
    if let Some(dirs) = env.non_empty("RUNTIME_DIRECTORY") {
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !first.is_empty() {
            return PathBuf::from(first).join("mcpd.sock");
        }
    }
    if let Some(dir) = env.non_empty("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("mcpd.sock");
    }
    let tmp = env
        .non_empty("TMPDIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    tmp.join(format!("mcpd-{}", env.uid)).join("mcpd.sock")
}

/// The users whose socket mcpctl talks to: itself, root, and the daemon's user.
///
/// The daemon's user is `$MCPD_USER` (a name or a uid) when set, else the system user `mcpd`
/// (the packaged service's `User=`) if it exists. A socket owned by anyone else may be a
/// listener planted to read what mcpctl sends (arguments of `call`, minted tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedOwners {
    pub uids: Vec<u32>,
    /// How the daemon's user was named, for the error message.
    pub daemon_user: Option<String>,
}

impl TrustedOwners {
    pub fn from_env(env: &Environment) -> TrustedOwners {
        let mut uids = vec![env.uid, nix::unistd::geteuid().as_raw(), 0];
        let name = env
            .non_empty("MCPD_USER")
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mcpd".to_owned());
        let daemon_uid = name.parse::<u32>().ok().or_else(|| {
            nix::unistd::User::from_name(&name)
                .ok()
                .flatten()
                .map(|user| user.uid.as_raw())
        });
        uids.extend(daemon_uid);
        uids.sort_unstable();
        uids.dedup();
        TrustedOwners {
            uids,
            daemon_user: daemon_uid.map(|uid| format!("{name} (uid {uid})")),
        }
    }

    pub fn trusts(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &HashMap<&str, &str>, system: &Path) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect(),
            system_config: system.to_owned(),
            uid: 1000,
        }
    }

    #[test]
    fn explicit_socket_wins() {
        let vars = HashMap::from([("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let env = env_of(&vars, Path::new("/nonexistent/mcpd.yaml"));
        let got = resolve(
            Some(Path::new("/x/y.sock")),
            Some(Path::new("/nope.yaml")),
            &env,
        )
        .unwrap();
        assert_eq!(got, Path::new("/x/y.sock"));
    }

    #[test]
    fn defaults_follow_the_daemon_order() {
        let none = Path::new("/nonexistent/mcpd.yaml");
        let vars = HashMap::from([
            ("RUNTIME_DIRECTORY", "/run/mcpd:/run/other"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(
            resolve(None, None, &env_of(&vars, none)).unwrap(),
            Path::new("/run/mcpd/mcpd.sock")
        );
        let vars = HashMap::from([("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(
            resolve(None, None, &env_of(&vars, none)).unwrap(),
            Path::new("/run/user/1000/mcpd.sock")
        );
        let vars = HashMap::from([("XDG_RUNTIME_DIR", "")]);
        assert_eq!(
            resolve(None, None, &env_of(&vars, none)).unwrap(),
            Path::new("/tmp/mcpd-1000/mcpd.sock")
        );
        let vars = HashMap::from([("TMPDIR", "/var/tmp/t")]);
        assert_eq!(
            resolve(None, None, &env_of(&vars, none)).unwrap(),
            Path::new("/var/tmp/t/mcpd-1000/mcpd.sock")
        );
    }

    #[test]
    fn config_socket_is_read_and_relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mcpd.yaml");
        std::fs::write(&file, "services_dir: mcp\ncontrol:\n  socket: run/mcpd.sock\n  mode: \"0600\"\nother: [1, 2]\n")
            .unwrap();
        let vars = HashMap::new();
        let env = env_of(&vars, Path::new("/nonexistent"));
        assert_eq!(
            resolve(None, Some(&file), &env).unwrap(),
            dir.path().join("run/mcpd.sock")
        );

        std::fs::write(&file, "control:\n  socket: /abs/mcpd.sock\n").unwrap();
        assert_eq!(
            resolve(None, Some(&file), &env).unwrap(),
            Path::new("/abs/mcpd.sock")
        );
    }

    #[test]
    fn config_comes_from_mcpd_config_then_the_system_file() {
        let dir = tempfile::tempdir().unwrap();
        let via_env = dir.path().join("env.yaml");
        std::fs::write(&via_env, "control: {socket: env.sock}\n").unwrap();
        let system = dir.path().join("system.yaml");
        std::fs::write(&system, "control: {socket: /system.sock}\n").unwrap();

        let path = via_env.to_str().unwrap();
        let vars = HashMap::from([("MCPD_CONFIG", path)]);
        assert_eq!(
            resolve(None, None, &env_of(&vars, &system)).unwrap(),
            dir.path().join("env.sock")
        );
        let vars = HashMap::new();
        assert_eq!(
            resolve(None, None, &env_of(&vars, &system)).unwrap(),
            Path::new("/system.sock")
        );
    }

    #[test]
    fn a_config_without_control_socket_falls_back_to_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mcpd.yaml");
        std::fs::write(&file, "port_range: 5000-5999\n").unwrap();
        let vars = HashMap::from([("XDG_RUNTIME_DIR", "/run/user/7")]);
        let env = env_of(&vars, Path::new("/nonexistent"));
        assert_eq!(
            resolve(None, Some(&file), &env).unwrap(),
            Path::new("/run/user/7/mcpd.sock")
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            resolve(None, Some(&file), &env).unwrap(),
            Path::new("/run/user/7/mcpd.sock")
        );
    }

    #[test]
    fn trusted_owners_are_self_root_and_the_daemon_user() {
        let none = Path::new("/nonexistent");
        let vars = HashMap::from([("MCPD_USER", "4321")]);
        let trusted = TrustedOwners::from_env(&env_of(&vars, none));
        assert!(trusted.trusts(1000) && trusted.trusts(0) && trusted.trusts(4321));
        assert!(!trusted.trusts(65534));
        assert_eq!(trusted.daemon_user.as_deref(), Some("4321 (uid 4321)"));
        let vars = HashMap::from([("MCPD_USER", "no-such-user-here")]);
        let trusted = TrustedOwners::from_env(&env_of(&vars, none));
        assert_eq!(trusted.daemon_user, None);
        assert!(!trusted.trusts(4321));
    }

    #[test]
    fn an_unreadable_or_broken_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let vars = HashMap::new();
        let env = env_of(&vars, Path::new("/nonexistent"));
        let missing = dir.path().join("missing.yaml");
        assert!(matches!(
            resolve(None, Some(&missing), &env),
            Err(SocketPathError::Read { .. })
        ));
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "control: [unclosed\n").unwrap();
        assert!(matches!(
            resolve(None, Some(&broken), &env),
            Err(SocketPathError::Parse { .. })
        ));
    }
}
