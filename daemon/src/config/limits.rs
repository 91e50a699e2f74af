//! Validated types of a server's box: its resource `limits`, the user it runs as, and where
//! mcpd puts server cgroups (`cgroup` in the daemon file).

/// `limits:` of a server (or of `defaults`); `None` is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Hard memory limit in bytes (cgroup `memory.max` / `memory.limit_in_bytes`).
    pub memory: Option<u64>,
    /// CPUs' worth of time, e.g. 0.5 (cgroup `cpu.max` / `cpu.cfs_quota_us`).
    pub cpu: Option<f64>,
    /// Processes and threads (cgroup `pids.max`).
    pub tasks: Option<u64>,
    /// `RLIMIT_NOFILE` of the server's process, soft and hard.
    pub open_files: Option<u64>,
}

impl Limits {
    /// The limits a cgroup enforces (memory, cpu, tasks), by their key names.
    pub fn cgroup_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.memory.is_some() {
            keys.push("memory");
        }
        if self.cpu.is_some() {
            keys.push("cpu");
        }
        if self.tasks.is_some() {
            keys.push("tasks");
        }
        keys
    }

    /// Each limit of `self`, else of `base`.
    pub fn or(self, base: Limits) -> Limits {
        Limits {
            memory: self.memory.or(base.memory),
            cpu: self.cpu.or(base.cpu),
            tasks: self.tasks.or(base.tasks),
            open_files: self.open_files.or(base.open_files),
        }
    }
}

/// The user (and group) a server runs as, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `user` as written (a name or a number).
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// The account's name and home directory, for the server's `USER`, `LOGNAME` and `HOME`.
    pub name: String,
    pub home: std::path::PathBuf,
}

/// `cgroup:` of the daemon file: where each server's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupSetting {
    /// Under systemd (with `Delegate=yes`), the service's own cgroup; else none.
    #[default]
    Auto,
    /// Never: rlimits only.
    Off,
    /// This cgroup path, created if missing: absolute from the root of each hierarchy
    /// (`/mcpd`), or relative to mcpd's own cgroup (`mcpd-servers`).
    Path(String),
}

/// Formats a byte count the way an operator writes it: `512MiB`, `1GiB`, `1536KiB`, `100B`.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1}MiB", bytes as f64 / f64::from(1u32 << 20));
    }
    format!("{bytes}B")
}
