//! What a spawned server inherits from the daemon: its stdin, stdout and stderr, and not one
//! other descriptor (no other server's pipes, no probe or gateway socket, no log file, no
//! pidfd), whatever the daemon holds when it spawns.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mcpd_tests::sup_support::SupDaemon;

const UP: Duration = Duration::from_secs(20);

/// fd number -> what it points at (`pipe:[n]`, `socket:[n]`, a path, ...).
fn descriptors(pid: u32) -> BTreeMap<u32, String> {
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// True for a target that names one object: a pipe, a socket, or a file under `dir`
/// (`anon_inode:` targets name a kind, not an object, so two processes can both show one).
fn identifies(target: &str, dir: &Path) -> bool {
    target.starts_with("pipe:[")
        || target.starts_with("socket:[")
        || target.starts_with(&dir.display().to_string())
}

#[tokio::test]
async fn a_spawned_server_holds_no_descriptor_of_the_daemon_but_its_stdio() {
    let mut daemon = SupDaemon::new(6);
    for name in ["alpha", "beta", "gamma"] {
        daemon.echo(name, "");
    }
    daemon.server(
        "delta",
        &format!(
            "binary: {}\nargs: [--stdio]\ntransport: stdio\n",
            mcpd_tests::bin("mcp-echo").display()
        ),
    );
    daemon.start().await;
    let mut pids = BTreeMap::new();
    for name in ["alpha", "beta", "gamma", "delta"] {
        let status = daemon.wait_state(name, "running", UP).await;
        let pid = status["pid"].as_u64().expect("a running server has a pid") as u32;
        pids.insert(name, pid);
    }
    // Restart one, so it is spawned while the daemon holds every other server's pipes,
    // pidfds and probe connections.
    let (code, out) = daemon.ctl(&["restart", "beta"]).await;
    assert_eq!(code, Some(0), "mcpctl restart: {out}");
    let status = daemon.wait_state("beta", "running", UP).await;
    pids.insert(
        "beta",
        status["pid"].as_u64().expect("a running server has a pid") as u32,
    );

    let dir = daemon.dir.path().to_path_buf();
    let held: BTreeMap<String, u32> = descriptors(daemon.pid())
        .into_iter()
        .filter(|(_, target)| identifies(target, &dir))
        .map(|(fd, target)| (target, fd))
        .collect();
    assert!(
        held.len() > 8,
        "the daemon should hold pipes and sockets: {held:?}"
    );
    for (name, pid) in pids {
        let own = descriptors(pid);
        for fd in 0..3 {
            assert!(
                own.contains_key(&fd),
                "{name} (pid {pid}) has no fd {fd}: {own:?}"
            );
        }
        let leaked: Vec<String> = own
            .iter()
            .filter(|(fd, target)| {
                **fd > 2 && identifies(target, &dir) && held.contains_key(*target)
            })
            .map(|(fd, target)| format!("fd {fd} -> {target} (daemon's fd {})", held[target]))
            .collect();
        assert!(
            leaked.is_empty(),
            "{name} (pid {pid}) holds the daemon's descriptors: {leaked:?}"
        );
    }
}
