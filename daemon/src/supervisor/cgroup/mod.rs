//! Server cgroups behind one small interface, [`Driver`], with a cgroup v1 and a cgroup v2
//! implementation, and the detection of which one this host offers (and where mcpd may put
//! its servers) at start.
//!
//! A server's cgroup is `<base>/<name>`. Its process joins it between fork and exec (the
//! child writes `0` into `cgroup.procs` files the spawner opened), so everything it forks is
//! born inside: writing the pid from the parent after the fork would let a fast child fork
//! first. The same write works on v1 and v2 (`CLONE_INTO_CGROUP` is v2 only).

mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::{CgroupSetting, Limits};

/// The figures a cgroup keeps about its processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub memory: u64,
    pub memory_peak: Option<u64>,
    pub cpu_ns: u64,
    pub tasks: u64,
}

/// One cgroup hierarchy (v1: the memory, pids and cpu controllers; v2: the unified tree).
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// "cgroup v1" or "cgroup v2", and where servers go, for the log.
    fn describe(&self) -> String;
    /// The limit keys this hierarchy can enforce (of `memory`, `cpu`, `tasks`).
    fn enforces(&self) -> &[&'static str];
    /// Creates the server's cgroup (kept if it exists).
    fn create(&self, name: &str) -> io::Result<()>;
    /// The `cgroup.procs` files the server's process writes itself into before exec.
    fn procs_files(&self, name: &str) -> Vec<PathBuf>;
    /// Writes every limit file; a limit left out is set to "no limit".
    fn apply(&self, name: &str, limits: &Limits) -> io::Result<()>;
    fn usage(&self, name: &str) -> Option<CgroupUsage>;
    /// How many times the OOM killer killed a process of the cgroup.
    fn oom_kills(&self, name: &str) -> u64;
    /// SIGKILLs every process of the cgroup, whatever process group it made.
    fn kill_all(&self, name: &str);
    /// Removes the cgroup (fails harmlessly while a process is still in it).
    fn remove(&self, name: &str);
}

/// The driver to use, or why there is none (for the one warning).
pub fn detect(setting: &CgroupSetting) -> Result<Box<dyn Driver>, String> {
    let base = match setting {
        CgroupSetting::Off => return Err("cgroup: off is set in mcpd.yaml".to_owned()),
        CgroupSetting::Auto if !started_by_systemd() => {
            return Err(
                "mcpd does not run under systemd and mcpd.yaml sets no `cgroup:` to put servers in"
                    .to_owned(),
            );
        }
        CgroupSetting::Auto => Base::Systemd,
        CgroupSetting::Path(path) => Base::Path(path.clone()),
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|err| format!("cannot read /proc/self/cgroup: {err}"))?;
    let mounts = parse_mounts(&mounts);
    if let Some(root) = mounts.unified.as_ref().filter(|root| {
        std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|list| list.split_whitespace().any(|c| c == "memory"))
    }) {
        let own = own_path(&own, "").ok_or("mcpd's own v2 cgroup is not in /proc/self/cgroup")?;
        return v2::V2::new(root, &own, &base).map(|d| Box::new(d) as Box<dyn Driver>);
    }
    if !mounts.v1.is_empty() {
        return v1::V1::new(&mounts.v1, &own, &base).map(|d| Box::new(d) as Box<dyn Driver>);
    }
    Err("this host has no cgroup hierarchy with a memory controller mounted".to_owned())
}

/// True when mcpd is a service's main process: systemd set `INVOCATION_ID` and is mcpd's
/// parent. A process that merely inherited the variable (a test, a shell in a unit) must not
/// take its unit's cgroup for its own.
fn started_by_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
        && std::fs::read_to_string(format!(
            "/proc/{}/comm",
            std::os::unix::process::parent_id()
        ))
        .is_ok_and(|comm| comm.trim() == "systemd")
}

