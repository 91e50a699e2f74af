//! Hostile files and values in the configuration against the real `mcpd`: a server file or key
//! file swapped for a FIFO, a 100 MB server file, a `path` carrying CR/LF, and running short
//! of descriptors while ports are checked. Each reload reports the error at the file and the
//! daemon keeps serving with the previous settings. Summarised in tests/RELIABILITY.md.

use std::path::Path;
use std::process::Command;

use mcpd_tests::rel_support::{PATIENCE, Setup, healthz, pid_port};
use mcpd_tests::{bin, lazy, wait_for_sync};

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// `mcpctl --json reload`, which must end on its own (a blocked reload would not): (exit code,
/// stdout).
fn reload(setup: &Setup) -> (i32, String) {
    let (code, out, _) = mcpctl(setup, &["--json", "reload"]);
    (code, out)
}

/// `mcpctl ARGS`, which must end on its own: (exit code, stdout, stderr).
fn mcpctl(setup: &Setup, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(bin("mcpctl"));
    command.arg("--socket").arg(&setup.socket).args(args);
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(command.output());
    });
    let output = result
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("mcpctl {args:?} did not return: the daemon is blocked"))
        .expect("run mcpctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Two echo servers, `echo` in echo.yaml and `other` in other.yaml, both running.
fn two_servers(setup: &Setup) -> (u32, u32) {
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    setup.write_server("other", "other", &bin("mcp-echo"), &[]);
    (setup.wait_running("echo").0, setup.wait_running("other").0)
}

/// The daemon answers on both sides, and both servers still run as the same processes.
fn still_serving(setup: &Setup, pids: (u32, u32)) {
    assert!(
        setup.try_status().is_some(),
        "mcpctl status does not answer"
    );
    assert!(healthz(setup.gateway_port), "the gateway does not answer");
    assert_eq!(setup.wait_running("echo").0, pids.0, "echo was restarted");
    assert_eq!(setup.wait_running("other").0, pids.1, "other was restarted");
}

#[test]
fn a_server_file_swapped_for_a_fifo_fails_the_reload_without_blocking_it() {
    let setup = Setup::new();
    let daemon = setup.start();
    let pids = two_servers(&setup);
    let (code, out) = reload(&setup);
    assert_eq!(code, 0, "{out}");

    // No writer ever opens the FIFO: opening it for reading without O_NONBLOCK would wait
    // forever, with the reload lock held.
    mkfifo(&setup.services.join("other.yaml"));
    let (code, out) = reload(&setup);
    assert_eq!(code, 1, "{out}\n{}", daemon.stderr());
    assert!(out.contains("other.yaml"), "{out}");
    assert!(
        out.contains("a FIFO (named pipe), not a regular file"),
        "{out}"
    );
    still_serving(&setup, pids);

    // Put back, the file is read again.
    std::fs::remove_file(setup.services.join("other.yaml")).unwrap();
    setup.write_server("other", "other", &bin("mcp-echo"), &[]);
    let (code, out) = reload(&setup);
    assert_eq!(code, 0, "{out}");
    still_serving(&setup, pids);
}

#[test]
fn a_huge_server_file_and_a_path_with_crlf_fail_the_reload_and_change_nothing() {
    let setup = Setup::new();
    let daemon = setup.start();
    let pids = two_servers(&setup);

    // 100 MB (sparse): refused from its size, nothing of it read.
    let huge = setup.services.join("other.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (code, out) = reload(&setup);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("104857600 bytes, more than the 4194304-byte (4 MiB) limit"),
        "{out}"
    );
    let peak = peak_rss_kib(daemon.pid());
    assert!(
        peak < 100 << 10,
        "the daemon's peak resident size is {peak} KiB"
    );
    still_serving(&setup, pids);

    // A path that would end the probe's request line and inject a header.
    setup.write_server_yaml(
        "other",
        &format!(
            "mcp_servers:\n  other:\n    binary: {:?}\n    path: \"/mcp\\r\\nX-Injected: 1\"\n",
            bin("mcp-echo").display().to_string()
        ),
    );
    let (code, out) = reload(&setup);
    assert_eq!(code, 1, "{out}");
    let errors: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let error = errors["config_errors"]
        .as_array()
        .and_then(|errors| {
            errors.iter().find(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("carriage return")
            })
        })
        .unwrap_or_else(|| panic!("no CR error in {out}"));
    assert!(
        error["file"].as_str().unwrap().ends_with("other.yaml"),
        "{error}"
    );
    assert_eq!(error["line"], 4, "{error}");
    still_serving(&setup, pids);
}

