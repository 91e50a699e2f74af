//! mcpd-loadgen against a backend that stops answering: a request unanswered within
//! `--request-timeout` fails its connection, which the JSON output counts and stderr names by
//! URL, and the run ends instead of hanging; alone and measured in turns with a backend that
//! answers.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use mcpd_tests::{ChildGuard, bin, hold_port, mcp_url, port_block, start_echo};
use serde_json::Value;

/// A backend on 127.0.0.1 that accepts connections and reads every request, but answers only
/// the session's set-up (`initialize`, `notifications/initialized`), and that only when told
/// to: a request of any other kind is never answered. Stops accepting when dropped.
struct StalledBackend {
    port: u16,
    stop: Arc<AtomicBool>,
    accepter: Option<thread::JoinHandle<()>>,
}

impl StalledBackend {
    fn start(port: u16, answers_set_up: bool) -> StalledBackend {
        let listener = hold_port(port);
        let stop = Arc::new(AtomicBool::new(false));
        let accepter = {
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        thread::spawn(move || serve(stream, answers_set_up));
                    }
                }
            })
        };
        StalledBackend {
            port,
            stop,
            accepter: Some(accepter),
        }
    }
}

impl Drop for StalledBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

/// Reads requests from `stream` until the client closes it, answering the session's set-up
/// when `answers_set_up`, and nothing else.
fn serve(stream: TcpStream, answers_set_up: bool) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(body) = read_request(&mut reader) {
        if !answers_set_up {
            continue;
        }
        let answer = if body.contains(r#""method":"initialize""#) {
            let result = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"stalled","version":"1"}}}"#;
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: stalled\r\n\
                 content-length: {}\r\n\r\n{result}",
                result.len()
            )
        } else if body.contains("notifications/initialized") {
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_owned()
        } else {
            continue;
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The body of the next HTTP/1.1 request on `reader` (read by its content-length), or `None`
/// once the client has closed the connection.
fn read_request(reader: &mut impl BufRead) -> Option<String> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                length = value.trim().parse().ok()?;
            }
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// Runs mcpd-loadgen with `args` and `--request-timeout 1` under a watchdog; returns its exit
/// status, the JSON line it printed and its stderr.
async fn loadgen(args: &[&str]) -> (ExitStatus, Value, String) {
    let loadgen = ChildGuard::spawn_with_watchdog(
        "mcpd-loadgen",
        Command::new(bin("mcpd-loadgen")).args(args).args([
            "--duration",
            "1",
            "--request-timeout",
            "1",
        ]),
        Duration::from_secs(60),
    );
    let status = loadgen.wait_exit(Duration::from_secs(50)).await;
    let stdout = loadgen.stdout();
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON line from loadgen: {stdout}; stderr: {}",
                loadgen.stderr()
            )
        });
    let result = serde_json::from_str(line).expect("loadgen prints JSON");
    (status, result, loadgen.stderr())
}

#[tokio::test]
async fn loadgen_gives_up_on_a_backend_that_never_answers() {
    let port = port_block(1).port(0);
    let _backend = StalledBackend::start(port, false);
    let url = mcp_url(port);
    let (status, result, stderr) = loadgen(&["--url", &url, "--connections", "2"]).await;
    assert!(!status.success(), "{result}; stderr: {stderr}");
    assert_eq!(
        result["failed_connections"], 2,
        "{result}; stderr: {stderr}"
    );
    assert_eq!(result["requests"], 0, "{result}");
    for needle in [
        format!("connection to {url} failed: initialize"),
        "no answer within 1 s (--request-timeout)".to_owned(),
    ] {
        assert!(
            stderr.contains(&needle),
            "{needle:?} not in stderr: {stderr}"
        );
    }
}

#[tokio::test]
async fn loadgen_in_turns_gives_up_on_a_backend_that_stops_answering() {
    let ports = port_block(2);
    let _backend = StalledBackend::start(ports.port(0), true);
    let _echo = start_echo(ports.port(1)).await;
    let (stalled, echo) = (mcp_url(ports.port(0)), mcp_url(ports.port(1)));
    let args = ["--url", &stalled, "--url", &echo, "--connections", "2"];
    let (status, result, stderr) = loadgen(&args).await;
    assert!(!status.success(), "{result}; stderr: {stderr}");
    let targets = result["targets"].as_array().expect("one result per target");
    // The stalled backend's connections opened their sessions and failed on their first call.
    assert_eq!(targets[0]["url"], stalled.as_str(), "{result}");
    assert_eq!(
        targets[0]["failed_connections"], 2,
        "{result}; stderr: {stderr}"
    );
    assert_eq!(targets[0]["requests_total"], 0, "{result}");
    assert!(
        stderr.contains(&format!("connection to {stalled} failed: tools/call")),
        "stderr: {stderr}"
    );
    // The other target was measured all along.
    assert_eq!(
        targets[1]["failed_connections"], 0,
        "{result}; stderr: {stderr}"
    );
    assert!(targets[1]["requests"].as_u64().unwrap_or(0) > 0, "{result}");
}

#[tokio::test]
async fn loadgen_sse_streams_that_get_no_answer_fail_the_run() {
    let port = port_block(1).port(0);
    let _backend = StalledBackend::start(port, true);
    let url = mcp_url(port);
    let (status, result, stderr) = loadgen(&["--url", &url, "--sse-streams", "2"]).await;
    assert_eq!(result["failed_streams"], 2, "{result}; stderr: {stderr}");
    assert_eq!(result["events"], 0, "{result}");
    assert!(
        !status.success(),
        "failed streams fail the run, as failed connections do: {result}; stderr: {stderr}"
    );
}
