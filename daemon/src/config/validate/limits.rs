//! The keys of a server's box: the `limits` block (of a server or of `defaults`), `user` and
//! `group`, and the daemon file's `cgroup`.

use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::source::{Seg, Source, join, key};

/// The smallest `memory` limit: below it no server starts, whatever it is.
const MIN_MEMORY: u64 = 1 << 20;
/// The largest `memory` limit: above it the number is a typo, not a limit.
const MAX_MEMORY: u64 = 1 << 50;
const MIN_CPU: f64 = 0.01;
const MAX_CPU: f64 = 4096.0;
/// The kernel's `PID_MAX_LIMIT`: no host has more tasks than this.
const MAX_TASKS: u64 = 4_194_304;
/// Fewer descriptors than this leave a server no room for its socket and connections.
const MIN_OPEN_FILES: u64 = 16;

/// The `limits` block under `parent`, each limit falling back to `base`.
pub(super) fn limits(
    source: &Source,
    parent: &[Seg],
    context: &str,
    base: Limits,
    errors: &mut Vec<ConfigError>,
) -> Limits {
    let path = join(parent, [key("limits")]);
    let raw = source.block::<RawLimits>(&path, &[], context, errors).value;
    let mut bad = |field: &str, message: String, hint: &str| {
        errors.push(source.error(
            source.value_pos(&join(&path, [key(field)])),
            format!("{message} {context}"),
            hint.to_owned(),
        ));
    };
    let memory = raw.memory.map(|size| size.0).filter(|&bytes| {
        let ok = (MIN_MEMORY..=MAX_MEMORY).contains(&bytes);
        if !ok {
            bad(
                "memory",
                format!("limits.memory {} is outside 1MiB-1PiB", format_bytes(bytes)),
                "write a size such as \"512MiB\" or \"2GiB\"",
            );
        }
        ok
    });
    let cpu = raw.cpu.filter(|&cpu| {
        let ok = cpu.is_finite() && (MIN_CPU..=MAX_CPU).contains(&cpu);
        if !ok {
            bad(
                "cpu",
                format!("limits.cpu {cpu} is outside 0.01-4096"),
                "write the CPUs' worth of time the server may use, e.g. 0.5 for half a CPU or 2 for two",
            );
        }
        ok
    });
    let tasks = raw.tasks.filter(|&tasks| {
        let ok = (1..=MAX_TASKS).contains(&tasks);
        if !ok {
            bad(
                "tasks",
                format!("limits.tasks {tasks} is outside 1-{MAX_TASKS}"),
                "write how many processes and threads the server may have, e.g. 128",
            );
        }
        ok
    });
    let open_files = raw.open_files.filter(|&files| {
        // Two reads of /proc: made only for a server that sets the limit.
        let max_files = max_open_files();
        let ok = (MIN_OPEN_FILES..=max_files).contains(&files);
        if !ok {
            bad(
                "open_files",
                format!("limits.open_files {files} is outside {MIN_OPEN_FILES}-{max_files}"),
                "write how many files and sockets the server may hold open, e.g. 1024 (the upper bound is this host's fs.nr_open, or mcpd's own hard limit when it may not raise it)",
            );
        }
        ok
    });
    Limits {
        memory,
        cpu,
        tasks,
        open_files,
    }
    .or(base)
}

/// The largest `RLIMIT_NOFILE` a child can get: the kernel's `fs.nr_open`, or mcpd's own hard
/// limit when it lacks CAP_SYS_RESOURCE to raise it.
fn max_open_files() -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1 << 20);
    if has_capability(CAP_SYS_RESOURCE) {
        return nr_open;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        nr_open.min(limit.rlim_max)
    } else {
        nr_open
    }
}

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_RESOURCE: u32 = 24;

/// True when mcpd's effective capabilities hold `cap` (root normally holds them all).
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

const CAP_SYS_ADMIN: u32 = 21;

