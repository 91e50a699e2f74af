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
        // cgroup.kill (Linux 5.14) kills atomically; without it, pid by pid.
        if write(&dir.join("cgroup.kill"), "1").is_err() {
            kill_listed(&dir.join("cgroup.procs"));
        }
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_dir(self.base.join(name));
    }
}
