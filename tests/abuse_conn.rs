//! Resource exhaustion at the gateway, against the real `mcpd`: connections that open and
//! stall (one byte, half an h2 preface, a preface plus SETTINGS), floods up to the connection
//! caps, h2c streams past the stream cap, stalled request bodies and requests over the
//! upstream cap. Deadlines are made short in mcpd.yaml; the attacker is bounded in count and
//! aims at 127.0.0.x only. Results are summarised in tests/RELIABILITY.md.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use mcpd_tests::rel_support::{Daemon, PATIENCE, Setup, raw_request, status_code, wait_closed};
use mcpd_tests::{bin, lazy, wait_for_sync};

/// An MCP `initialize`: the normal request a client makes first.
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"abuse","version":"1"}}}"#;

/// A daemon with the server `echo`, and `gateway_limits` added to its `gateway:` block.
fn daemon(gateway_limits: &str) -> (Setup, Daemon, u32) {
    let mut setup = Setup::new();
    setup.write_server("echo", "echo", &bin("mcp-echo"), &[]);
    setup.gateway_keys = gateway_limits.to_owned();
    setup.write_config();
    let daemon = setup.start();
    let (echo_pid, _) = setup.wait_running("echo");
    // One request first, so the upstream connection it leaves idle is in the baseline.
    let answer = raw_request(setup.gateway_port, &init_request()).expect("an answer");
    assert_eq!(status_code(&answer), 200, "{answer}");
    (setup, daemon, echo_pid)
}

/// Descriptors the daemon may hold besides the baseline's without a leak: an idle upstream
/// connection per worker, and the liveness probe's kept connection, which the baseline may
/// have been counted without (a probe that timed out under load drops it and connects again;
/// the probe runs every 200 ms here).
const IDLE_SLACK: usize = 3;

fn init_request() -> String {
    format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
        INIT.len()
    )
}

/// A POST to `echo` that declares a body it never finishes sending.
fn stalled_post(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
                Content-Length: 500\r\n\r\n{\"jsonrpc\":";
    stream.write_all(head.as_bytes()).expect("write head");
    stream
}

/// A connection to the gateway from the loopback address `source` (any of 127/8).
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let address = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket is owned at once; bind and connect read the address passed.
    unsafe {
        let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(raw);
        let local = address(source, 0);
        let bound = libc::bind(raw, (&raw const local).cast(), len);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let remote = address(Ipv4Addr::LOCALHOST, port);
        let connected = libc::connect(raw, (&raw const remote).cast(), len);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from(fd)
    }
}

/// True when the server has closed `stream` (checked without waiting).
fn closed_now(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    let closed = loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

fn fd_count(pid: u32) -> usize {
    // The usage sampler keeps each server process's `/proc/<pid>/stat` open from its first
    // pass, every 5 s, which may come after the baseline: those files are not the gateway's.
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|entry| {
                    !std::fs::read_link(entry.path())
                        .is_ok_and(|target| target.starts_with("/proc"))
                })
                .count()
        })
        .unwrap_or(usize::MAX)
}

/// What the daemon's descriptors point at, with the TCP connections' ports, for a failure's
/// message.
fn fd_targets(pid: u32) -> String {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .map(|target| target.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let sockets: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|line| {
            targets
                .iter()
                .any(|t| line.contains(&format!(" {} ", socket_inode(t))))
        })
        .collect();
    format!("{targets:?}; tcp: {sockets:#?}")
}

/// The inode of a `socket:[N]` link target (empty for anything else).
fn socket_inode(target: &str) -> &str {
    target
        .strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or("-")
}

/// Waits until the daemon holds no more descriptors than `baseline`.
fn wait_fds_back(pid: u32, baseline: usize) {
    wait_for_sync(
        PATIENCE,
        lazy(|| {
            format!(
                "the daemon's descriptors back to {baseline}; now {}: {}",
                fd_count(pid),
                fd_targets(pid)
            )
        }),
        || fd_count(pid) <= baseline,
    );
}

