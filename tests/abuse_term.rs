//! Attacks on the operator's terminal and on the control socket's files, against the real
//! binaries: a hostile server whose output, tool names, descriptions, schema, results and
//! errors carry ANSI CSI, OSC 0/52, C1 controls, bare CR/BS/DEL and bidi overrides, and
//! which prints a forged `[mcpd]` note; a fallback socket directory planted by another user,
//! left as a file or opened 0777; a socket owned by another user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mcpd_tests::ctl_support::{CtlRun, Daemon, DaemonSpec, assert_no_raw_controls};
use mcpd_tests::{ChildGuard, TestDir, bin, free_port, lazy, wait_for_value};
use serde_json::Value;

const UP: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

fn hostile_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile_term.py")
}

fn hostile_yaml(name: &str, mode: &str) -> String {
    format!(
        "mcp_servers:\n  {name}:\n    binary: {script}\n    description: hostile\n    env: {{HOSTILE_MODE: {mode}}}\n",
        script = hostile_script().display()
    )
}

/// Runs `mcpctl ARGS` and checks that neither stdout nor stderr carries a raw control.
#[track_caller]
fn clean(daemon: &Daemon, args: &[&str]) -> CtlRun {
    let run = daemon.ctl(args);
    assert_no_raw_controls(&format!("mcpctl {args:?} stdout"), &run.stdout);
    assert_no_raw_controls(&format!("mcpctl {args:?} stderr"), &run.stderr);
    run
}

async fn wait_for_log(daemon: &Daemon, server: &str, needle: &str) -> String {
    let what = lazy(|| format!("{needle:?} in the logs of {server}"));
    wait_for_value(UP, what, || {
        let out = daemon.ctl(&["logs", server, "-n", "200"]).stdout;
        std::future::ready(out.contains(needle).then_some(out))
    })
    .await
}

#[tokio::test]
async fn a_hostile_servers_text_reaches_the_terminal_escaped() {
    let mut spec = DaemonSpec::echo_servers(&[]);
    spec.files = vec![("hostile.yaml".into(), hostile_yaml("hostile", "ok"))];
    let daemon = Daemon::start(spec).await;

    // Logs: every class escaped, one line per line, and the forged note is server output.
    let logs = wait_for_log(&daemon, "hostile", "fake note from the server").await;
    assert_no_raw_controls("logs", &logs);
    for escaped in [
        "\\x1b[2J",
        "\\x1b]0;pwned-title\\x07",
        "\\x1b]52;c;ZXZpbA==\\x07",
        "\\u{9b}2J",
        "\\u{9d}0;c1-title\\u{9c}",
        "\\u{202e}evil\\u{2066}x\\u{2069}",
        "\\x0dBS\\x08DEL\\x7f",
    ] {
        assert!(logs.contains(escaped), "{escaped} missing in:\n{logs}");
    }
    let forged: Vec<&str> = logs.lines().filter(|l| l.contains("[mcpd] fake")).collect();
    assert_eq!(forged.len(), 1, "{logs}");
    assert!(
        forged[0].contains(" out [mcpd] fake note from the server"),
        "{logs}"
    );
    assert!(!logs.lines().any(|l| l.contains(" mcpd [mcpd]")), "{logs}");
    let run = clean(&daemon, &["--json", "logs", "hostile", "-n", "200"]);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let fake = lines
        .iter()
        .find(|l| l["text"] == "[mcpd] fake note from the server")
        .expect("the forged line");
    assert_eq!(fake["stream"], "stdout");
    // --json is exact: the escape sequences come back as they were printed.
    assert!(
        lines.iter().any(|l| l["text"]
            .as_str()
            .unwrap()
            .contains("\x1b]52;c;ZXZpbA==\x07")),
        "{}",
        run.stdout
    );

    // Tools, schema, show, list, status, call, test: nothing raw.
    let tools = clean(&daemon, &["tools", "hostile", "--schema"]).ok();
    assert!(tools.contains("evil\\x1b[2J\\x1b[31mtool"), "{tools}");
    // The table shows a description's first line; the schema is JSON, with ESC as \u001b
    // and C1 and bidi characters as \uXXXX too.
    assert!(tools.contains("desc \\x1b[2J\\x1b[31m"), "{tools}");
    assert!(tools.contains(r#""schema \u001b[2J"#), "{tools}");
    assert!(
        tools.contains(r"\u009b2J") && tools.contains(r"\u202eevil"),
        "{tools}"
    );
    let json = clean(&daemon, &["--json", "tools", "hostile", "--schema"]);
    let parsed = json.json();
    let names: Vec<&str> = parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"evil\x1b[2J\x1b[31mtool"), "{names:?}");
    assert!(
        names.contains(&"title\x1b]0;pwned-title\x07\u{9b}2J\u{9d}0;c1-title\u{9c}"),
        "{names:?}"
    );
    let show = clean(&daemon, &["show", "hostile"]).ok();
    assert!(show.contains("evil\\x1b[2J"), "{show}");
    clean(&daemon, &["list"]).ok();
    clean(&daemon, &["status"]).ok();
    clean(&daemon, &["test", "hostile"]);
    let call = clean(&daemon, &["call", "hostile", "evil\x1b[2J\x1b[31mtool"]);
    assert!(
        call.stdout.contains("result \\x1b[2J") && call.stdout.contains("\nline two"),
        "{call:?}"
    );
    clean(&daemon, &["call", "hostile", "no-such\x1b]0;t\x07tool"]);

    // The log file: one line per entry, the stream column tells who wrote it, mode 0640.
    let logs_dir = daemon.dir.join("state/logs");
    let file = std::fs::read_dir(&logs_dir)
        .expect("logs dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hostile."))
        })
        .expect("the server's log file");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640, "{}", file.display());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .any(|l| l.ends_with(" out [mcpd] fake note from the server")),
        "{text}"
    );
    // The daemon's own log quotes nothing raw either.
    assert_no_raw_controls("mcpd stderr", &daemon.process.stderr());
}

