//! cgroup v1: a directory per server in each of the memory, pids, cpu and cpuacct hierarchies
//! that are mounted (memory is required, the others enforce or count what they can).

use std::io;
use std::path::{Path, PathBuf};

use super::{Base, CgroupUsage, Driver, kill_listed, own_path, read_key, read_number, write};
use crate::config::Limits;

/// The CFS period mcpd writes; `cpu` is the share of it a server may run.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug)]
pub struct V1 {
    /// Base directory of servers, per controller.
    memory: PathBuf,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    enforces: Vec<&'static str>,
}

impl V1 {
    pub(super) fn new(mounts: &[(String, PathBuf)], own: &str, base: &Base) -> Result<V1, String> {
        let dir_of = |controller: &str| -> Option<Result<PathBuf, String>> {
            let (_, root) = mounts.iter().find(|(c, _)| c == controller)?;
            let own = own_path(own, controller).unwrap_or_else(|| "/".to_owned());
            let dir = base.dir(root, &own);
            Some(
                std::fs::create_dir_all(&dir)
                    .map(|()| dir.clone())
                    .map_err(|err| format!("cannot create {}: {err}", dir.display())),
            )
        };
        let memory = dir_of("memory").ok_or("no v1 memory controller is mounted")??;
        let optional = |controller| dir_of(controller).and_then(Result::ok);
        let (pids, cpu, cpuacct) = (optional("pids"), optional("cpu"), optional("cpuacct"));
        let mut enforces = vec!["memory"];
        if cpu.is_some() {
            enforces.push("cpu");
        }
        if pids.is_some() {
            enforces.push("tasks");
        }
        Ok(V1 {
            memory,
            pids,
            cpu,
            cpuacct,
            enforces,
        })
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        let mut dirs = vec![&self.memory];
        for dir in [&self.pids, &self.cpu, &self.cpuacct].into_iter().flatten() {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs.into_iter()
    }
}

impl Driver for V1 {
    fn describe(&self) -> String {
        format!("cgroup v1, servers under {}", self.memory.display())
    }

    fn enforces(&self) -> &[&'static str] {
        &self.enforces
    }

    fn create(&self, name: &str) -> io::Result<()> {
        for dir in self.dirs() {
            match std::fs::create_dir(dir.join(name)) {
                Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("cannot create {}: {err}", dir.join(name).display()),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn procs_files(&self, name: &str) -> Vec<PathBuf> {
        self.dirs()
            .map(|dir| dir.join(name).join("cgroup.procs"))
            .collect()
    }

    fn apply(&self, name: &str, limits: &Limits) -> io::Result<()> {
        let memory = self.memory.join(name);
        let bytes = limits.memory.map_or("-1".to_owned(), |b| b.to_string());
        // With swap, memsw (memory + swap) must stay at or above the memory limit: lowering
        // writes memory first, raising writes memsw first; one of the two orders succeeds.
        let memsw = memory.join("memory.memsw.limit_in_bytes");
        let first = write(&memory.join("memory.limit_in_bytes"), &bytes);
        if memsw.exists() {
            write(&memsw, &bytes)?;
        }
        if first.is_err() {
            write(&memory.join("memory.limit_in_bytes"), &bytes)?;
        }
        if let Some(cpu) = &self.cpu {
            let dir = cpu.join(name);
            write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            let quota = limits.cpu.map_or("-1".to_owned(), |cpu| {
                ((cpu * CPU_PERIOD_US as f64).round() as u64).to_string()
            });
            write(&dir.join("cpu.cfs_quota_us"), &quota)?;
        }
        if let Some(pids) = &self.pids {
            let max = limits.tasks.map_or("max".to_owned(), |t| t.to_string());
            write(&pids.join(name).join("pids.max"), &max)?;
        }
        Ok(())
    }

    fn usage(&self, name: &str) -> Option<CgroupUsage> {
        let memory = self.memory.join(name);
        let tasks = match &self.pids {
            Some(pids) => read_number(&pids.join(name).join("pids.current")),
            None => count_lines(&memory.join("tasks")),
        };
        Some(CgroupUsage {
            memory: read_number(&memory.join("memory.usage_in_bytes"))?,
            memory_peak: read_number(&memory.join("memory.max_usage_in_bytes")),
            cpu_ns: self
                .cpuacct
                .as_ref()
                .and_then(|dir| read_number(&dir.join(name).join("cpuacct.usage")))
                .unwrap_or(0),
            tasks: tasks.unwrap_or(0),
        })
    }

    fn oom_kills(&self, name: &str) -> u64 {
        read_key(
            &self.memory.join(name).join("memory.oom_control"),
            "oom_kill",
        )
        .unwrap_or(0)
    }

    fn kill_all(&self, name: &str) {
        for dir in self.dirs() {
            kill_listed(&dir.join(name).join("cgroup.procs"));
        }
    }

    fn remove(&self, name: &str) {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir.join(name));
        }
    }
}

fn count_lines(path: &Path) -> Option<u64> {
    Some(std::fs::read_to_string(path).ok()?.lines().count() as u64)
}

#[cfg(test)]
mod tests {
    //! The files the v1 driver writes, on a directory tree laid out like v1 mounts
    //! (tests/limits.rs runs it against the kernel).

    use super::*;

    #[test]
    fn limits_go_to_each_controller_and_none_means_unlimited() {
        let root = tempfile::tempdir().unwrap();
        let mounts: Vec<(String, PathBuf)> = ["memory", "pids", "cpu", "cpuacct"]
            .iter()
            .map(|c| (c.to_string(), root.path().join(c)))
            .collect();
        let own = "4:memory:/job\n8:pids:/\n1:cpu:/\n2:cpuacct:/\n";
        let v1 = V1::new(&mounts, own, &Base::Path("mcpd".into())).unwrap();
        assert_eq!(v1.enforces(), ["memory", "cpu", "tasks"]);
        v1.create("echo").unwrap();
        let limits = Limits {
            memory: Some(64 << 20),
            cpu: Some(1.5),
            tasks: Some(32),
            open_files: None,
        };
        v1.apply("echo", &limits).unwrap();
        let file = |c: &str, f: &str| {
            let dir = if c == "memory" { "memory/job" } else { c };
            std::fs::read_to_string(root.path().join(dir).join("mcpd/echo").join(f)).unwrap()
        };
        assert_eq!(file("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(file("cpu", "cpu.cfs_quota_us"), "150000");
        assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(file("pids", "pids.max"), "32");
        v1.apply("echo", &Limits::default()).unwrap();
        assert_eq!(file("memory", "memory.limit_in_bytes"), "-1");
        assert_eq!(file("cpu", "cpu.cfs_quota_us"), "-1");
        assert_eq!(file("pids", "pids.max"), "max");
        assert_eq!(v1.procs_files("echo").len(), 4);
    }
}