fn assert_status_answers(setup: &Setup) {
    let (code, _, stderr) = setup.mcpctl(&["status"]);
    assert_eq!(
        code, 0,
        "mcpctl status while the gateway is flooded: {stderr}"
    );
}

fn assert_not_restarted(setup: &Setup, echo_pid: u32) {
    let (pid, _) = setup.wait_running("echo");
    assert_eq!(pid, echo_pid, "echo was restarted");
}

/// The client preface of HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn connections_that_stall_before_a_request_are_closed_at_the_deadline() {
    let (setup, daemon, echo_pid) = daemon("header_timeout: 1s, idle_timeout: 2s");
    let baseline = fd_count(daemon.pid());
    let port = setup.gateway_port;
    let mut preface_and_settings = H2_PREFACE.to_vec();
    preface_and_settings.extend(h2_frame(4, 0, 0, &[]));
    let openings: [(&str, &[u8]); 5] = [
        ("one byte P", b"P"),
        ("half an h2 preface", &H2_PREFACE[..10]),
        ("an h2 preface plus SETTINGS", &preface_and_settings),
        (
            "half an HTTP/1.1 head",
            b"GET /healthz HTTP/1.1\r\nHost: loc",
        ),
        ("nothing", b""),
    ];
    let mut held = Vec::new();
    for (what, bytes) in openings {
        for _ in 0..20 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.write_all(bytes).expect("write");
            held.push((what, stream));
        }
    }
    assert_status_answers(&setup);
    assert_eq!(
        status_code(&raw_request(port, &init_request()).expect("an answer")),
        200
    );
    for (what, stream) in &mut held {
        wait_closed(stream, what);
    }
    assert_not_restarted(&setup, echo_pid);
    drop(held);
    wait_fds_back(daemon.pid(), baseline + IDLE_SLACK);
}

#[test]
fn an_idle_h2c_connection_is_closed_after_the_idle_timeout() {
    let (setup, _daemon, _) = daemon("header_timeout: 1s, idle_timeout: 1s");
    let mut stream = TcpStream::connect(("127.0.0.1", setup.gateway_port)).expect("connect");
    let mut opening = H2_PREFACE.to_vec();
    opening.extend(h2_frame(4, 0, 0, &[]));
    opening.extend(h2_frame(4, 1, 0, &[]));
    // One complete request (GET /healthz, END_STREAM), then nothing.
    opening.extend(h2_frame(1, 0x5, 1, &healthz_headers()));
    stream.write_all(&opening).expect("write");
    let answer = wait_closed(&mut stream, "an idle h2c connection");
    // A HEADERS frame (type 1) on stream 1 came back before the close.
    assert!(
        frames(&answer)
            .iter()
            .any(|&(kind, _, id, _)| kind == 1 && id == 1),
        "no response on stream 1: {answer:?}"
    );
}

/// HPACK for GET http://localhost/healthz: indexed :method GET, :scheme http, literal
/// :path and :authority (no Huffman).
fn healthz_headers() -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    block.extend(literal(4, "/healthz"));
    block.extend(literal(1, "localhost"));
    block
}

fn post_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x86];
    block.extend(literal(4, "/api/v1/mcp/echo/mcp"));
    block.extend(literal(1, "localhost"));
    block
}

/// A literal header field without indexing, name from the static table at `index`.
fn literal(index: u8, value: &str) -> Vec<u8> {
    let mut field = vec![index, u8::try_from(value.len()).unwrap()];
    field.extend_from_slice(value.as_bytes());
    field
}

/// The frames in `bytes`: (type, flags, stream, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        let id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        frames.push((rest[3], rest[4], id, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

