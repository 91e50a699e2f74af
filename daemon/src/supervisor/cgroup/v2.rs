//! cgroup v2: one directory per server in the unified hierarchy, with the memory, pids and cpu
//! controllers enabled for the servers' base by writing each ancestor's `cgroup.subtree_control`.

use std::io;
use std::path::{Path, PathBuf};

use super::{Base, CgroupUsage, Driver, kill_listed, read_key, read_number, write};
use crate::config::Limits;

const CPU_PERIOD_US: u64 = 100_000;
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug)]
pub struct V2 {
    base: PathBuf,
    enforces: Vec<&'static str>,
}

impl V2 {
    /// Under systemd, mcpd first moves itself into `<own>/daemon`: a v2 cgroup with processes
    /// cannot hand controllers to its children (the no-internal-processes rule).
    pub(super) fn new(root: &Path, own: &str, base: &Base) -> Result<V2, String> {
        let own_dir = root.join(own.trim_start_matches('/'));
        if matches!(base, Base::Systemd) {
            let leaf = own_dir.join("daemon");
            std::fs::create_dir_all(&leaf).map_err(|err| {
                format!(
                    "cannot create {}: {err} (is Delegate=yes set?)",
                    leaf.display()
                )
            })?;
            for pid in std::fs::read_to_string(own_dir.join("cgroup.procs"))
                .map_err(|err| format!("cannot read {}: {err}", own_dir.display()))?
                .lines()
            {
                write(&leaf.join("cgroup.procs"), pid)
                    .map_err(|err| format!("cannot move mcpd into {}: {err}", leaf.display()))?;
            }
        }
        let base_dir = base.dir(root, own);
        std::fs::create_dir_all(&base_dir)
            .map_err(|err| format!("cannot create {}: {err}", base_dir.display()))?;
        // Every cgroup from the root's child down to the base hands the controllers on.
        let mut ancestors: Vec<&Path> = base_dir
            .ancestors()
            .take_while(|dir| dir.starts_with(root))
            .collect();
        ancestors.reverse();
        let mut enforces = Vec::new();
        for controller in CONTROLLERS {
            let enabled = ancestors.iter().all(|dir| {
                let control = dir.join("cgroup.subtree_control");
                let on = std::fs::read_to_string(&control)
                    .is_ok_and(|list| list.split_whitespace().any(|c| c == controller));
                on || write(&control, &format!("+{controller}")).is_ok()
            });
            if enabled {
                enforces.push(match controller {
                    "pids" => "tasks",
                    other => other,
                });
            }
        }
        if !enforces.contains(&"memory") {
            return Err(format!(
                "cannot enable the memory controller for {}",
                base_dir.display()
            ));
        }
        Ok(V2 {
            base: base_dir,
            enforces,
        })
    }
}

impl Driver for V2 {
    fn describe(&self) -> String {
        format!("cgroup v2, servers under {}", self.base.display())
    }

    fn enforces(&self) -> &[&'static str] {
        &self.enforces
    }

    fn create(&self, name: &str) -> io::Result<()> {
        match std::fs::create_dir(self.base.join(name)) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
            _ => Ok(()),
        }
    }

    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        vec![self.base.join(name).join("cgroup.procs")]
    }

    fn apply(&self, name: &str, limits: &Limits) -> io::Result<()> {
        let dir = self.base.join(name);
        let max = |value: Option<u64>| value.map_or("max".to_owned(), |v| v.to_string());
        write(&dir.join("memory.max"), &max(limits.memory))?;
        if self.enforces.contains(&"cpu") {
            let quota = limits
                .cpu
                .map(|cpu| (cpu * CPU_PERIOD_US as f64).round() as u64);
            write(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", max(quota)),
            )?;
        }
        if self.enforces.contains(&"tasks") {
            write(&dir.join("pids.max"), &max(limits.tasks))?;
        }
        Ok(())
    }

    fn usage(&self, name: &str) -> Option<CgroupUsage> {
        let dir = self.base.join(name);
        Some(CgroupUsage {
            memory: read_number(&dir.join("memory.current"))?,
            memory_peak: read_number(&dir.join("memory.peak")),
            cpu_ns: read_key(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            tasks: read_number(&dir.join("pids.current")).unwrap_or(0),
        })
    }

    fn oom_kills(&self, name: &str) -> u64 {
        read_key(&self.base.join(name).join("memory.events"), "oom_kill").unwrap_or(0)
    }

    fn kill_all(&self, name: &str) {
        let dir = self.base.join(name);
        // cgroup.kill (Linux 5.14) kills atomically; pid by pid without it. Either way, wait
        // (bounded) until the cgroup is empty, so that it can be removed.
        let _ = write(&dir.join("cgroup.kill"), "1");
        kill_listed(&dir.join("cgroup.procs"));
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_dir(self.base.join(name));
    }
}

#[cfg(test)]
mod tests {
    //! The files the v2 driver writes, checked on a directory tree laid out like a cgroup2
    //! mount (the CI host has no v2 controllers to run it against; tests/limits.rs runs the
    //! real thing where there are).

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn under_systemd_mcpd_moves_to_a_leaf_and_servers_get_their_limit_files() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids").unwrap();
        let unit = root.join("system.slice/mcpd.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(
            root.join("system.slice/cgroup.subtree_control"),
            "cpu memory pids",
        )
        .unwrap();
        std::fs::write(unit.join("cgroup.procs"), "412\n415\n").unwrap();
        let v2 = V2::new(root, "/system.slice/mcpd.service", &Base::Systemd).unwrap();
        assert_eq!(
            read(&unit.join("daemon/cgroup.procs")),
            "415",
            "each pid moved, last written"
        );
        assert_eq!(v2.enforces(), ["memory", "tasks", "cpu"]);
        assert_eq!(read(&unit.join("cgroup.subtree_control")), "+cpu");
        v2.create("echo").unwrap();
        v2.create("echo").unwrap();
        let limits = Limits {
            memory: Some(512 << 20),
            cpu: Some(0.25),
            tasks: None,
            open_files: Some(64),
        };
        v2.apply("echo", &limits).unwrap();
        let dir = unit.join("servers/echo");
        assert_eq!(read(&dir.join("memory.max")), "536870912");
        assert_eq!(read(&dir.join("cpu.max")), "25000 100000");
        assert_eq!(read(&dir.join("pids.max")), "max");
        assert_eq!(v2.procs_files("echo"), [dir.join("cgroup.procs")]);
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        std::fs::write(dir.join("memory.peak"), "8192\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(
            v2.usage("echo"),
            Some(CgroupUsage {
                memory: 4096,
                memory_peak: Some(8192),
                cpu_ns: 1_500_000,
                tasks: 3,
            })
        );
        assert_eq!(v2.oom_kills("echo"), 2);
        v2.kill_all("echo");
        assert_eq!(read(&dir.join("cgroup.kill")), "1");
    }

    #[test]
    fn without_the_memory_controller_there_is_no_driver() {
        let root = tempfile::tempdir().unwrap();
        // A file where a cgroup directory should be: nothing can be enabled below it.
        std::fs::write(root.path().join("x"), "").unwrap();
        let err = V2::new(root.path(), "/", &Base::Path("/x/y".into())).unwrap_err();
        assert!(err.contains("cannot create"), "{err}");
    }
}
