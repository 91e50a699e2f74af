//! `mcp-echo`: an example MCP server for mcpd, and a template to copy.
//!
//! It serves MCP streamable HTTP on `127.0.0.1:$MCP_PORT` (else `$PORT`) at `/mcp`, prints one
//! line to stdout when it listens and one per tool call, logs to stderr (`RUST_LOG`, default
//! `info,rmcp=warn`: rmcp's per-session info lines would otherwise fill the supervisor's log
//! with three lines per health probe), and exits 0 after a graceful shutdown on SIGTERM or SIGINT.
//!
//! For tests, two variables make it act like other servers: `MCP_ECHO_SESSION_ONLY=1` serves
//! only the session-based protocol generation (no `server/discover`), and
//! `MCP_ECHO_IDLE_TIMEOUT_MS=N` closes keep-alive connections idle for N ms.
//! `MCP_ECHO_REFLECT_HEADERS=1` answers `/mcp?reflect-headers` with the request headers as JSON.
//! `MCP_ECHO_SESSION_IDLE_MS=N` forgets a session idle for N ms (its next request gets 404).
//! `MCP_ECHO_EXTRA_TOOLS=a,b` adds tools named `a` and `b` that act like `echo` (tests of tool
//! names chosen by a server). `MCP_ECHO_ASK=1` adds `ask`, which asks the client's model.
//! `MCP_ECHO_SUBSCRIBE=1` takes resource subscriptions and adds `touch`, which tells the
//! subscribers that a resource changed. `MCP_ECHO_STATELESS_ONLY=1` serves only 2026-07-28
//! (`initialize` refused). `MCP_ECHO_TOOL_CHANGES=1` adds `toggle_late`, which adds or
//! removes the tool `late` and sends `notifications/tools/list_changed`.
//!
//! With the argument `--stdio` it speaks MCP over stdin/stdout instead (newline-delimited JSON-RPC, one
//! client, no port), logs and announces tool calls on stderr, and exits 0 when stdin closes.
//!
//! Exit codes: 0 after shutdown, 1 if it cannot listen, 2 if the port or an option is invalid.

mod ask;
mod changes;
mod content;
mod server;
mod subscribe;
mod tools;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// True when serving over stdio (`--stdio`): stdout then belongs to the protocol.
pub(crate) static STDIO: AtomicBool = AtomicBool::new(false);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        )
        .init();

    // Other arguments are ignored, as they always were: example configurations pass some.
    if std::env::args().skip(1).any(|arg| arg == "--stdio") {
        STDIO.store(true, Ordering::Relaxed);
        return server::serve_stdio().await;
    }

    let port = match port_from_env() {
        Ok(port) => port,
        Err(message) => {
            eprintln!("mcp-echo: {message}");
            return ExitCode::from(2);
        }
    };
    let options = match options_from_env() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("mcp-echo: {message}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match listen(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("mcp-echo: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };

    let shutdown = CancellationToken::new();
    let signals = match listen_for_signals(shutdown.clone()) {
        Ok(task) => task,
        Err(error) => {
            eprintln!("mcp-echo: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };

    println!("mcp-echo listening on http://{addr}{}", server::MCP_PATH);
    server::serve(listener, options, shutdown).await;
    signals.abort();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Reads the port from `MCP_PORT`, else `PORT` (both set by mcpd; `PORT` suits other hosts).
fn port_from_env() -> Result<u16, String> {
    let (name, value) = ["MCP_PORT", "PORT"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|value| (name, value)))
        .ok_or("set MCP_PORT (or PORT) to the port to listen on, e.g. MCP_PORT=5000")?;
    match value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "{name}={value:?} is not a port; use a number from 1 to 65535"
        )),
    }
}

/// Reads `MCP_ECHO_SESSION_ONLY`, `MCP_ECHO_IDLE_TIMEOUT_MS` and `MCP_ECHO_REFLECT_HEADERS`.
fn options_from_env() -> Result<server::Options, String> {
    let session_only = match std::env::var("MCP_ECHO_SESSION_ONLY").as_deref() {
        Err(_) | Ok("" | "0") => false,
        Ok("1") => true,
        Ok(other) => return Err(format!("MCP_ECHO_SESSION_ONLY={other:?}: use 1 or 0")),
    };
    let stateless_only = match std::env::var("MCP_ECHO_STATELESS_ONLY").as_deref() {
        Err(_) | Ok("" | "0") => false,
        Ok("1") if session_only => {
            return Err(
                "MCP_ECHO_STATELESS_ONLY=1 and MCP_ECHO_SESSION_ONLY=1 exclude each other".into(),
            );
        }
        Ok("1") => true,
        Ok(other) => return Err(format!("MCP_ECHO_STATELESS_ONLY={other:?}: use 1 or 0")),
    };
    let idle_timeout = match std::env::var("MCP_ECHO_IDLE_TIMEOUT_MS") {
        Err(_) => None,
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Some(std::time::Duration::from_millis(ms)),
            _ => {
                return Err(format!(
                    "MCP_ECHO_IDLE_TIMEOUT_MS={value:?} is not a positive number of milliseconds"
                ));
            }
        },
    };
    let session_idle = match std::env::var("MCP_ECHO_SESSION_IDLE_MS") {
        Err(_) => None,
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Some(std::time::Duration::from_millis(ms)),
            _ => {
                return Err(format!(
                    "MCP_ECHO_SESSION_IDLE_MS={value:?} is not a positive number of milliseconds"
                ));
            }
        },
    };
    let extra_tools: Vec<String> = std::env::var("MCP_ECHO_EXTRA_TOOLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(server::Options {
        session_only,
        idle_timeout,
        reflect_headers: std::env::var("MCP_ECHO_REFLECT_HEADERS").as_deref() == Ok("1"),
        // Read once at start and kept for the process's life.
        extra_tools: Vec::leak(extra_tools),
        session_idle,
        content: content::Content {
            label: String::leak(
                std::env::var("MCP_ECHO_LABEL").unwrap_or_else(|_| "mcp-echo".into()),
            ),
            prompts: list_from_env("MCP_ECHO_PROMPTS"),
            resources: list_from_env("MCP_ECHO_RESOURCES"),
            templates: list_from_env("MCP_ECHO_TEMPLATES"),
        },
        ask: std::env::var("MCP_ECHO_ASK").as_deref() == Ok("1"),
        subscribe: std::env::var("MCP_ECHO_SUBSCRIBE").as_deref() == Ok("1"),
        stateless_only,
        tool_changes: std::env::var("MCP_ECHO_TOOL_CHANGES").as_deref() == Ok("1"),
    })
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
/// A comma-separated list, kept for the process's life.
fn list_from_env(name: &str) -> &'static [String] {
    let items: Vec<String> = std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    Vec::leak(items)
}

fn listen_for_signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        shutdown.cancel();
    }))
}

/// Listens on `addr` with a backlog of 1024 rather than the standard library's 128, which
/// overflows when a proxy opens a few hundred connections at once (a dropped SYN is retried
/// only after a second).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