#[test]
fn a_key_file_swapped_for_a_fifo_keeps_the_previous_keys() {
    let mut setup = Setup::new();
    setup.dir.write("jwt.secret", "file-abuse-test-secret");
    setup.extra = "auth:\n  keys:\n    - {hs256_secret_file: jwt.secret}\n".to_owned();
    let _daemon = setup.start();
    let pids = two_servers(&setup);

    mkfifo(&setup.dir.join("jwt.secret"));
    let (code, out) = reload(&setup);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("auth keys not reloaded"), "{out}");
    assert!(out.contains("FIFO"), "{out}");
    // Minting a token reads the same file, the same way.
    let (code, _, err) = mcpctl(&setup, &["token", "--scope", "tools"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("FIFO"), "{err}");
    still_serving(&setup, pids);
}

/// VmHWM of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The open-file limits of process `pid`.
fn fd_limit(pid: u32) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain syscall with a valid out-pointer.
    let done = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut limit,
        )
    };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
    limit
}

/// Sets the open-file limits of process `pid` (our own child, so the same user may).
fn set_fd_limit(pid: u32, limit: libc::rlimit) {
    // SAFETY: a plain syscall with a valid in-pointer.
    let done = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn running_out_of_descriptors_while_checking_a_port_never_moves_a_server() {
    let setup = Setup::new();
    let daemon = setup.start();
    two_servers(&setup);
    let (echo_pid, echo_port) = setup.wait_running("echo");
    let (_, other_port) = setup.wait_running("other");
    let ports_file = setup.dir.join("state/ports.json");
    let assigned = std::fs::read(&ports_file).expect("ports.json");
    let modified = std::fs::metadata(&ports_file).unwrap().modified().unwrap();

    // From now on the daemon cannot open any descriptor: with a soft limit of 3, every new
    // one (numbered 3 or above, as stdin, stdout and stderr are open) fails with EMFILE,
    // however many the daemon closes meanwhile. Deterministic, unlike a race for the last
    // free descriptor.
    let limits = fd_limit(daemon.pid());
    set_fd_limit(
        daemon.pid(),
        libc::rlimit {
            rlim_cur: 3,
            ..limits
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(echo_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill echo");
    // Its restart checks the port with no descriptor to bind a socket with.
    let reported = format!("cannot check whether port {echo_port} is free: Too many open files");
    wait_for_sync(
        PATIENCE,
        lazy(|| format!("{reported:?} in the daemon log:\n{}", daemon.stderr())),
        || daemon.stderr().contains(&reported),
    );
    set_fd_limit(daemon.pid(), limits);
    assert!(
        !daemon.stderr().contains("in use by another process"),
        "an fd error taken for a port in use:\n{}",
        daemon.stderr()
    );

    let (_, port) = pid_port(&setup.wait_server("echo", "running again", |status| {
        status["state"] == "running" && status["pid"] != echo_pid
    }));
    assert_eq!(port, echo_port, "echo moved");
    assert_eq!(setup.wait_running("other").1, other_port, "other moved");
    assert_eq!(std::fs::read(&ports_file).unwrap(), assigned);
    assert_eq!(
        std::fs::metadata(&ports_file).unwrap().modified().unwrap(),
        modified,
        "ports.json was rewritten"
    );
    assert!(!daemon.stderr().contains("moved"), "{}", daemon.stderr());
}