/// Where servers go.
#[derive(Debug, Clone)]
pub(crate) enum Base {
    /// Under mcpd's own cgroup: the service's, delegated by systemd.
    Systemd,
    /// From the root of the hierarchy (`/x`) or under mcpd's own cgroup (`x`).
    Path(String),
}

impl Base {
    /// The base directory in a hierarchy mounted at `root` where mcpd's cgroup is `own`.
    pub(crate) fn dir(&self, root: &Path, own: &str) -> PathBuf {
        let own = root.join(own.trim_start_matches('/'));
        match self {
            Base::Systemd => own.join("servers"),
            Base::Path(path) if path.starts_with('/') => root.join(path.trim_start_matches('/')),
            Base::Path(path) => own.join(path),
        }
    }
}

#[derive(Debug, Default)]
struct Mounts {
    unified: Option<PathBuf>,
    /// v1 mount points by controller.
    v1: Vec<(String, PathBuf)>,
}

/// The cgroup mounts of `/proc/self/mountinfo`.
fn parse_mounts(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).map(PathBuf::from);
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next(), right.next(), right.next());
        let Some(mount_point) = mount_point else {
            continue;
        };
        match fstype {
            Some("cgroup2") if mounts.unified.is_none() => mounts.unified = Some(mount_point),
            Some("cgroup") => {
                for option in options.unwrap_or("").split(',') {
                    if matches!(option, "memory" | "pids" | "cpu" | "cpuacct") {
                        mounts.v1.push((option.to_owned(), mount_point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    mounts
}

/// mcpd's own cgroup path in the hierarchy of `controller` ("" for v2) per /proc/self/cgroup.
fn own_path(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

/// Reads a file of one number ("max" reads as `None`).
pub(crate) fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.events` or `cpu.stat`.
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// Writes `value` to a control file.
pub(crate) fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
}

/// SIGKILLs every pid listed in `procs` until the file lists none (a process may fork while
/// it is being killed, and a killed one stays listed until it has exited), for at most about
/// 200 ms: after that the cgroup is left for a later removal.
pub(crate) fn kill_listed(procs: &Path) {
    for _ in 0..100 {
        let Ok(text) = std::fs::read_to_string(procs) else {
            return;
        };
        let pids: Vec<i32> = text
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if pid > 1 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_of_a_hybrid_host_and_of_a_unified_one() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:6 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:7 - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /sys/fs/cgroup/pids rw shared:8 - cgroup cgroup rw,pids
34 25 0:30 / /sys/fs/cgroup/systemd rw shared:9 - cgroup cgroup rw,xattr,name=systemd
";
        let mounts = parse_mounts(hybrid);
        assert_eq!(
            mounts.unified,
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let names: Vec<&str> = mounts.v1.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["memory", "cpu", "cpuacct", "pids"]);
        let unified = parse_mounts(
            "29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(unified.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert!(unified.v1.is_empty());
        assert!(parse_mounts("garbage\n - \n\n").v1.is_empty());
    }

    #[test]
    fn own_cgroup_per_controller() {
        let text =
            "8:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/system.slice/mcpd.service\n";
        assert_eq!(own_path(text, "memory").as_deref(), Some("/process_api/x"));
        assert_eq!(own_path(text, "cpuacct").as_deref(), Some("/"));
        assert_eq!(
            own_path(text, "").as_deref(),
            Some("/system.slice/mcpd.service")
        );
        assert_eq!(own_path(text, "blkio"), None);
    }

    #[test]
    fn base_directories() {
        let root = Path::new("/sys/fs/cgroup");
        let own = "/system.slice/mcpd.service";
        assert_eq!(
            Base::Systemd.dir(root, own),
            Path::new("/sys/fs/cgroup/system.slice/mcpd.service/servers")
        );
        assert_eq!(
            Base::Path("/mcpd".into()).dir(root, own),
            Path::new("/sys/fs/cgroup/mcpd")
        );
        assert_eq!(
            Base::Path("x/y".into()).dir(root, own),
            Path::new("/sys/fs/cgroup/system.slice/mcpd.service/x/y")
        );
    }
}
