//! Usage of servers without a cgroup: one pass over `/proc/<pid>/stat` per sample, summed by
//! process group (every server is the leader of its own group).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

/// What the processes of one group use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    pub rss_bytes: u64,
    pub cpu_ns: u64,
    pub tasks: u64,
}

/// The stat files of the processes found in a wanted group, kept open from one pass to the
/// next: reading an open file again costs a third of opening it by its path and closing it
/// (bench/BENCH.md, "1000 servers: usage sampling"). One descriptor per process of a server,
/// held while the process is in its group. The file of a process that has died reads as an
/// error, so a pid taken by a new process is opened anew by its path.
#[derive(Debug, Default)]
pub struct KeptStats {
    files: HashMap<u32, File>,
}

/// Room for one stat line: 52 fields of at most 20 digits and a command name of at most 64
/// bytes come to well under this.
const STAT_LINE_MAX: usize = 2048;

/// The usage of each process group of `wanted`, read from /proc in one pass.
///
/// The pass reads every process's stat line (a group's members can only be found that way),
/// so it is kept to what the kernel must do: the members' files are read again where `kept`
/// holds them open, the others opened relative to `/proc`; each line is read in one `read`
/// into one buffer, nothing is allocated per process, and only members have their fields
/// parsed past the group.
pub fn by_group(wanted: &[u32], kept: &mut KeptStats) -> HashMap<u32, GroupUsage> {
    let mut groups: HashMap<u32, GroupUsage> =
        wanted.iter().map(|&g| (g, GroupUsage::default())).collect();
    if groups.is_empty() {
        kept.files.clear();
        return groups;
    }
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (ticks, page) = (ticks.max(1) as u64, page.max(1) as u64);
    let (Ok(proc_dir), Ok(entries)) = (File::open("/proc"), std::fs::read_dir("/proc")) else {
        return groups;
    };
    let mut still_kept = HashMap::with_capacity(kept.files.len());
    let mut line = [0u8; STAT_LINE_MAX];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = pid_of(name.as_encoded_bytes()) else {
            continue;
        };
        let reread = kept
            .files
            .remove(&pid)
            .and_then(|file| Some((read_line(&file, &mut line)?, file)));
        let Some((len, file)) = reread.or_else(|| {
            let file = open_stat(&proc_dir, name.as_encoded_bytes())?;
            Some((read_line(&file, &mut line)?, file))
        }) else {
            continue;
        };
        let Some(mut fields) = StatFields::new(&line[..len]) else {
            continue;
        };
        if let Some(pgrp) = fields.pgrp()
            && let Some(group) = groups.get_mut(&pgrp)
            && let Some(usage) = fields.usage(ticks, page)
        {
            group.rss_bytes += usage.rss_bytes;
            group.cpu_ns += usage.cpu_ns;
            group.tasks += usage.tasks;
            still_kept.insert(pid, file);
        }
    }
    // The files of processes that are gone or left their group are closed here.
    kept.files = still_kept;
    groups
}

/// The pid an entry of `/proc` names; `None` for every other entry.
fn pid_of(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Opens `/proc/<pid>/stat` relative to `/proc`.
fn open_stat(proc_dir: &File, pid: &[u8]) -> Option<File> {
    const STAT: &[u8] = b"/stat";
    let mut path = [0u8; 10 + STAT.len()];
    let path = path.get_mut(..pid.len() + STAT.len())?;
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()..].copy_from_slice(STAT);
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let fd = openat(proc_dir.as_fd(), &*path, flags, Mode::empty()).ok()?;
    Some(File::from(fd))
}

/// Reads a stat file's line into `line`, from its start; its length, or `None` when the
/// process is gone or the line does not fit. procfs renders the whole line for each read
/// from the start, so one read takes it unless the buffer is full, which may have cut it.
fn read_line(file: &File, line: &mut [u8]) -> Option<usize> {
    let read = file.read_at(line, 0).ok()?;
    (read > 0 && read < line.len()).then_some(read)
}

/// The fields of a `/proc/<pid>/stat` line, read in order from field 3 (state) on. The
/// command name (field 2) may hold spaces, parentheses and bytes that are not UTF-8, so
/// fields are counted from its last `)`.
struct StatFields<'a> {
    /// What is left of the line after the fields read so far.
    rest: &'a [u8],
}

impl<'a> StatFields<'a> {
    fn new(stat: &'a [u8]) -> Option<Self> {
        let after_name = stat.iter().rposition(|&byte| byte == b')')? + 1;
        Some(StatFields {
            rest: &stat[after_name..],
        })
    }

    fn next_field(&mut self) -> Option<&'a [u8]> {
        let start = self
            .rest
            .iter()
            .position(|byte| !byte.is_ascii_whitespace())?;
        let rest = &self.rest[start..];
        let end = rest
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }

    /// The field `skip` fields after the next one, as a number.
    fn number(&mut self, skip: usize) -> Option<u64> {
        for _ in 0..skip {
            self.next_field()?;
        }
        std::str::from_utf8(self.next_field()?).ok()?.parse().ok()
    }

    /// Field 5, the process group. Read first.
    fn pgrp(&mut self) -> Option<u32> {
        u32::try_from(self.number(2)?).ok()
    }

    /// Fields 14 and 15 (CPU time in ticks), 20 (threads) and 24 (resident pages). Read
    /// after [`StatFields::pgrp`].
    fn usage(&mut self, ticks_per_second: u64, page_size: u64) -> Option<GroupUsage> {
        let user = self.number(8)?;
        let system = self.number(0)?;
        let tasks = self.number(4)?;
        let pages = self.number(3)?;
        Some(GroupUsage {
            rss_bytes: pages.saturating_mul(page_size),
            cpu_ns: user
                .saturating_add(system)
                .saturating_mul(1_000_000_000 / ticks_per_second.max(1)),
            tasks,
        })
    }
}

