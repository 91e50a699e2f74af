//! Tests of the real `mcpctl` binary: exit codes, messages, socket resolution, and output
//! against a scripted protocol peer on a real Unix socket.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mcpd_protocol::codec;
use mcpd_protocol::*;

/// Longest a single mcpctl run may take before the watchdog kills it and fails the test.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs mcpctl with a clean environment (plus `env`), killing it if it hangs.
fn mcpctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcpctl"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "MCPD_SOCKET",
        "MCPD_CONFIG",
        "RUNTIME_DIRECTORY",
        "XDG_RUNTIME_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let child = cmd.spawn().expect("mcpctl starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) with a pid we spawned and have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("mcpctl {args:?} did not finish within {WATCHDOG:?}");
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn unreachable_message(path: &Path) -> String {
    format!(
        "cannot connect to mcpd: is mcpd running? socket: {}\n",
        path.display()
    )
}

#[test]
fn no_daemon_exits_3_with_the_exact_message() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mcpd.sock");
    let output = mcpctl(&["--socket", socket.to_str().unwrap(), "status"], &[]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), unreachable_message(&socket));
    assert_eq!(stdout(&output), "");
}

#[test]
fn a_stale_socket_file_is_unreachable_too() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mcpd.sock");
    drop(UnixListener::bind(&socket).unwrap());
    let output = mcpctl(&["--socket", socket.to_str().unwrap(), "list"], &[]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), unreachable_message(&socket));
}

#[test]
fn socket_comes_from_mcpd_socket_then_config_then_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let via_env = dir.path().join("env.sock");
    let output = mcpctl(&["list"], &[("MCPD_SOCKET", via_env.to_str().unwrap())]);
    assert_eq!(stderr(&output), unreachable_message(&via_env));

    let config = dir.path().join("mcpd.yaml");
    std::fs::write(
        &config,
        "control:\n  socket: run/ctl.sock\n  mode: \"0660\"\nport_range: 5000-5999\n",
    )
    .unwrap();
    let output = mcpctl(&["--config", config.to_str().unwrap(), "list"], &[]);
    assert_eq!(
        stderr(&output),
        unreachable_message(&dir.path().join("run/ctl.sock"))
    );
    let output = mcpctl(&["list"], &[("MCPD_CONFIG", config.to_str().unwrap())]);
    assert_eq!(
        stderr(&output),
        unreachable_message(&dir.path().join("run/ctl.sock"))
    );

    let runtime = dir.path().join("runtime");
    let output = mcpctl(&["list"], &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())]);
    if !Path::new(mcpctl::socket::SYSTEM_CONFIG).exists() {
        assert_eq!(
            stderr(&output),
            unreachable_message(&runtime.join("mcpd.sock"))
        );
    }
}

#[test]
fn json_errors_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let output = mcpctl(
        &["--json", "--socket", socket.to_str().unwrap(), "status"],
        &[],
    );
    assert_eq!(output.status.code(), Some(3));
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(value["error"]["code"], "unreachable");
    assert_eq!(
        value["error"]["message"],
        unreachable_message(&socket).trim_end()
    );
}

#[test]
fn a_broken_config_file_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let output = mcpctl(&["--config", missing.to_str().unwrap(), "list"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read the daemon config"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(mcpctl(&["frobnicate"], &[]).status.code(), Some(2));
    assert_eq!(mcpctl(&["restart"], &[]).status.code(), Some(2));
    assert_eq!(mcpctl(&["token"], &[]).status.code(), Some(2));
    assert_eq!(
        mcpctl(&["logs", "x", "-n", "many"], &[]).status.code(),
        Some(2)
    );
}

#[test]
fn bad_call_arguments_are_usage_errors_even_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    for (args, message) in [
        ("{nope", "--args is not valid JSON"),
        ("[1]", "must be a JSON object"),
    ] {
        let output = mcpctl(
            &[
                "--socket",
                socket.to_str().unwrap(),
                "call",
                "echo",
                "--args",
                args,
            ],
            &[],
        );
        assert_eq!(output.status.code(), Some(2), "{args}");
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

#[test]
fn completions_and_man_page_need_no_daemon() {
    let output = mcpctl(&["completions", "bash"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("mcpctl"));
    let output = mcpctl(&["man"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains(".TH"), "roff output");
}

// ---- against a scripted peer ------------------------------------------------------------

/// A one-connection protocol peer: answers `Hello` with `Welcome`, then each request with
/// `answer(request)` until it returns `None`. Joining returns the requests it saw.
struct ScriptedPeer;

impl ScriptedPeer {
    fn start<F>(answer: F) -> (std::path::PathBuf, std::thread::JoinHandle<Vec<Request>>)
    where
        F: Fn(&Request) -> Option<Response> + Send + 'static,
    {
        Self::start_with_welcome(
            Response::Welcome(Welcome {
                daemon_version: "9.9.9".into(),
                protocol: PROTOCOL_VERSION,
            }),
            answer,
        )
    }

    fn start_with_welcome<F>(
        welcome: Response,
        answer: F,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<Vec<Request>>)
    where
        F: Fn(&Request) -> Option<Response> + Send + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("peer.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let handle = std::thread::spawn(move || {
            let _dir = dir;
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WATCHDOG)).unwrap();
            let mut seen = Vec::new();
            let Some(Request::Hello(_)) = read(&mut stream) else {
                return seen;
            };
            write(&mut stream, &welcome);
            while let Some(request) = read(&mut stream) {
                let reply = answer(&request);
                seen.push(request);
                match reply {
                    Some(reply) => write(&mut stream, &reply),
                    None => break,
                }
            }
            seen
        });
        (socket, handle)
    }
}