#[tokio::test]
async fn a_hostile_servers_error_is_shown_escaped_in_status_and_notes() {
    let spec = DaemonSpec::echo_servers(&["calm"]);
    let mut daemon = Daemon::start(spec).await;
    daemon.switch_services(&[("broken.yaml", &hostile_yaml("broken", "broken"))]);
    daemon.ctl(&["reload"]).ok();

    let what = lazy(|| "a last error for broken".to_owned());
    let error = wait_for_value(UP, what, || {
        let error = daemon
            .server("broken")
            .and_then(|s| s["last_error"].as_str().map(str::to_owned));
        std::future::ready(error)
    })
    .await;
    // --json carries the server's message exactly.
    assert!(error.contains("broken \x1b[2J\x1b[31m"), "{error}");
    let status = clean(&daemon, &["status"]).ok();
    assert!(status.contains("broken \\x1b[2J\\x1b[31m"), "{status}");
    clean(&daemon, &["show", "broken"]).ok();
    clean(&daemon, &["test", "broken"]);
    clean(&daemon, &["validate", "broken"]);
    let logs = wait_for_log(&daemon, "broken", " mcpd ").await;
    assert_no_raw_controls("logs", &logs);
    let notes: Vec<&str> = logs.lines().filter(|l| l.contains(" mcpd ")).collect();
    assert!(
        notes.iter().any(|l| l.contains("\\x1b]52;c;")),
        "no escaped note in:\n{logs}"
    );
    let json = clean(&daemon, &["--json", "logs", "broken", "-n", "200"]);
    assert!(
        json.stdout.contains(r#""stream":"daemon""#),
        "{}",
        json.stdout
    );
    assert_no_raw_controls("mcpd stderr", &daemon.process.stderr());
}

// ---- the fallback socket directory ------------------------------------------------------------

/// A config without `control.socket`, so the socket goes to `$TMPDIR/mcpd-$UID`.
fn fallback_config(dir: &TestDir) -> PathBuf {
    let port = free_port();
    dir.write("mcp/.keep", "");
    dir.write(
        "mcpd.yaml",
        format!(
            "services_dir: mcp\nstate_dir: state\ngateway:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\n"
        ),
    )
}

fn mcpd_in(dir: &TestDir, tmp: &Path) -> ChildGuard {
    let config = fallback_config(dir);
    ChildGuard::spawn(
        "mcpd",
        Command::new(bin("mcpd"))
            .arg("--config")
            .arg(config)
            .env("TMPDIR", tmp)
            .env("RUST_LOG", "info,rmcp=off")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("MCPD_SOCKET")
            .env_remove("MCPD_CONFIG")
            .env_remove("NOTIFY_SOCKET"),
    )
}

fn private_dir(tmp: &Path) -> PathBuf {
    tmp.join(format!("mcpd-{}", nix::unistd::geteuid().as_raw()))
}

/// mcpd refuses the directory: it exits 1 with `expected` in its error, and binds nothing.
async fn refused(dir: &TestDir, tmp: &Path, expected: &str) {
    let mcpd = mcpd_in(dir, tmp);
    let status = mcpd.wait_exit(UP).await;
    assert_eq!(status.code(), Some(1), "{}", mcpd.stderr());
    let stderr = mcpd.stderr();
    assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    assert!(
        stderr.contains(&private_dir(tmp).display().to_string()),
        "{stderr}"
    );
    assert!(!private_dir(tmp).join("mcpd.sock").exists());
}

#[tokio::test]
async fn the_fallback_socket_dir_is_created_0700_and_found_by_mcpctl() {
    let dir = TestDir::new();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mcpd = mcpd_in(&dir, &tmp);
    let socket = private_dir(&tmp).join("mcpd.sock");
    let what = lazy(|| format!("{} to appear; {}", socket.display(), mcpd.stderr()));
    wait_for_value(UP, what, || {
        std::future::ready(socket.exists().then_some(()))
    })
    .await;
    let meta = std::fs::symlink_metadata(private_dir(&tmp)).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    // mcpctl finds the same socket through the same rule.
    let out = Command::new(bin("mcpctl"))
        .args(["--json", "status"])
        .env("TMPDIR", &tmp)
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("MCPD_SOCKET")
        .env_remove("MCPD_CONFIG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // /etc/mcpd/mcpd.yaml would win over the default; only check when there is none.
    if !Path::new("/etc/mcpd/mcpd.yaml").exists() {
        assert!(out.status.success(), "{stderr}");
    }
}

#[tokio::test]
async fn a_file_at_the_fallback_dir_is_refused_clearly() {
    let dir = TestDir::new();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(private_dir(&tmp), b"planted").unwrap();
    refused(&dir, &tmp, "exists and is not a directory (it is a file)").await;
    assert_eq!(std::fs::read(private_dir(&tmp)).unwrap(), b"planted");
}

#[tokio::test]
async fn a_world_open_fallback_dir_is_refused_clearly() {
    let dir = TestDir::new();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::create_dir(private_dir(&tmp)).unwrap();
    std::fs::set_permissions(private_dir(&tmp), PermissionsExt::from_mode(0o777)).unwrap();
    refused(&dir, &tmp, "has mode 0777, which lets other users in").await;
}

#[tokio::test]
async fn a_symlinked_fallback_dir_is_refused_clearly() {
    let dir = TestDir::new();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, private_dir(&tmp)).unwrap();
    refused(&dir, &tmp, "(it is a symbolic link)").await;
    assert!(!elsewhere.join("mcpd.sock").exists());
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn a_fallback_dir_of_another_user_is_refused_clearly() {
    if !is_root() {
        eprintln!("skipped: needs root to give the directory to another user");
        return;
    }
    let dir = TestDir::new();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::create_dir(private_dir(&tmp)).unwrap();
    std::fs::set_permissions(private_dir(&tmp), PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(private_dir(&tmp), Some(NOBODY), Some(NOBODY)).unwrap();
    refused(&dir, &tmp, "belongs to uid 65534, not to mcpd's uid 0").await;
}

// ---- mcpctl and a socket of another user -------------------------------------------------------

#[tokio::test]
async fn mcpctl_refuses_a_socket_file_of_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to give the socket to another user");
        return;
    }
    let dir = TestDir::new();
    let path = dir.join("planted.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = mcpd_tests::ctl_support::run_ctl(&[
        "--socket".into(),
        path.display().to_string(),
        "call".into(),
        "echo".into(),
        "--args".into(),
        r#"{"text":"secret"}"#.into(),
    ])
    .expect_code(1);
    assert!(
        run.stderr.contains("refusing to talk to")
            && run.stderr.contains("the socket file belongs to uid 65534"),
        "{}",
        run.stderr
    );
    // It did not even connect.
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    let json = mcpd_tests::ctl_support::run_ctl(&[
        "--json".into(),
        "--socket".into(),
        path.display().to_string(),
        "status".into(),
    ])
    .expect_code(1);
    assert_eq!(json.json()["error"]["code"], "untrusted_socket");
}

