//! The harness itself: port blocks, process-group cleanup, the watchdog and waiting.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use mcpd_tests::{ChildGuard, TestDir, port_block, wait_for, wait_for_sync};
use nix::sys::signal::kill;
use nix::unistd::Pid;

#[test]
fn port_blocks_are_distinct_and_bindable() {
    let blocks: Vec<_> = (0..5).map(|_| port_block(25)).collect();
    let mut seen = HashSet::new();
    for block in &blocks {
        assert!(block.len >= 25);
        assert_eq!(block.range(), format!("{}-{}", block.start, block.last()));
        for port in block.ports() {
            assert!(seen.insert(port), "port {port} handed out twice");
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is taken"
            );
        }
    }
}

#[test]
fn test_dir_writes_files_and_is_removed() {
    let dir = TestDir::new();
    let path = dir.write("a/b/c.yaml", "x: 1\n");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "x: 1\n");
    let root = dir.path().to_path_buf();
    drop(dir);
    assert!(!root.exists());
}

#[test]
fn dropping_a_guard_kills_the_whole_process_group() {
    let dir = TestDir::new();
    let pidfile = dir.join("grandchild.pid");
    // The shell starts a grandchild in the same group, records its pid, and waits.
    let script = format!(
        "sleep 300 & echo $! > {}; echo started; wait",
        pidfile.display()
    );
    let guard = ChildGuard::spawn("sh", Command::new("sh").args(["-c", &script]));
    wait_for_sync(
        Duration::from_secs(10),
        "the shell to start its grandchild",
        || guard.stdout().contains("started"),
    );
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        kill(Pid::from_raw(grandchild), None).is_ok(),
        "grandchild runs"
    );
    drop(guard);
    // Killed and, with the shell gone, reparented and reaped by init (or left a zombie of
    // init); either way it no longer runs.
    wait_for_sync(Duration::from_secs(10), "the grandchild to be gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
    });
}

#[test]
#[should_panic(expected = "the watchdog killed")]
fn the_watchdog_kills_a_hung_process_and_fails_the_test() {
    let guard = ChildGuard::spawn_with_watchdog(
        "sleep",
        Command::new("sleep").arg("300"),
        Duration::from_millis(200),
    );
    let status = guard.wait_exit_sync(Duration::from_secs(10));
    assert_eq!(mcpd_tests::describe(status), "signal 9");
    drop(guard); // panics: the watchdog fired
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms waiting for the impossible")]
async fn wait_for_fails_with_its_message() {
    wait_for(Duration::from_millis(50), "the impossible", || async {
        false
    })
    .await;
}