fn read(stream: &mut UnixStream) -> Option<Request> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).ok()?;
    codec::decode_body(&body).ok()
}

fn write(stream: &mut UnixStream, response: &Response) {
    let _ = stream.write_all(&codec::encode_frame(response).unwrap());
}

fn server(name: &str, state: ServerState, last_error: Option<&str>) -> ServerInfo {
    ServerInfo {
        name: name.into(),
        state,
        enabled: true,
        description: format!("{name} server"),
        pid: (state == ServerState::Running).then_some(4242),
        port: Some(5010),
        since_unix_ms: 0,
        uptime_ms: (state == ServerState::Running).then_some(3_723_000),
        restarts: 1,
        tools_count: 2,
        last_exit: None,
        last_error: last_error.map(str::to_owned),
        usage: (state == ServerState::Running).then_some(ServerUsage {
            memory_bytes: 64 << 20,
            memory_peak_bytes: None,
            cpu_time_ms: 1_000,
            cpu_percent_hundredths: Some(1_234),
            tasks: 3,
            oom_kills: 0,
            from_cgroup: false,
        }),
        session_pids: Vec::new(),
        members: None,
    }
}

#[test]
fn status_prints_an_aligned_table_and_config_errors() {
    let (socket, peer) = ScriptedPeer::start(|_| {
        Some(Response::Status(StatusReply {
            servers: vec![
                server("echo", ServerState::Running, None),
                server("weather-api", ServerState::Failed, Some("exit code 1")),
            ],
            config_errors: vec![ConfigErrorInfo {
                file: "/etc/mcpd/mcp/bad.yaml".into(),
                line: Some(4),
                column: Some(5),
                message: "unknown key `enbled`".into(),
                hint: Some("did you mean `enabled`?".into()),
            }],
            conflicts: vec![],
        }))
    });
    let output = mcpctl(&["--socket", socket.to_str().unwrap(), "status"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "NAME         STATE    PID   PORT  UPTIME  CPU%  MEM    RESTARTS  TOOLS  LAST-ERROR\n\
         echo         running  4242  5010  1h2m    12.3  64.0M  1         2\n\
         weather-api  failed   -     5010  -       -     -      1         2      exit code 1\n\
         \n\
         configuration errors (these files keep their previous servers):\n\
         /etc/mcpd/mcp/bad.yaml:4:5: unknown key `enbled`\n  hint: did you mean `enabled`?\n"
    );
    assert_eq!(
        peer.join().unwrap(),
        [Request::Status(StatusRequest { name: None })]
    );
}

#[test]
fn status_json_is_the_documented_shape() {
    let (socket, _peer) = ScriptedPeer::start(|_| {
        Some(Response::Status(StatusReply {
            servers: vec![server("echo", ServerState::Running, None)],
            config_errors: vec![],
            conflicts: vec![],
        }))
    });
    let output = mcpctl(
        &[
            "--json",
            "--socket",
            socket.to_str().unwrap(),
            "status",
            "echo",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(value["servers"][0]["name"], "echo");
    assert_eq!(value["servers"][0]["state"], "running");
    assert_eq!(value["servers"][0]["uptime_ms"], 3_723_000);
    assert!(value["config_errors"].as_array().unwrap().is_empty());
}

#[test]
fn daemon_errors_exit_1_with_the_daemons_message() {
    let (socket, _peer) = ScriptedPeer::start(|_| {
        Some(Response::Error(ErrorReply {
            code: ErrorCode::UnknownServer,
            message: "no server named \"x\"".into(),
        }))
    });
    let output = mcpctl(&["--socket", socket.to_str().unwrap(), "show", "x"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "no server named \"x\"\n");
}

#[test]
fn an_incompatible_daemon_is_explained() {
    let incompatible = Response::Incompatible(Incompatible {
        daemon: 7,
        client: PROTOCOL_VERSION,
        daemon_version: "3.0.0".into(),
    });
    let (socket, _peer) = ScriptedPeer::start_with_welcome(incompatible, |_| None);
    let output = mcpctl(&["--socket", socket.to_str().unwrap(), "list"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("mcpd 3.0.0 speaks control protocol 7"),
        "{message}"
    );
    assert!(
        message.contains(&format!("this mcpctl speaks {PROTOCOL_VERSION}")),
        "{message}"
    );
}

#[test]
fn call_resolves_arguments_and_reports_tool_errors() {
    let (socket, peer) = ScriptedPeer::start(|request| {
        let Request::Call(call) = request else {
            return None;
        };
        let is_error = call.tool == "fail";
        Some(Response::Call(CallReply {
            server: "echo".into(),
            tool: call.tool.clone(),
            result_json: serde_json::json!({"content": [{"type": "text", "text": "hi there"}], "isError": is_error})
                .to_string(),
        }))
    });
    let output = mcpctl(
        &[
            "--socket",
            socket.to_str().unwrap(),
            "call",
            "say",
            "--args",
            r#"{"text":"hi"}"#,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hi there\n");
    let seen = peer.join().unwrap();
    let Request::Call(call) = &seen[0] else {
        panic!()
    };
    assert_eq!(call.server, None);
    assert_eq!(call.arguments_json, r#"{"text":"hi"}"#);
    assert_eq!(call.timeout_ms, 60_000);

    let (socket, _peer) = ScriptedPeer::start(|request| {
        let Request::Call(call) = request else {
            return None;
        };
        Some(Response::Call(CallReply {
            server: "echo".into(),
            tool: call.tool.clone(),
            result_json: r#"{"content":[],"isError":true}"#.into(),
        }))
    });
    let output = mcpctl(
        &[
            "--json",
            "--socket",
            socket.to_str().unwrap(),
            "call",
            "echo",
            "fail",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(value["result"]["isError"], true);
}