#[test]
fn h2c_streams_past_the_cap_are_refused_and_stalled_ones_end() {
    let (setup, daemon, echo_pid) =
        daemon("header_timeout: 2s, idle_timeout: 1s, max_streams: 4, body_idle_timeout: 1s");
    let baseline = fd_count(daemon.pid());
    let mut stream = TcpStream::connect(("127.0.0.1", setup.gateway_port)).expect("connect");
    let mut opening = H2_PREFACE.to_vec();
    opening.extend(h2_frame(4, 0, 0, &[]));
    opening.extend(h2_frame(4, 1, 0, &[]));
    stream.write_all(&opening).expect("write");
    // Twelve POSTs whose bodies never come (no END_STREAM).
    let mut requests = Vec::new();
    for i in 0..12u32 {
        requests.extend(h2_frame(1, 0x4, 2 * i + 1, &post_headers()));
    }
    stream.write_all(&requests).expect("write requests");
    let answer = wait_closed(&mut stream, "an h2c connection with stalled streams");
    let refused = frames(&answer)
        .into_iter()
        .filter(|(kind, _, _, payload)| *kind == 3 && payload[..] == [0, 0, 0, 7])
        .count();
    assert!(
        refused >= 8,
        "streams past max_streams were not refused: {refused}"
    );
    assert_not_restarted(&setup, echo_pid);
    drop(stream);
    wait_fds_back(daemon.pid(), baseline + IDLE_SLACK);
}

