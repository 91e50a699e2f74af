//! The orphan reaper: a process, `mcpd reaper`, that kills the server process groups a dead
//! daemon leaves behind. The one defence against orphans besides `PR_SET_PDEATHSIG` (see
//! ARCHITECTURE.md, invariants, for why this design and not a sweep at the next start).
//!
//! The daemon starts it once, from the spawner thread, in a process group of its own, and
//! writes to its standard input one line per change: `+PGID NAME` when server `NAME` starts as
//! process group `PGID`, `-PGID` when that group is gone or being killed. At end of input (the
//! daemon exited, cleanly or not: the kernel closes the pipe) the reaper kills every group still
//! listed and exits. It keeps nothing on disk, so a reboot leaves nothing stale.
//!
//! A group is killed only while one of its live members carries `MCP_SERVICE_ID=NAME` in its
//! environment. A process group id cannot be reused while any member lives, so that member
//! proves the group is the one the daemon started, not an unrelated group that got the number.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use nix::sys::signal::Signal;

use super::spawn::signal_group;

/// The program run as `<program> reaper`: the mcpd binary, set by `main` before anything
/// starts. Unset (a daemon embedded in a test binary) means no reaper.
static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Makes spawners start `program reaper` as their reaper.
pub fn use_program(program: PathBuf) {
    let _ = PROGRAM.set(program);
}

/// The daemon's end: the reaper's standard input.
pub(super) struct Reaper {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
}

impl Reaper {
    /// Starts `mcpd reaper`; without one the daemon runs on (and says why).
    pub(super) fn start() -> Option<Reaper> {
        use std::os::unix::process::CommandExt;
        let Some(program) = PROGRAM.get() else {
            tracing::debug!(
                "no reaper program set: processes forked by servers may outlive a daemon that is killed"
            );
            return None;
        };
        let started = std::process::Command::new(program)
            .arg0("mcpd")
            .arg("reaper")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn();
        match started {
            Ok(mut child) => {
                let input = child.stdin.take();
                Some(Reaper { child, input })
            }
            Err(err) => {
                tracing::warn!(error = %err, program = %program.display(), "cannot start the reaper: \
                    processes forked by servers may outlive a daemon that is killed");
                None
            }
        }
    }

    /// Server `name` now runs as process group `pgid`.
    pub(super) fn started(&mut self, pgid: u32, name: &str) {
        self.tell(&format!("+{pgid} {name}"));
    }

    /// Process group `pgid` is gone or being killed: forget it (its number may be reused).
    pub(super) fn released(&mut self, pgid: u32) {
        self.tell(&format!("-{pgid}"));
    }

    fn tell(&mut self, line: &str) {
        if let Some(input) = self.input.as_mut()
            && let Err(err) = writeln!(input, "{line}")
        {
            tracing::warn!(error = %err, "the reaper is gone: processes forked by servers may \
                outlive a daemon that is killed");
            self.input = None;
        }
    }

    pub(super) fn is_broken(&self) -> bool {
        self.input.is_none()
    }

    /// Closes its input (it kills what is still listed and exits) and reaps it.
    pub(super) fn finish(mut self) {
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// `mcpd reaper`: reads `input` to its end, then kills what is still listed. Returns how many
/// groups it killed.
/// The caller ignores SIGHUP, SIGINT and SIGTERM first: those are for the daemon, and the
/// reaper ends when the daemon does.
pub fn run(input: impl BufRead) -> usize {
    let groups = read_groups(input);
    let mut killed = 0;
    for (pgid, name) in &groups {
        let members = members(Path::new("/proc"), *pgid, name);
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(
            io::stderr(),
            "mcpd reaper: mcpd is gone; killing process group {pgid} of server {name:?} ({} processes)",
            members.len()
        );
        signal_group(*pgid, Signal::SIGKILL);
        killed += 1;
    }
    killed
}

/// The groups listed when `input` ends: `+PGID NAME` adds, `-PGID` removes; other lines are
/// ignored.
fn read_groups(input: impl BufRead) -> BTreeMap<u32, String> {
    let mut groups = BTreeMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix('+') {
            if let Some((pgid, name)) = rest.split_once(' ')
                && let Ok(pgid) = pgid.parse::<u32>()
                && pgid > 1
                && !name.is_empty()
            {
                groups.insert(pgid, name.to_owned());
            }
        } else if let Some(pgid) = line.strip_prefix('-').and_then(|p| p.parse::<u32>().ok()) {
            groups.remove(&pgid);
        }
    }
    groups
}

/// Live processes of group `pgid` whose environment says they belong to server `name`.
fn members(proc: &Path, pgid: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let marker = format!("MCP_SERVICE_ID={name}");
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| in_group(proc, pid, pgid))
        .filter(|&pid| {
            std::fs::read(proc.join(format!("{pid}/environ"))).is_ok_and(|environ| {
                environ
                    .split(|&byte| byte == 0)
                    .any(|var| var == marker.as_bytes())
            })
        })
        .collect()
}

/// True when `pid` is alive (not a zombie) and in process group `pgid`.
fn in_group(proc: &Path, pid: u32, pgid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(proc.join(format!("{pid}/stat"))) else {
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

    fn wait_members(pgid: u32, name: &str, count: usize) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if members(Path::new("/proc"), pgid, name).len() == count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn the_input_lists_started_groups_minus_released_ones() {
        let input = "+100 a\n+200 b\n-100\n+300 c d\n+x y\n+1 init\n+400\n-junk\nnoise\n";
        let groups = read_groups(input.as_bytes());
        let expected: BTreeMap<u32, String> =
            [(200, "b".to_owned()), (300, "c d".to_owned())].into();
        assert_eq!(groups, expected);
    }

    #[test]
    fn kills_listed_groups_whose_members_carry_the_server_name_only() {
        let mut left = spawn_group("left");
        let mut other = spawn_group("other");
        assert!(
            wait_members(left.id(), "left", 2),
            "sh and its sleep are members"
        );
        // `other` is listed under another server's name, as a reused group id would be: the
        // environment check spares it. A released group is spared too.
        let input = format!("+{} left\n+{} mismatch\n", left.id(), other.id());
        assert_eq!(run(input.as_bytes()), 1);
        assert!(wait_members(left.id(), "left", 0), "left's group is gone");
        let _ = left.wait();
        assert!(other.try_wait().expect("try_wait").is_none(), "spared");

        let input = format!("+{0} other\n-{0}\n", other.id());
        assert_eq!(run(input.as_bytes()), 0, "released");
        assert!(other.try_wait().expect("try_wait").is_none(), "spared");
        signal_group(other.id(), Signal::SIGKILL);
        let _ = other.wait();
    }
}
