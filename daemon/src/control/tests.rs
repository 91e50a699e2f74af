//! Control-server tests over a real socket in a temp dir: handshake, hostile clients,
//! concurrency, socket file lifecycle, and each handler's contract.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use interprocess::local_socket::GenericFilePath;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use mcpd_protocol::codec;
use mcpd_protocol::*;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{BindError, ControlContext, ControlListener, ReloadOutcome, Reloader, serve};
use crate::config::*;
use crate::directory::{ServerEntry, ServerStatus, ToolInfo};
use crate::mcp_client::McpClient;
use crate::supervisor::{
    PlanAction as SupPlanAction, PlannedChange as SupPlannedChange, ReloadPlan, Supervisor,
};

/// Upper bound for anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// The shared test config, with the socket in `run/` (a directory the server creates) and
/// the given socket mode.
fn daemon_config(dir: &Path, mode: u32) -> DaemonConfig {
    let mut daemon = test_builder::daemon_config(dir);
    daemon.control.socket = dir.join("run/mcpd.sock");
    daemon.control.mode = mode;
    daemon
}

/// A server of `daemon` that comes from the package `mcp-echo`.
fn server_config(daemon: &DaemonConfig, name: &str) -> ServerConfig {
    let mut server = test_builder::server_config(daemon, name);
    server.package = Some("mcp-echo".into());
    server
}

fn tool(name: &str) -> ToolInfo {
    ToolInfo {
        description: Some("a tool".into()),
        ..ToolInfo::new(name, &serde_json::json!({"type": "object"}))
    }
}

/// Puts servers `(name, state, tools)` into the supervisor's directory.
fn populate(
    supervisor: &Supervisor,
    daemon: &DaemonConfig,
    servers: &[(&str, crate::directory::ServerState, &[&str])],
) {
    let mut map = BTreeMap::new();
    for (name, state, tools) in servers {
        let mut status = ServerStatus::new(*state);
        status.pid = Some(1234);
        status.port = Some(5001);
        status.started_at = Some(SystemTime::now());
        status.tools = tools.iter().map(|t| tool(t)).collect::<Vec<_>>().into();
        map.insert(
            (*name).to_owned(),
            Arc::new(ServerEntry::new(server_config(daemon, name), status)),
        );
    }
    supervisor.directory().replace(map);
}