/// The process group and usage of one `/proc/<pid>/stat` line.
#[cfg(test)]
fn parse_stat(stat: &[u8], ticks_per_second: u64, page_size: u64) -> Option<(u32, GroupUsage)> {
    let mut fields = StatFields::new(stat)?;
    let pgrp = fields.pgrp()?;
    Some((pgrp, fields.usage(ticks_per_second, page_size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_hostile_command_name() {
        let line = "4242 (a) b) (c 9) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    100 10000000 256 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (pgrp, usage) = parse_stat(line.as_bytes(), 100, 4096).unwrap();
        assert_eq!(pgrp, 4242);
        assert_eq!(usage.cpu_ns, 3_000_000_000);
        assert_eq!(usage.tasks, 3);
        assert_eq!(usage.rss_bytes, 256 * 4096);
        assert_eq!(parse_stat(b"garbage", 100, 4096), None);
        assert_eq!(parse_stat(b"1 (x) S", 100, 4096), None);
        // A command name that is not UTF-8 (any process may name itself so) does not hide
        // the process's usage.
        let mut named = b"77 (\xff\xfe) x) R 1 77".to_vec();
        named.extend_from_slice(b" 77 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 100 100 8 0");
        let (pgrp, usage) = parse_stat(&named, 100, 4096).unwrap();
        assert_eq!(
            (pgrp, usage.cpu_ns, usage.tasks, usage.rss_bytes),
            (77, 300_000_000, 1, 8 * 4096)
        );
    }

    #[test]
    fn a_line_that_fills_the_buffer_is_not_used() {
        let proc_dir = File::open("/proc").unwrap();
        let pid = std::process::id().to_string();
        let file = open_stat(&proc_dir, pid.as_bytes()).expect("own stat file opens");
        let mut room = [0u8; STAT_LINE_MAX];
        let whole = read_line(&file, &mut room).expect("the whole line fits");
        assert!(parse_stat(&room[..whole], 100, 4096).is_some());
        // A buffer the line fills may hold it cut short: its fields are not trusted. (Half
        // the line's length: the line itself may change length between two reads.)
        let mut short = vec![0u8; whole / 2];
        assert_eq!(read_line(&file, &mut short), None);
        // Not a pid, or more digits than a pid has: nothing is opened.
        assert!(open_stat(&proc_dir, b"12345678901").is_none());
        assert_eq!(pid_of(b"self"), None);
        assert_eq!(pid_of(b""), None);
        assert_eq!(pid_of(b"99999999999"), None);
    }

    /// A child killed and reaped when dropped, so a failing test leaves nothing running.
    struct Reaped(std::process::Child);

    /// A `sleep` leading a process group of its own, which only this test's passes read.
    fn sleeping_group() -> Reaped {
        use std::os::unix::process::CommandExt;
        Reaped(
            std::process::Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .expect("sleep runs"),
        )
    }

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_process_that_died_is_let_go() {
        let mut child = sleeping_group();
        let pid = child.0.id();
        let mut kept = KeptStats::default();
        let usage = by_group(&[pid], &mut kept);
        assert_eq!(usage[&pid].tasks, 1);
        assert!(kept.files.contains_key(&pid));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let usage = by_group(&[pid], &mut kept);
        assert_eq!(
            usage[&pid],
            GroupUsage::default(),
            "nothing counted for a dead group"
        );
        assert!(!kept.files.contains_key(&pid), "its file is closed");
    }

    #[test]
    fn this_process_is_found_in_its_group() {
        let pgrp = nix::unistd::getpgrp().as_raw() as u32;
        let mut kept = KeptStats::default();
        let usage = by_group(&[pgrp], &mut kept);
        assert!(usage[&pgrp].rss_bytes > 0 && usage[&pgrp].tasks >= 1);
        assert!(
            kept.files.contains_key(&std::process::id()),
            "a member's file is kept open"
        );
        // No group wanted: nothing is held.
        assert!(by_group(&[], &mut kept).is_empty());
        assert!(kept.files.is_empty());
    }

    #[test]
    fn a_kept_file_is_read_again_with_the_same_figures() {
        // A group of one process this test owns: the test binary's own group may hold other
        // processes that come and go between two passes, and take their CPU time with them.
        let child = sleeping_group();
        let pid = child.0.id();
        let mut kept = KeptStats::default();
        // Just after its exec the process may not have a resident page yet: wait until it has.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let first = loop {
            let usage = by_group(&[pid], &mut kept)[&pid];
            if usage.rss_bytes > 0 || std::time::Instant::now() > deadline {
                break usage;
            }
            std::thread::yield_now();
        };
        assert!(first.rss_bytes > 0, "sleep has resident pages");
        assert!(kept.files.contains_key(&pid));
        let again = by_group(&[pid], &mut kept)[&pid];
        assert_eq!((first.tasks, again.tasks), (1, 1));
        assert!(again.rss_bytes > 0);
        assert!(
            again.cpu_ns >= first.cpu_ns,
            "a live process's CPU time only grows"
        );
        assert!(
            kept.files.contains_key(&pid),
            "still held for the next pass"
        );
    }
}