/// `sandbox:` of server `name`: refused where mcpd may not make mount namespaces
/// (CAP_SYS_ADMIN), and read-only paths must be absolute and exist.
pub(super) fn sandbox(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: &RawServer,
    errors: &mut Vec<ConfigError>,
) -> Sandbox {
    let Some(wanted) = &raw.sandbox else {
        return Sandbox::default();
    };
    let at = join(path, [key("sandbox")]);
    let sandbox = Sandbox {
        private_tmp: wanted.private_tmp.unwrap_or(false),
        read_only_paths: wanted.read_only_paths.clone().unwrap_or_default(),
    };
    if sandbox.is_empty() {
        return sandbox;
    }
    if !has_capability(CAP_SYS_ADMIN) {
        errors.push(source.error(
            source.key_pos(&at),
            format!("server \"{name}\" has a sandbox, but mcpd may not make mount namespaces"),
            "run mcpd as root, or grant it CAP_SYS_ADMIN, or remove `sandbox:`".to_owned(),
        ));
        return Sandbox::default();
    }
    for (index, dir) in sandbox.read_only_paths.iter().enumerate() {
        let entry = join(&at, [key("read_only_paths"), Seg::Index(index)]);
        let text = dir.to_string_lossy();
        let problem = if !dir.is_absolute() {
            Some("is not an absolute path")
        } else if text.contains('\0') || dir.components().any(|c| c.as_os_str() == "..") {
            Some("may not hold `..` or NUL")
        } else if !dir.exists() {
            Some("does not exist")
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(source.error(
                source.value_pos(&entry),
                format!("read-only path {text:?} of server \"{name}\" {problem}"),
                "name an existing absolute path, e.g. /srv/data".to_owned(),
            ));
        }
    }
    sandbox
}

/// True when mcpd may run a server as another user: CAP_SETUID and CAP_SETGID.
pub fn may_switch_users() -> bool {
    has_capability(CAP_SETUID) && has_capability(CAP_SETGID)
}

/// `user` and `group` of server `name`, resolved; `may_switch` is [`may_switch_users`].
pub(super) fn run_as(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: &RawServer,
    may_switch: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<RunAs> {
    let Some(user) = &raw.user else {
        if raw.group.is_some() {
            errors.push(source.error(
                source.key_pos(&join(path, [key("group")])),
                format!("group without user in server \"{name}\""),
                "add `user:` (the group applies to the user the server runs as)".to_owned(),
            ));
        }
        return None;
    };
    let user_at = join(path, [key("user")]);
    if !may_switch {
        errors.push(source.error(
            source.value_pos(&user_at),
            format!("server \"{name}\" has user: {user:?}, but mcpd may not switch users"),
            "run mcpd as root, or grant it CAP_SETUID and CAP_SETGID (AmbientCapabilities= in its unit), or remove `user:`".to_owned(),
        ));
        return None;
    }
    let found = match user.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(uid.into()),
        Err(_) => nix::unistd::User::from_name(user),
    };
    let Ok(Some(account)) = found else {
        errors.push(source.error(
            source.value_pos(&user_at),
            format!("user {user:?} of server \"{name}\" does not exist"),
            "create it (useradd --system NAME) or name an existing user".to_owned(),
        ));
        return None;
    };
    let gid = match &raw.group {
        None => account.gid.as_raw(),
        Some(group) => {
            let found = match group.parse::<u32>() {
                Ok(gid) => nix::unistd::Group::from_gid(gid.into()),
                Err(_) => nix::unistd::Group::from_name(group),
            };
            let Ok(Some(found)) = found else {
                errors.push(source.error(
                    source.value_pos(&join(path, [key("group")])),
                    format!("group {group:?} of server \"{name}\" does not exist"),
                    "create it (groupadd --system NAME) or name an existing group".to_owned(),
                ));
                return None;
            };
            found.gid.as_raw()
        }
    };
    Some(RunAs {
        user: user.clone(),
        uid: account.uid.as_raw(),
        gid,
        name: account.name,
        home: account.dir,
    })
}

/// The daemon file's `cgroup`: `auto`, `off` or a cgroup path without `..`.
pub(super) fn cgroup(
    source: &Source,
    raw: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> CgroupSetting {
    let Some(text) = raw else {
        return CgroupSetting::Auto;
    };
    match text.trim() {
        "auto" => CgroupSetting::Auto,
        "off" => CgroupSetting::Off,
        path => {
            let clean = !path.is_empty()
                && path != "/"
                && !path.chars().any(char::is_control)
                && path
                    .split('/')
                    .all(|part| part != ".." && part != "." && !part.contains(char::is_whitespace));
            if !clean {
                errors.push(source.error(
                    source.value_pos(&[key("cgroup")]),
                    format!("invalid cgroup {text:?}"),
                    "write auto, off, a cgroup path from the hierarchy's root such as /mcpd, or one relative to mcpd's own cgroup such as mcpd-servers (no `..`, `.`, spaces or control characters, not the root itself)".to_owned(),
                ));
                return CgroupSetting::Auto;
            }
            CgroupSetting::Path(path.trim_end_matches('/').to_owned())
        }
    }
}
