//! Hostile files and strings in the configuration: FIFOs, devices, directories and oversized
//! files where a file is expected, and control characters in values that end up in HTTP
//! requests.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::{expect_error, fixture, show};
use crate::config::*;

/// Runs `work` on a thread and returns its result; a read that blocks (the failure these tests
/// look for) fails the test after a generous guard instead of hanging the suite.
fn without_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result
        .recv_timeout(Duration::from_secs(30))
        .expect("reading blocked (a FIFO opened without O_NONBLOCK?)")
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    mkfifo(&fifo);
    let error = without_blocking(move || read_config_file(&fifo)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        error
            .to_string()
            .contains("a FIFO (named pipe), not a regular file"),
        "{error}"
    );
}

#[test]
fn devices_directories_and_sockets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = read_config_file(Path::new("/dev/zero")).unwrap_err();
    assert!(error.to_string().contains("a character device"), "{error}");
    let error = read_config_file(dir.path()).unwrap_err();
    assert!(error.to_string().contains("a directory"), "{error}");
    let socket = dir.path().join("s.yaml");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Opening a socket fails in the kernel (ENXIO): an error either way, never a read.
    assert!(read_config_file(&socket).is_err());
}

#[test]
fn a_file_over_the_limit_is_refused_with_its_size_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    // Sparse: 100 MB on paper, nothing on disk; refused from its size, before any read.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100_000_000)
        .unwrap();
    let error = read_config_file(&big).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
    assert!(
        error
            .to_string()
            .contains("100000000 bytes, more than the 4194304-byte (4 MiB) limit"),
        "{error}"
    );
    // The limit itself is allowed; one byte more is not.
    let edge = dir.path().join("edge.yaml");
    let file = std::fs::File::create(&edge).unwrap();
    file.set_len(MAX_CONFIG_FILE).unwrap();
    assert_eq!(
        read_config_file(&edge).unwrap().len() as u64,
        MAX_CONFIG_FILE
    );
    file.set_len(MAX_CONFIG_FILE + 1).unwrap();
    assert!(read_config_file(&edge).is_err());
}

#[test]
fn a_symlink_to_a_regular_file_is_followed() {
    let f = fixture();
    let target = f.write("elsewhere/echo.yaml", "mcp_servers: {echo: {binary: a}}");
    std::os::unix::fs::symlink(&target, f.path("mcp/echo.yaml")).unwrap();
    assert!(f.servers().contains_key("echo"));
}

#[test]
fn a_server_file_that_is_a_fifo_is_an_error_at_that_file() {
    let f = fixture();
    f.write("mcp/good.yaml", "mcp_servers: {good: {binary: a}}");
    mkfifo(&f.path("mcp/pipe.yaml"));
    let errors = without_blocking(move || {
        let errors = f.errors();
        (errors, f)
    });
    let (errors, f) = errors;
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].file, f.path("mcp/pipe.yaml"));
    assert!(errors[0].message.contains("FIFO"), "{}", errors[0]);
    assert!(errors[0].hint.is_some());
}

#[test]
fn a_daemon_file_that_is_a_fifo_or_too_large_is_an_error_at_that_file() {
    let f = fixture();
    let fifo = f.path("mcpd.yaml");
    mkfifo(&fifo);
    let env = f.env.clone();
    let errors = without_blocking(move || load_daemon_in(Some(&fifo), &env)).unwrap_err();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].file, f.path("mcpd.yaml"));
    assert!(errors[0].message.contains("FIFO"), "{}", errors[0]);

    let big = f.path("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_CONFIG_FILE + 1)
        .unwrap();
    let errors = load_daemon_in(Some(&big), &f.env).unwrap_err();
    assert!(errors[0].message.contains("4 MiB"), "{}", errors[0]);
}

#[test]
fn key_files_are_read_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("jwt.secret");
    mkfifo(&fifo);
    let error = without_blocking(move || crate::gateway::auth::read_hs256_secret(&fifo))
        .unwrap_err()
        .to_string();
    assert!(error.contains("FIFO"), "{error}");
}

#[test]
fn control_characters_in_path_and_endpoint_are_refused_where_written() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        r#"
        mcp_servers:
          crlf:
            binary: a
            path: "/mcp\r\nX-Injected: 1"
          lf: {binary: a, path: "/mcp\n"}
          nul: {binary: a, path: "/m\0cp"}
          esc: {binary: a, path: "/mcp\e[2J"}
          space: {binary: a, path: "/m cp"}
          del: {binary: a, path: "/mcp\x7f"}
          endpoint:
            binary: a
            endpoint: "https://mcp.example.com/x\r\nSet-Cookie: a=b"
          fine: {binary: a, path: "/mcp/v1%20x", endpoint: "https://mcp.example.com/fine"}
        "#,
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/a.yaml",
        4,
        "of server \"crlf\" contains a carriage return (CR)",
    );
    assert!(
        error.message.contains(r#""/mcp\r\nX-Injected: 1""#),
        "{error}"
    );
    assert!(error.hint.as_deref().unwrap().contains("percent-encoding"));
    expect_error(
        &errors,
        "mcp/a.yaml",
        5,
        "server \"lf\" contains a line feed (LF)",
    );
    expect_error(
        &errors,
        "mcp/a.yaml",
        6,
        "server \"nul\" contains a NUL byte",
    );
    expect_error(
        &errors,
        "mcp/a.yaml",
        7,
        "server \"esc\" contains the control character U+001B",
    );
    expect_error(
        &errors,
        "mcp/a.yaml",
        8,
        "server \"space\" contains a space",
    );
    expect_error(
        &errors,
        "mcp/a.yaml",
        9,
        "server \"del\" contains the control character U+007F",
    );
    expect_error(
        &errors,
        "mcp/a.yaml",
        12,
        "endpoint \"https://mcp.example.com/x\\r\\nSet-Cookie: a=b\" of server \"endpoint\" contains a carriage return",
    );
    assert_eq!(errors.len(), 7, "{}", show(&errors));
    // No message carries a raw control character.
    for error in &errors {
        assert!(
            !error.to_string().contains(['\r', '\0', '\x1b']),
            "{error:?}"
        );
    }
}