/// A control server on a temp socket; shuts down (and is awaited) on `stop`.
struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    ctx: ControlContext,
    daemon: DaemonConfig,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(0o660, |_| {}).await
    }

    async fn start_with(mode: u32, adjust: impl FnOnce(&mut ControlContext)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon_config(dir.path(), mode);
        let supervisor = Supervisor::start(&daemon, Services::default()).unwrap();
        let config = Arc::new(ArcSwap::from_pointee(daemon.clone()));
        let mut ctx = ControlContext::new(supervisor, config, McpClient::new());
        adjust(&mut ctx);
        let listener = ControlListener::bind(&daemon.control).unwrap();
        let path = listener.path().to_owned();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, ctx.clone(), shutdown.clone()));
        Harness {
            dir,
            path,
            ctx,
            daemon,
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("serve ends after shutdown")
                .unwrap();
        }
    }

    async fn connect(&self) -> Stream {
        connect(&self.path).await
    }

    /// A connection that completed the handshake.
    async fn client(&self) -> Stream {
        let mut stream = self.connect().await;
        let welcome = roundtrip(&mut stream, &hello()).await;
        assert!(matches!(welcome, Response::Welcome(_)), "{welcome:?}");
        stream
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn connect(path: &Path) -> Stream {
    let name = path.to_fs_name::<GenericFilePath>().unwrap();
    tokio::time::timeout(WAIT, Stream::connect(name))
        .await
        .unwrap()
        .unwrap()
}

async fn send(stream: &mut Stream, request: &Request) {
    codec::write_message(stream, request).await.unwrap();
}

async fn recv(stream: &mut Stream) -> Option<Response> {
    tokio::time::timeout(WAIT, codec::read_message::<Response, _>(stream))
        .await
        .expect("an answer or a close within the wait limit")
        .unwrap_or(None)
}

async fn roundtrip(stream: &mut Stream, request: &Request) -> Response {
    send(stream, request).await;
    recv(stream).await.expect("a response")
}

fn error_code(response: &Response) -> ErrorCode {
    match response {
        Response::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The client's `Hello` for the protocol this build speaks.
fn hello() -> Request {
    Request::Hello(Hello {
        protocol: PROTOCOL_VERSION,
    })
}

/// Reads the error frame the daemon sends before it ends a connection, checks its code, then
/// that the connection is closed.
async fn expect_error_then_close(stream: &mut Stream, code: ErrorCode) {
    let reply = recv(stream).await.expect("an error frame");
    assert_eq!(error_code(&reply), code);
    assert_eq!(recv(stream).await, None);
}

// ---- handshake ------------------------------------------------------------------------------

#[tokio::test]
async fn handshake_welcomes_the_current_protocol() {
    let mut h = Harness::start().await;
    let mut stream = h.connect().await;
    let reply = roundtrip(&mut stream, &hello()).await;
    assert_eq!(
        reply,
        Response::Welcome(Welcome {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION
        })
    );
    h.stop().await;
}

#[tokio::test]
async fn other_protocol_version_is_incompatible_and_closed() {
    let mut h = Harness::start().await;
    let mut stream = h.connect().await;
    let reply = roundtrip(&mut stream, &Request::Hello(Hello { protocol: 99 })).await;
    assert_eq!(
        reply,
        Response::Incompatible(Incompatible {
            daemon: PROTOCOL_VERSION,
            client: 99,
            daemon_version: env!("CARGO_PKG_VERSION").into()
        })
    );
    assert_eq!(
        recv(&mut stream).await,
        None,
        "the daemon closes after Incompatible"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_request_before_hello_is_refused() {
    let mut h = Harness::start().await;
    let mut stream = h.connect().await;
    let reply = roundtrip(&mut stream, &Request::List(ListRequest {})).await;
    assert_eq!(error_code(&reply), ErrorCode::HandshakeRequired);
    assert_eq!(recv(&mut stream).await, None);
    h.stop().await;
}

#[tokio::test]
async fn a_second_hello_is_an_error_but_the_connection_lives() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    let reply = roundtrip(&mut stream, &hello()).await;
    assert_eq!(error_code(&reply), ErrorCode::InvalidArgument);
    let reply = roundtrip(&mut stream, &Request::List(ListRequest {})).await;
    assert!(matches!(reply, Response::Status(_)));
    h.stop().await;
}

// ---- hostile clients ------------------------------------------------------------------------

/// After a hostile client, a well-behaved one is still served.
async fn assert_still_serving(h: &Harness) {
    let mut stream = h.client().await;
    let reply = roundtrip(&mut stream, &Request::Status(StatusRequest { name: None })).await;
    assert!(matches!(reply, Response::Status(_)), "{reply:?}");
}

#[tokio::test]
async fn random_bytes_get_an_error_frame_then_close() {
    let mut h = Harness::start().await;
    let mut stream = h.connect().await;
    // A plausible length followed by a body whose variant tag names nothing.
    stream
        .write_all(&[0, 0, 0, 6, 0xee, 0x13, 0x37, 0x00, 0xff, 0x42])
        .await
        .unwrap();
    expect_error_then_close(&mut stream, ErrorCode::Malformed).await;
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn garbage_after_the_handshake_gets_an_error_frame() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    stream.write_all(b"\0\0\0\x05hello").await.unwrap();
    expect_error_then_close(&mut stream, ErrorCode::Malformed).await;
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_4gib_length_prefix_is_refused_without_reading_on() {
    let mut h = Harness::start().await;
    let mut stream = h.connect().await;
    stream.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let reply = recv(&mut stream).await.expect("an error frame");
    match &reply {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Malformed);
            assert!(e.message.contains("larger than"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(recv(&mut stream).await, None);
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_truncated_frame_ends_only_that_connection() {
    let mut h = Harness::start().await;
    // A plain Unix stream, to half-close the writing side after a partial frame.
    let mut stream = tokio::net::UnixStream::connect(&h.path).await.unwrap();
    codec::write_message(&mut stream, &hello()).await.unwrap();
    let welcome = codec::read_message::<Response, _>(&mut stream)
        .await
        .unwrap();
    assert!(matches!(welcome, Some(Response::Welcome(_))));
    stream.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
    stream.shutdown().await.unwrap();
    let reply = tokio::time::timeout(WAIT, codec::read_message::<Response, _>(&mut stream))
        .await
        .unwrap();
    // The daemon may manage to send an error frame before it closes; either way it closes.
    if let Ok(Some(reply)) = reply {
        assert_eq!(error_code(&reply), ErrorCode::Malformed);
        let end = tokio::time::timeout(WAIT, codec::read_message::<Response, _>(&mut stream))
            .await
            .unwrap();
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    }
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_request_variant_is_malformed() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    stream.write_all(&[0, 0, 0, 1, 200]).await.unwrap();
    let reply = recv(&mut stream).await.expect("an error frame");
    assert_eq!(error_code(&reply), ErrorCode::Malformed);
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let mut h = Harness::start_with(0o660, |ctx| {
        ctx.limits.handshake_timeout = Duration::from_millis(200);
    })
    .await;
    let mut stream = h.connect().await;
    expect_error_then_close(&mut stream, ErrorCode::Timeout).await;
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn an_idle_client_is_dropped_after_the_idle_timeout() {
    let mut h = Harness::start_with(0o660, |ctx| {
        ctx.limits.idle_timeout = Duration::from_millis(200);
    })
    .await;
    let mut stream = h.client().await;
    expect_error_then_close(&mut stream, ErrorCode::Timeout).await;
    h.stop().await;
}

#[tokio::test]
async fn clients_over_the_limit_are_told_busy() {
    let mut h = Harness::start_with(0o660, |ctx| ctx.limits.max_connections = 1).await;
    let _holder = h.client().await;
    let mut second = h.connect().await;
    let reply = recv(&mut second).await.expect("a busy frame");
    assert_eq!(error_code(&reply), ErrorCode::Busy);
    drop(_holder);
    // Once the first leaves, its slot frees up (the release is asynchronous: retry until then).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut stream = h.connect().await;
        send(&mut stream, &hello()).await;
        match recv(&mut stream).await {
            Some(Response::Welcome(_)) => break,
            _ if tokio::time::Instant::now() < deadline => tokio::task::yield_now().await,
            other => panic!("slot never freed: {other:?}"),
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_each_get_their_answer() {
    let mut h = Harness::start().await;
    let names: Vec<String> = (0..20).map(|i| format!("srv{i:02}")).collect();
    let servers: Vec<(&str, crate::directory::ServerState, &[&str])> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                crate::directory::ServerState::Running,
                &["echo"][..],
            )
        })
        .collect();
    populate(&h.ctx.supervisor, &h.daemon, &servers);

    let mut tasks = Vec::new();
    for i in 0..200 {
        let path = h.path.clone();
        let name = names[i % names.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = connect(&path).await;
            let welcome = roundtrip(&mut stream, &hello()).await;
            assert!(matches!(welcome, Response::Welcome(_)));
            // Several requests on one connection.
            for _ in 0..3 {
                let reply = roundtrip(
                    &mut stream,
                    &Request::Status(StatusRequest {
                        name: Some(name.clone()),
                    }),
                )
                .await;
                let Response::Status(status) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(status.servers.len(), 1);
                assert_eq!(status.servers[0].name, name);
                assert_eq!(status.servers[0].state, ServerState::Running);
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }
    h.stop().await;
}

// ---- socket file ----------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn socket_file_has_the_configured_mode() {
    for mode in [0o600, 0o660, 0o666] {
        let mut h = Harness::start_with(mode, |_| {}).await;
        assert_eq!(mode_of(&h.path), mode, "configured {mode:04o}");
        assert!(
            mode_of(h.path.parent().unwrap()) & 0o022 == 0,
            "parent directory is not group/world-writable"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_config(dir.path(), 0o600);
    std::fs::create_dir_all(daemon.control.socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&daemon.control.socket).unwrap());
    assert!(
        daemon.control.socket.exists(),
        "the stale file is left behind"
    );
    let listener =
        ControlListener::bind(&daemon.control).expect("a stale socket does not block binding");
    let supervisor = Supervisor::start(&daemon, Services::default()).unwrap();
    let ctx = ControlContext::new(
        supervisor,
        Arc::new(ArcSwap::from_pointee(daemon.clone())),
        McpClient::new(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, ctx, shutdown.clone()));
    let mut stream = connect(&daemon.control.socket).await;
    let reply = roundtrip(&mut stream, &hello()).await;
    assert!(matches!(reply, Response::Welcome(_)));
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_second_daemon_on_a_live_socket_is_refused() {
    let mut h = Harness::start().await;
    let err = ControlListener::bind(&h.daemon.control).unwrap_err();
    assert!(matches!(err, BindError::AlreadyRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("another mcpd is already listening on {}", h.path.display())
    );
    // The live daemon keeps its socket and keeps serving.
    assert_still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn the_socket_path_appears_bound_and_listening_with_no_staging_file_left() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_config(dir.path(), 0o600);
    let listener = ControlListener::bind(&daemon.control).expect("bind");
    // Connectable the moment it exists (it was renamed into place after listen)...
    std::os::unix::net::UnixStream::connect(&daemon.control.socket)
        .expect("the socket accepts as soon as its path exists");
    // ...and the staging name it was bound under is gone.
    let names: Vec<String> = std::fs::read_dir(daemon.control.socket.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["mcpd.sock"]);
    drop(listener);
    assert!(!daemon.control.socket.exists(), "removed with its listener");
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_config(dir.path(), 0o600);
    std::fs::create_dir_all(daemon.control.socket.parent().unwrap()).unwrap();
    std::fs::File::create(&daemon.control.socket)
        .unwrap()
        .write_all(b"precious")
        .unwrap();
    let err = ControlListener::bind(&daemon.control).unwrap_err();
    assert!(matches!(err, BindError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&daemon.control.socket).unwrap(), b"precious");
}

#[tokio::test]
async fn the_socket_is_removed_on_shutdown() {
    let mut h = Harness::start().await;
    let mut open = h.client().await;
    assert!(h.path.exists());
    h.stop().await;
    assert!(!h.path.exists(), "socket file removed");
    // An open connection is ended by the shutdown.
    assert_eq!(recv(&mut open).await, None);
}

#[tokio::test]
async fn dropping_an_unserved_listener_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_config(dir.path(), 0o600);
    let listener = ControlListener::bind(&daemon.control).unwrap();
    assert!(daemon.control.socket.exists());
    drop(listener);
    assert!(!daemon.control.socket.exists());
}

// ---- handlers -------------------------------------------------------------------------------

#[tokio::test]
async fn status_list_show_tools_and_packages_reflect_the_directory() {
    use crate::directory::ServerState as S;
    let mut h = Harness::start().await;
    populate(
        &h.ctx.supervisor,
        &h.daemon,
        &[
            ("alpha", S::Running, &["echo", "add"]),
            ("beta", S::Stopped, &[]),
        ],
    );
    let mut stream = h.client().await;

    let Response::Status(all) = roundtrip(&mut stream, &Request::List(ListRequest {})).await else {
        panic!()
    };
    let names: Vec<&str> = all.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(all.servers[0].tools_count, 2);
    assert!(all.servers[0].uptime_ms.is_some());
    assert_eq!(all.servers[1].state, ServerState::Stopped);
    assert_eq!(
        all.servers[1].uptime_ms, None,
        "a stopped server has no uptime"
    );

    let reply = roundtrip(
        &mut stream,
        &Request::Status(StatusRequest {
            name: Some("nope".into()),
        }),
    )
    .await;
    assert_eq!(error_code(&reply), ErrorCode::UnknownServer);

    let Response::Show(show) = roundtrip(
        &mut stream,
        &Request::Show(ShowRequest {
            name: "alpha".into(),
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        show.upstream_url.as_deref(),
        Some("http://127.0.0.1:5001/mcp")
    );
    assert_eq!(show.tools.len(), 2);

    let Response::Tools(tools) = roundtrip(
        &mut stream,
        &Request::Tools(ToolsRequest {
            as_scopes: None,
            name: None,
            schema: false,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(tools.tools.len(), 2);
    assert!(tools.tools.iter().all(|t| t.input_schema_json.is_none()));
    let Response::Tools(tools) = roundtrip(
        &mut stream,
        &Request::Tools(ToolsRequest {
            as_scopes: None,
            name: Some("alpha".into()),
            schema: true,
        }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        tools.tools[0].input_schema_json.as_deref(),
        Some(r#"{"type":"object"}"#)
    );

    let Response::Packages(packages) =
        roundtrip(&mut stream, &Request::ListPackages(ListPackagesRequest {})).await
    else {
        panic!()
    };
    assert_eq!(packages.packages.len(), 2);
    assert_eq!(packages.packages[0].package.as_deref(), Some("mcp-echo"));
    h.stop().await;
}

#[tokio::test]
async fn call_without_a_server_needs_a_unique_tool() {
    use crate::directory::ServerState as S;
    let mut h = Harness::start().await;
    populate(
        &h.ctx.supervisor,
        &h.daemon,
        &[
            ("alpha", S::Running, &["echo"]),
            ("beta", S::Running, &["echo"]),
            ("gamma", S::Stopped, &["sum"]),
        ],
    );
    let mut stream = h.client().await;
    let call = |server: Option<&str>, tool: &str, args: &str| {
        Request::Call(CallRequest {
            server: server.map(str::to_owned),
            tool: tool.into(),
            arguments_json: args.into(),
            timeout_ms: 1000,
        })
    };

    let reply = roundtrip(&mut stream, &call(None, "echo", "{}")).await;
    let Response::Error(e) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("alpha, beta"), "{}", e.message);

    let reply = roundtrip(&mut stream, &call(None, "missing", "{}")).await;
    assert_eq!(error_code(&reply), ErrorCode::InvalidArgument);

    let reply = roundtrip(&mut stream, &call(None, "sum", "{}")).await;
    assert_eq!(
        error_code(&reply),
        ErrorCode::NotRunning,
        "resolved to gamma, which is stopped"
    );

    let reply = roundtrip(&mut stream, &call(Some("alpha"), "echo", "[1]")).await;
    assert_eq!(
        error_code(&reply),
        ErrorCode::InvalidArgument,
        "arguments must be an object"
    );
    let reply = roundtrip(&mut stream, &call(Some("alpha"), "echo", "{nope")).await;
    assert_eq!(error_code(&reply), ErrorCode::InvalidArgument);
    let reply = roundtrip(&mut stream, &call(Some("zeta"), "echo", "{}")).await;
    assert_eq!(error_code(&reply), ErrorCode::UnknownServer);
    h.stop().await;
}

#[tokio::test]
async fn test_of_a_stopped_server_reports_failure_not_an_error() {
    use crate::directory::ServerState as S;
    let mut h = Harness::start().await;
    populate(&h.ctx.supervisor, &h.daemon, &[("alpha", S::Stopped, &[])]);
    let mut stream = h.client().await;
    let reply = roundtrip(
        &mut stream,
        &Request::Test(TestRequest {
            name: "alpha".into(),
        }),
    )
    .await;
    let Response::Test(test) = reply else {
        panic!("{reply:?}")
    };
    assert!(!test.ok);
    assert!(test.error.unwrap().contains("stopped"));
    let reply = roundtrip(
        &mut stream,
        &Request::Test(TestRequest {
            name: "nope".into(),
        }),
    )
    .await;
    assert_eq!(error_code(&reply), ErrorCode::UnknownServer);
    h.stop().await;
}

struct FixedReloader;

impl Reloader for FixedReloader {
    fn reload(&self, dry_run: bool) -> BoxFuture<'_, Result<ReloadOutcome, String>> {
        Box::pin(async move {
            let action = if dry_run {
                SupPlanAction::Restart
            } else {
                SupPlanAction::Start
            };
            Ok(ReloadOutcome {
                plan: ReloadPlan {
                    changes: vec![SupPlannedChange {
                        server: "echo".into(),
                        action,
                        reason: "args changed".into(),
                    }],
                },
                config_errors: vec![ConfigError {
                    file: "mcp/bad.yaml".into(),
                    line: Some(2),
                    column: Some(3),
                    message: "unknown key `enbled`".into(),
                    hint: None,
                }],
            })
        })
    }
}

#[tokio::test]
async fn reload_returns_the_reloaders_plan() {
    let mut h = Harness::start_with(0o660, |ctx| ctx.reloader = Arc::new(FixedReloader)).await;
    let mut stream = h.client().await;
    let reply = roundtrip(
        &mut stream,
        &Request::Reload(ReloadRequest { dry_run: true }),
    )
    .await;
    let Response::Reload(reload) = reply else {
        panic!("{reply:?}")
    };
    assert!(reload.dry_run);
    assert_eq!(reload.changes[0].action, PlanAction::Restart);
    assert_eq!(reload.config_errors[0].line, Some(2));
    h.stop().await;
}

#[tokio::test]
async fn lifecycle_requests_on_unknown_servers_are_errors() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    for request in [
        Request::Start(StartRequest { name: "x".into() }),
        Request::Stop(StopRequest { name: "x".into() }),
        Request::Restart(RestartRequest {
            target: RestartTarget::One("x".into()),
        }),
        Request::Logs(LogsRequest {
            name: "x".into(),
            lines: 10,
            follow: false,
        }),
        Request::Logs(LogsRequest {
            name: "x".into(),
            lines: 10,
            follow: true,
        }),
    ] {
        let reply = roundtrip(&mut stream, &request).await;
        assert_eq!(error_code(&reply), ErrorCode::UnknownServer, "{request:?}");
    }
    let reply = roundtrip(
        &mut stream,
        &Request::Restart(RestartRequest {
            target: RestartTarget::All,
        }),
    )
    .await;
    assert!(
        matches!(reply, Response::Actions(ref a) if a.outcomes.is_empty()),
        "{reply:?}"
    );
    h.stop().await;
}

#[derive(serde::Deserialize)]
struct MintedClaims {
    sub: String,
    aud: String,
    scope: String,
    exp: u64,
    iat: u64,
    iss: Option<String>,
    client_id: String,
}

#[tokio::test]
async fn token_is_signed_with_the_configured_hs256_secret() {
    let mut h = Harness::start().await;
    let mut stream = h.client().await;
    let request = Request::Token(TokenRequest {
        scopes: vec!["admin".into(), "read".into()],
        audience: None,
        ttl_secs: 3600,
        subject: Some("ops".into()),
    });
    let reply = roundtrip(&mut stream, &request).await;
    assert_eq!(
        error_code(&reply),
        ErrorCode::NotConfigured,
        "no key configured yet"
    );

    let secret_file = h.dir.path().join("jwt.secret");
    std::fs::write(&secret_file, "s3cret-s3cret-s3cret-s3cret-0123\n").unwrap();
    let mut daemon = h.daemon.clone();
    daemon.auth.keys = vec![KeySource::Hs256SecretFile(secret_file)];
    daemon.auth.issuer = Some("https://auth.example.com".into());
    h.ctx.config.store(Arc::new(daemon));

    let Response::Token(minted) = roundtrip(&mut stream, &request).await else {
        panic!()
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["mcp"]);
    validation.set_issuer(&["https://auth.example.com"]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let key = jsonwebtoken::DecodingKey::from_secret(b"s3cret-s3cret-s3cret-s3cret-0123");
    let claims = jsonwebtoken::decode::<MintedClaims>(&minted.token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, "ops");
    assert_eq!(claims.aud, "mcp");
    assert_eq!(claims.scope, "admin read");
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(claims.exp, minted.expires_at_unix);
    assert_eq!(claims.iss.as_deref(), Some("https://auth.example.com"));
    assert_eq!(claims.client_id, "mcpctl");

    let zero_ttl = Request::Token(TokenRequest {
        scopes: vec!["a".into()],
        audience: None,
        ttl_secs: 0,
        subject: None,
    });
    assert_eq!(
        error_code(&roundtrip(&mut stream, &zero_ttl).await),
        ErrorCode::InvalidArgument
    );
    let no_scope = Request::Token(TokenRequest {
        scopes: vec![],
        audience: None,
        ttl_secs: 60,
        subject: None,
    });
    assert_eq!(
        error_code(&roundtrip(&mut stream, &no_scope).await),
        ErrorCode::InvalidArgument
    );
    h.stop().await;
}

mod access;
mod audit;
