//! Usage of servers without a cgroup: one pass over `/proc/<pid>/stat` per sample, summed by
//! process group (every server is the leader of its own group).

use std::collections::HashMap;

/// What the processes of one group use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    pub rss_bytes: u64,
    pub cpu_ns: u64,
    pub tasks: u64,
}

/// The usage of each process group of `wanted`, read from /proc in one pass.
pub fn by_group(wanted: &[u32]) -> HashMap<u32, GroupUsage> {
    let mut groups: HashMap<u32, GroupUsage> =
        wanted.iter().map(|&g| (g, GroupUsage::default())).collect();
    if groups.is_empty() {
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
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        if let Some((pgrp, usage)) = parse_stat(&stat, ticks, page)
            && let Some(group) = groups.get_mut(&pgrp)
        {
            group.rss_bytes += usage.rss_bytes;
            group.cpu_ns += usage.cpu_ns;
            group.tasks += usage.tasks;
        }
    }
    groups
}

/// The process group and usage of one `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its last `)`.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<(u32, GroupUsage)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on: index 0 is field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let pgrp = u32::try_from(field(5)?).ok()?;
    let cpu_ticks = field(14)? + field(15)?;
    Some((
        pgrp,
        GroupUsage {
            rss_bytes: field(24)?.saturating_mul(page_size),
            cpu_ns: cpu_ticks.saturating_mul(1_000_000_000 / ticks_per_second.max(1)),
            tasks: field(20)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_hostile_command_name() {
        let line = "4242 (a) b) (c 9) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    100 10000000 256 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (pgrp, usage) = parse_stat(line, 100, 4096).unwrap();
        assert_eq!(pgrp, 4242);
        assert_eq!(usage.cpu_ns, 3_000_000_000);
        assert_eq!(usage.tasks, 3);
        assert_eq!(usage.rss_bytes, 256 * 4096);
        assert_eq!(parse_stat("garbage", 100, 4096), None);
        assert_eq!(parse_stat("1 (x) S", 100, 4096), None);
    }

    #[test]
    fn this_process_is_found_in_its_group() {
        let pgrp = nix::unistd::getpgrp().as_raw() as u32;
        let usage = by_group(&[pgrp]);
        assert!(usage[&pgrp].rss_bytes > 0 && usage[&pgrp].tasks >= 1);
    }
}
