//! Process groups left behind by a daemon that died without stopping its servers (SIGKILL,
//! an OOM kill, a crash). `PR_SET_PDEATHSIG` takes each server's main process down with the
//! daemon, but not what that process forked: a grandchild keeps running and holding the port.
//!
//! While a server runs, its process group id is recorded in `<state_dir>/groups/<name>`; the
//! record goes when the group is killed. A starting daemon, before it spawns anything, kills
//! every live process that is still in a recorded group *and* carries that server's
//! `MCP_SERVICE_ID` in its environment (so a recycled group id of an unrelated process is
//! never hit). Under systemd the cgroup already does this; this covers running without it.
//! A process that left its group (`setsid`) escapes both and is out of reach.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::spawn::signal_group;

/// The folder of `state_dir` holding one file per running server: its process group id.
const GROUPS_DIR: &str = "groups";

#[derive(Debug)]
pub struct GroupRecords {
    dir: PathBuf,
}

impl GroupRecords {
    pub fn new(state_dir: &Path) -> Self {
        GroupRecords {
            dir: state_dir.join(GROUPS_DIR),
        }
    }

    /// Notes that `name` runs as process group `pgid`. Failing to write costs only the sweep.
    pub fn record(&self, name: &str, pgid: u32) {
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.dir.join(name), pgid.to_string()));
        if let Err(err) = written {
            tracing::debug!(server = %name, error = %err, "cannot record the process group");
        }
    }

    /// Notes that `name`'s process group is gone.
    pub fn clear(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Kills what is left of the groups recorded by an earlier daemon and forgets them all.
    /// Returns how many processes were killed.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let pgid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(pgid) = pgid {
                let left = members(pgid, &name);
                if !left.is_empty() {
                    tracing::warn!(server = %name, pgid, processes = ?left,
                        "killing processes left by a previous mcpd run (it did not stop its servers)");
                    signal_group(pgid, Signal::SIGKILL);
                    killed += left.len();
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }
}

/// Live processes of group `pgid` whose environment says they belong to server `name`.
fn members(pgid: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let marker = format!("MCP_SERVICE_ID={name}");
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| in_group(pid, pgid))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&byte| byte == 0)
                    .any(|var| var == marker.as_bytes())
            })
        })
        .collect()
}

/// True when `pid` is alive (not a zombie) and in process group `pgid`.
fn in_group(pid: u32, pgid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // After the command name (which may hold spaces): state, ppid, pgrp.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let group = fields.nth(1).and_then(|group| group.parse::<u32>().ok());
    state != Some("Z") && group == Some(pgid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;

    fn spawn_group(name: &str) -> std::process::Child {
        Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .env("MCP_SERVICE_ID", name)
            .process_group(0)
            .spawn()
            .expect("spawn")
    }

    fn gone(pgid: u32) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if members(pgid, "left").is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn sweeps_recorded_groups_of_the_right_server_only() {
        let state = tempfile::tempdir().expect("temp dir");
        let records = GroupRecords::new(state.path());
        let mut left = spawn_group("left");
        let mut other = spawn_group("other");
        // Recorded under another server's name: the environment check spares it.
        records.record("left", left.id());
        records.record("mismatch", other.id());
        let until = Instant::now() + Duration::from_secs(10);
        while members(left.id(), "left").len() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(left.id(), "left").len(), 2, "sh and its sleep");

        assert_eq!(records.sweep(), 2);
        assert!(gone(left.id()));
        let _ = left.wait();
        assert!(other.try_wait().expect("try_wait").is_none(), "spared");
        assert!(!state.path().join("groups/left").exists());
        assert!(!state.path().join("groups/mismatch").exists());
        assert_eq!(records.sweep(), 0, "nothing recorded any more");

        signal_group(other.id(), Signal::SIGKILL);
        let _ = other.wait();
    }

    #[test]
    fn clear_forgets_a_group() {
        let state = tempfile::tempdir().expect("temp dir");
        let records = GroupRecords::new(state.path());
        records.record("a", 12345);
        assert!(state.path().join("groups/a").exists());
        records.clear("a");
        assert!(!state.path().join("groups/a").exists());
    }
}