/// A 2026-07-28 `tools/call` of mcp-echo's `sleep` for `ms`: it holds an upstream connection
/// that long.
fn sleep_request(ms: u64) -> String {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"sleep","arguments":{{"ms":{ms}}},"_meta":{{"io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"abuse","version":"0"}},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    );
    format!(
        "POST /api/v1/mcp/echo/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: sleep\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` on a thread and reads the answer to its end.
fn in_flight(port: u16, request: String) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(PATIENCE));
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[test]
fn a_stalled_request_body_holds_no_upstream_connection_and_the_cap_answers_503() {
    let (setup, daemon, echo_pid) =
        daemon("body_idle_timeout: 3s, max_upstream_per_server: 2, upstream_wait: 200ms");
    let port = setup.gateway_port;
    let baseline = fd_count(daemon.pid());
    // A body is read whole before anything goes upstream: two stalled bodies take none of the
    // two upstream connections, so the server still answers.
    let mut stalled = vec![stalled_post(port), stalled_post(port)];
    wait_for_sync(PATIENCE, "an answer while two bodies stall", || {
        raw_request(port, &init_request()).is_some_and(|answer| status_code(&answer) == 200)
    });
    // Two slow calls hold both connections; the next request waits, then gets 503.
    let mut holders = vec![
        in_flight(port, sleep_request(4000)),
        in_flight(port, sleep_request(4000)),
    ];
    let mut refusal = String::new();
    wait_for_sync(PATIENCE, "a 503 at the upstream cap", || {
        // On a loaded machine a slow call may end before a probe finds the cap full: start
        // another in its place.
        for holder in &mut holders {
            if holder.is_finished() {
                *holder = in_flight(port, sleep_request(4000));
            }
        }
        let answer = raw_request(port, &init_request()).unwrap_or_default();
        let busy = answer.starts_with("HTTP/1.1 503");
        if busy {
            refusal = answer;
        }
        busy
    });
    assert!(
        refusal.to_ascii_lowercase().contains("retry-after:"),
        "{refusal}"
    );
    for holder in holders {
        let answer = holder.join().expect("holder thread");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // The stalled bodies are cut by body_idle_timeout, answered 400 or closed.
    for stream in &mut stalled {
        let answer = wait_closed(stream, "a request with a stalled body");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
    }
    wait_for_sync(PATIENCE, "echo answers again", || {
        raw_request(port, &init_request()).is_some_and(|answer| status_code(&answer) == 200)
    });
    assert_not_restarted(&setup, echo_pid);
    drop(stalled);
    wait_fds_back(daemon.pid(), baseline + IDLE_SLACK);
}

#[test]
fn connection_caps_refuse_the_excess_and_the_daemon_keeps_serving() {
    let (setup, daemon, echo_pid) =
        daemon("header_timeout: 60s, max_connections: 30, max_connections_per_peer: 10");
    let port = setup.gateway_port;
    let baseline = fd_count(daemon.pid());
    // One peer over its share: 10 held, 5 refused at once.
    let peer_two: Vec<TcpStream> = (0..15)
        .map(|_| {
            let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), port);
            stream.write_all(b"P").expect("write");
            stream
        })
        .collect();
    wait_for_sync(
        PATIENCE,
        "5 of 15 connections from one peer refused",
        || peer_two.iter().filter(|stream| closed_now(stream)).count() >= 5,
    );
    let refused = peer_two.iter().filter(|stream| closed_now(stream)).count();
    assert_eq!(refused, 5, "per-peer cap of 10 out of 15");
    // Another peer is still served.
    assert_eq!(
        status_code(&raw_request(port, &init_request()).expect("an answer")),
        200
    );
    // Two more peers fill the total cap of 30.
    let peer = |i: usize| Ipv4Addr::new(127, 0, 0, if i < 10 { 3 } else { 4 });
    let mut others: Vec<TcpStream> = (0..20).map(|i| connect_from(peer(i), port)).collect();
    wait_for_sync(
        PATIENCE,
        "a new connection refused at the total cap",
        || {
            // The gateway's workers admit connections in parallel: a probe below may be admitted
            // before the last of `others`, which is then the one refused. Fill such a gap again,
            // so the cap is full when the next probe comes.
            for (i, stream) in others.iter_mut().enumerate() {
                if closed_now(stream) {
                    *stream = connect_from(peer(i), port);
                }
            }
            match raw_request(port, &init_request()) {
                None => true,
                Some(answer) => status_code(&answer) == 503,
            }
        },
    );
    assert_status_answers(&setup);
    assert_not_restarted(&setup, echo_pid);
    drop(peer_two);
    drop(others);
    wait_for_sync(PATIENCE, "the gateway serves again", || {
        raw_request(port, &init_request()).is_some_and(|answer| status_code(&answer) == 200)
    });
    wait_fds_back(daemon.pid(), baseline + IDLE_SLACK);
}

/// HPACK for the headers of a JSON POST to `echo` (content-type and accept as literals).
fn json_post_headers() -> Vec<u8> {
    let mut block = post_headers();
    for (name, value) in [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ] {
        block.extend([0, u8::try_from(name.len()).unwrap()]);
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

#[test]
fn an_h2c_stream_without_window_is_cut_even_while_another_stream_moves() {
    let (setup, daemon, echo_pid) = daemon("header_timeout: 2s, body_idle_timeout: 1s");
    let baseline = fd_count(daemon.pid());
    let mut stream = TcpStream::connect(("127.0.0.1", setup.gateway_port)).expect("connect");
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the gateway may send no response data.
    let mut opening = H2_PREFACE.to_vec();
    opening.extend(h2_frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    opening.extend(h2_frame(4, 1, 0, &[]));
    // Stream 1: a complete `initialize`, whose answer can never be sent.
    opening.extend(h2_frame(1, 0x4, 1, &json_post_headers()));
    opening.extend(h2_frame(0, 0x1, 1, INIT.as_bytes()));
    // Stream 3: a body that keeps moving, one byte at a time, and never ends.
    opening.extend(h2_frame(1, 0x4, 3, &json_post_headers()));
    stream.write_all(&opening).expect("write");
    let mut writer = stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        let limit = Instant::now() + PATIENCE * 2;
        while Instant::now() < limit {
            if writer.write_all(&h2_frame(0, 0, 3, b" ")).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    wait_closed(
        &mut stream,
        "an h2c connection with a stream without window",
    );
    trickle.join().expect("the trickle thread");
    assert_not_restarted(&setup, echo_pid);
    drop(stream);
    wait_fds_back(daemon.pid(), baseline + IDLE_SLACK);
}
