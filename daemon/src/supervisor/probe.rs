//! Readiness and liveness probes: what a probe is ([`Prober`], MCP by default) and the two
//! loops that run it against a server's port and report back to its task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::directory::ToolInfo;
use crate::mcp_client::McpClient;

pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<ToolInfo>, String>> + Send + 'a>>;

/// Checks that a server on `127.0.0.1:<port>` answers at `path`, returning its tools.
pub trait Prober: Send + Sync {
    fn probe<'a>(&'a self, port: u16, path: &'a str, timeout: Duration) -> ProbeFuture<'a>;
}

/// The real probe: an MCP client connects and lists tools.
#[derive(Debug, Clone, Default)]
pub struct McpProber {
    client: McpClient,
}

impl McpProber {
    pub fn new(client: McpClient) -> Self {
        McpProber { client }
    }
}

impl Prober for McpProber {
    fn probe<'a>(&'a self, port: u16, path: &'a str, timeout: Duration) -> ProbeFuture<'a> {
        Box::pin(async move {
            let url = format!("http://127.0.0.1:{port}{path}");
            self.client
                .list_tools(&url, timeout)
                .await
                .map_err(|err| err.to_string())
        })
    }
}

/// A probe that only checks that the port accepts a TCP connection (no tools). For servers
/// that do not speak MCP yet, and for tests with plain fixture processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpProber;

impl Prober for TcpProber {
    fn probe<'a>(&'a self, port: u16, _path: &'a str, timeout: Duration) -> ProbeFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port)))
                .await
            {
                Ok(Ok(_)) => Ok(Vec::new()),
                Ok(Err(err)) => Err(format!("cannot connect to 127.0.0.1:{port}: {err}")),
                Err(_) => Err(format!(
                    "no answer from 127.0.0.1:{port} within {timeout:?}"
                )),
            }
        })
    }
}

/// What a probe loop reports.
#[derive(Debug)]
pub enum ProbeReport {
    Ready(Vec<ToolInfo>),
    Alive(Vec<ToolInfo>),
    NotAlive(String),
}

/// Probes until the server answers, retrying quickly at first (`first_retry`, doubling up to
/// 500 ms); reports `Ready` once, with how long that probe took. The start timeout is the
/// caller's.
pub async fn readiness(
    prober: Arc<dyn Prober>,
    port: u16,
    path: String,
    timeout: Duration,
    first_retry: Duration,
    report: impl Fn(ProbeReport, Duration) -> bool + Send,
) {
    let mut retry = first_retry;
    loop {
        let began = Instant::now();
        if let Ok(tools) = prober.probe(port, &path, timeout).await {
            report(ProbeReport::Ready(tools), began.elapsed());
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_millis(500)).max(retry);
    }
}

/// Probes every `interval` (the first one after `first_delay`, spread by the caller so many
/// servers do not probe in lockstep) and reports every result with how long it took.
pub async fn liveness(
    prober: Arc<dyn Prober>,
    port: u16,
    path: String,
    interval: Duration,
    timeout: Duration,
    first_delay: Duration,
    report: impl Fn(ProbeReport, Duration) -> bool + Send,
) {
    tokio::time::sleep(first_delay).await;
    loop {
        let began = Instant::now();
        let result = match prober.probe(port, &path, timeout).await {
            Ok(tools) => ProbeReport::Alive(tools),
            Err(reason) => ProbeReport::NotAlive(reason),
        };
        if !report(result, began.elapsed()) {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}