#[tokio::test]
async fn mcpctl_refuses_a_listener_of_another_user_behind_a_root_owned_file() {
    if !is_root() {
        eprintln!("skipped: needs root to run a listener as another user");
        return;
    }
    let dir = TestDir::new();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).unwrap();
    let path = open.join("planted.sock");
    let script = "import socket,sys\n\
                  s=socket.socket(socket.AF_UNIX)\n\
                  s.bind(sys.argv[1]); s.listen()\n\
                  print('listening', flush=True)\n\
                  c,_=s.accept(); c.settimeout(10)\n\
                  d=b''\n\
                  try:\n    d=c.recv(100)\nexcept Exception:\n    pass\n\
                  print('got', len(d), flush=True)\n";
    let listener = ChildGuard::spawn(
        "planted listener",
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .uid(NOBODY)
            .gid(NOBODY),
    );
    listener.wait_for_stdout("listening", UP).await;
    // The file looks like root's; the process behind it is nobody's.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    let run = mcpd_tests::ctl_support::run_ctl(&[
        "--socket".into(),
        path.display().to_string(),
        "status".into(),
    ])
    .expect_code(1);
    assert!(
        run.stderr
            .contains("the process listening on it belongs to uid 65534"),
        "{}",
        run.stderr
    );
    // It sent nothing: not even the protocol greeting.
    listener.wait_for_stdout("got 0", UP).await;
}

#[test]
fn mcpd_check_prints_hostile_keys_escaped() {
    let dir = TestDir::new();
    dir.write(
        "mcp/evil.yaml",
        "mcp_servers:\n  evil:\n    binary: mcp-echo\n    \"k\\e]52;c;ZXZpbA==\\a\\u009b2J\\u202e\": 1\n",
    );
    let config = dir.write("mcpd.yaml", "services_dir: mcp\nstate_dir: state\n");
    let out = Command::new(bin("mcpd"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_no_raw_controls("mcpd check stdout", &stdout);
    assert!(
        stdout.contains("k\\x1b]52;c;ZXZpbA==\\x07\\u{9b}2J\\u{202e}"),
        "{stdout}"
    );
}
