//! The health-probe client: a minimal MCP client over HTTP/1.1, built for being cheap at a
//! hundred probes a second, not for generality (the operator commands use rmcp, in
//! `mcp_client`).
//!
//! One [`ProbeClient`] probes one process of one server, on `127.0.0.1:<port><path>`:
//! - [`ProbeClient::ready`] learns the server's protocol generation and lists its tools. It asks
//!   `server/discover` first (2026-07-28, stateless); a server that answers it with a version
//!   list including 2026-07-28 is spoken to statelessly (`Mcp-Method` header and per-request
//!   `_meta`). Any other answer falls back to the session-based handshake: `initialize`, then
//!   `notifications/initialized`, keeping the `Mcp-Session-Id`.
//! - [`ProbeClient::alive`] is one request on the kept connection: `ping` inside the kept session,
//!   or `server/discover` for a stateless server (2026-07-28 servers answer `ping` with 404).
//!   Every [`TOOL_REFRESH_EVERY`]th liveness probe lists the tools instead (all pages), so
//!   the tool cache follows a server whose tools change without a restart.
//! - Prompts, resources and resource templates are listed with the tools, only from a server
//!   that declared them (`offers.rs`); [`ProbeClient::take_offers`] hands them over.
//!
//! One connection is kept between probes. If it turns out closed (the server closed it while
//! idle), the request is sent again once on a new connection: `ping`, `server/discover` and
//! `tools/list` are idempotent. A session the server no longer knows (404) is re-initialized
//! once; that is not a failure. A failed probe drops the connection and, for a session-based
//! server, the session. Nothing is kept between probes but the socket, the session id and the
//! negotiated version: read buffers live only for one request.

mod error;
mod http;
mod offers;
mod parked;
mod request;
mod settle;
mod wire;

pub(crate) use wire::tools_of;

use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::directory::ToolInfo;
use crate::remote::{RemoteTarget, Stream};
pub use error::ProbeError;
use http::Outcome;
use wire::{Discover, Initialized, ToolWire, ToolsPage};

/// Every this many liveness probes, the probe lists the tools (refreshing the tool cache)
/// instead of the lighter ping: every 5 minutes at the default 10 s interval.
pub const TOOL_REFRESH_EVERY: u32 = 30;
/// How long the light liveness request waits between sending and reading its answer. The
/// probes due in one step of the shared grid (`supervisor::probe::PROBE_STEPS`) go out
/// together; a server answers a ping in well under this, so their answers are all read on
/// the one timer tick that ends the wait, instead of waking the daemon once per answer (at
/// 1000 servers the wake-ups, not the probes' own work, were most of the idle CPU).
pub const LIVENESS_SETTLE: Duration = Duration::from_millis(2);
/// The largest response body accepted for `tools/list` (and the other lists; per page).
const MAX_TOOLS_BODY: usize = 1 << 20;
/// Longest `tools/call` answer `call_tool` reads.
const MAX_CALL_BODY: usize = 16 << 20;
/// The largest response body accepted for any other request.
const MAX_BODY: usize = 64 * 1024;
/// The most `tools/list` pages followed.
const MAX_PAGES: usize = 64;
/// The stateless protocol generation.
const STATELESS_VERSION: &str = "2026-07-28";
/// The version asked for in `initialize` (the latest with the handshake).
const SESSION_VERSION: &str = "2025-11-25";

/// How the server is spoken to, learned at readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Not known yet (or to be learned again).
    Unknown,
    /// 2026-07-28: no session, per-request metadata.
    Stateless,
    /// `initialize` and (when the server gives one) a session.
    Session {
        /// `None` when the server runs without sessions, or when it must be re-initialized.
        id: Option<Box<str>>,
        version: Box<str>,
        /// Whether the handshake is done (false: initialize before the next request).
        open: bool,
    },
}

/// How another client reaches a server, learned by one handshake ([`ProbeClient::open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// 2026-07-28: call it statelessly.
    Stateless,
    /// A session opened by `initialize` (`id` is `None` for a server without sessions).
    /// Shared strings: a link is cloned per call.
    Session {
        id: Option<Arc<str>>,
        version: Arc<str>,
    },
}

/// Probes one process of one server; see the module docs.
#[derive(Debug)]
pub struct ProbeClient {
    /// `127.0.0.1:<port>`, or a remote server's `host:port`: what messages name.
    at: Arc<str>,
    port: u16,
    path: Box<str>,
    /// A remote server's target (address, TLS, credential); `None` for a local port.
    remote: Option<Arc<RemoteTarget>>,
    connection: Option<Stream>,
    mode: Mode,
    next_id: u64,
    probes: u32,
    /// What the server declared at the last handshake.
    declared: offers::Declared,
    /// Listed at the last readiness or tool refresh, until taken.
    offers: Option<crate::offers::Offers>,
    /// The client capabilities its `initialize` declares (JSON).
    capabilities: &'static str,
    /// The tool a `tools/call` in flight names (its `Mcp-Name` header, 2026-07-28).
    tool: Option<String>,
    /// How long a request waits between its write and its first read: [`LIVENESS_SETTLE`]
    /// for the light liveness request, else zero.
    settle: Duration,
    /// The kept connection of a local server between liveness probes, not registered with
    /// the runtime (`parked.rs`); `connection` holds it otherwise.
    parked: Option<std::net::TcpStream>,
}

impl ProbeClient {
    pub fn new(port: u16, path: &str) -> Self {
        ProbeClient {
            at: Arc::from(format!("127.0.0.1:{port}")),
            port,
            path: Box::from(path),
            remote: None,
            connection: None,
            mode: Mode::Unknown,
            next_id: 1,
            probes: 0,
            declared: offers::Declared::default(),
            offers: None,
            capabilities: "{}",
            tool: None,
            settle: Duration::ZERO,
            parked: None,
        }
    }

    /// Declares `capabilities` (a JSON object) in `initialize`: for a member session that
    /// relays the member's requests to a client (virtual servers).
    pub fn with_capabilities(mut self, capabilities: &'static str) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// A client of the remote server `target`: its URL's path, over TLS for `https:`, with
    /// the operator's credential on every request.
    pub fn remote(target: Arc<RemoteTarget>) -> Self {
        let mut client = ProbeClient::new(target.url.port, &target.url.target);
        client.at = Arc::from(target.url.address());
        client.remote = Some(target);
        client
    }

    /// Learns the protocol generation on a new connection and lists the tools, within
    /// `timeout`.
    pub async fn ready(&mut self, timeout: Duration) -> Result<Vec<ToolInfo>, ProbeError> {
        self.connection = None;
        self.parked = None;
        self.mode = Mode::Unknown;
        let at = self.at.clone();
        let work = async {
            self.handshake().await?;
            let tools = self.list_tools().await?;
            self.refresh_offers().await;
            Ok(tools)
        };
        let outcome = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(ProbeError::Timeout { at, timeout }));
        if outcome.is_err() {
            self.forget();
        }
        outcome
    }

    /// Learns how to reach the server and, for a session-based one, opens a session for
    /// another client to use (virtual servers call members with it), within `timeout`.
    /// With `prefer_session`, a server that speaks both generations is given a session
    /// (`initialize` first, `server/discover` only when the handshake is refused): a kept
    /// session costs a server less per request than a stateless request does, and lets it
    /// send requests back on a call's stream.
    pub async fn open(
        &mut self,
        timeout: Duration,
        prefer_session: bool,
    ) -> Result<Link, ProbeError> {
        self.connection = None;
        self.parked = None;
        self.mode = Mode::Unknown;
        let at = self.at.clone();
        let work = async {
            if prefer_session {
                self.session_handshake().await
            } else {
                self.handshake().await
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(ProbeError::Timeout { at, timeout }))?;
        self.connection = None;
        Ok(match &self.mode {
            Mode::Session { id, version, .. } => Link::Session {
                id: id.as_deref().map(Arc::from),
                version: Arc::from(&**version),
            },
            Mode::Stateless | Mode::Unknown => Link::Stateless,
        })
    }

    /// `tools/call` of `tool` with `arguments` (a JSON object's text) after a handshake, within
    /// `timeout`: the result as the server sent it. How `mcpctl call` reaches a remote server
    /// (its TLS settings and the operator's credential are the probe's).
    pub async fn call_tool(
        &mut self,
        tool: &str,
        arguments: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, ProbeError> {
        let at = self.at.clone();
        let params = format!(
            r#""name":{},"arguments":{arguments}"#,
            serde_json::to_string(tool).unwrap_or_default()
        );
        let work = async {
            self.handshake().await?;
            self.tool = Some(tool.to_owned());
            self.request::<serde_json::Value>("tools/call", &params, MAX_CALL_BODY)
                .await
        };
        let outcome = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(ProbeError::Timeout { at, timeout }));
        self.tool = None;
        outcome
    }

    /// One light request (or, every [`TOOL_REFRESH_EVERY`]th time, the tool list), within
    /// `timeout`. `Some(tools)` when the tools were listed.
    pub async fn alive(&mut self, timeout: Duration) -> Result<Option<Vec<ToolInfo>>, ProbeError> {
        self.probes = self.probes.wrapping_add(1);
        let refresh = self.probes % TOOL_REFRESH_EVERY == 0;
        let at = self.at.clone();
        let outcome = tokio::time::timeout(timeout, self.liveness(refresh))
            .await
            .unwrap_or(Err(ProbeError::Timeout { at, timeout }));
        self.settle = Duration::ZERO;
        if outcome.is_err() {
            self.forget();
        }
        outcome
    }

    /// The next liveness probe lists the tools (and the rest): the server said they changed.
    pub fn relist_next(&mut self) {
        self.probes = self
            .probes
            .wrapping_add(TOOL_REFRESH_EVERY - 1 - self.probes % TOOL_REFRESH_EVERY);
    }

    /// After a failure: no connection, and a session is opened afresh next time.
    fn forget(&mut self) {
        self.connection = None;
        self.parked = None;
        self.settle = Duration::ZERO;
        if let Mode::Session { id, open, .. } = &mut self.mode {
            *id = None;
            *open = false;
        }
    }

    async fn liveness(&mut self, refresh: bool) -> Result<Option<Vec<ToolInfo>>, ProbeError> {
        match self.mode {
            Mode::Unknown => {
                // Liveness without a readiness handshake before it (a probe made afresh).
                self.handshake().await?;
                let tools = self.list_tools().await?;
                self.refresh_offers().await;
                return Ok(Some(tools));
            }
            Mode::Session { open: false, .. } => self.initialize().await?,
            Mode::Session { .. } | Mode::Stateless => {}
        }
        if refresh {
            let tools = self.list_tools().await?;
            self.refresh_offers().await;
            return Ok(Some(tools));
        }
        let method = if self.mode == Mode::Stateless {
            "server/discover"
        } else {
            "ping"
        };
        self.settle = LIVENESS_SETTLE;
        let answered = self.request::<IgnoredAny>(method, "", MAX_BODY).await;
        self.settle = Duration::ZERO;
        answered?;
        Ok(None)
    }

    /// Learns the generation: `server/discover`, else `initialize`.
    async fn handshake(&mut self) -> Result<(), ProbeError> {
        match self.discover_stateless().await {
            Ok(true) => Ok(()),
            Ok(false) => self.initialize().await,
            // A server that could not be reached, or went quiet, will not do better with
            // `initialize`.
            Err(error) if error.is_unreachable() => Err(error),
            Err(discover) => match self.initialize().await {
                Ok(()) => Ok(()),
                Err(error) => Err(ProbeError::BothFailed(Box::new(error), Box::new(discover))),
            },
        }
    }

    /// `initialize` first; a server that refuses it is asked `server/discover` (one that
    /// speaks only 2026-07-28 is then spoken to statelessly).
    async fn session_handshake(&mut self) -> Result<(), ProbeError> {
        match self.initialize().await {
            Ok(()) => Ok(()),
            Err(error) if error.is_unreachable() => Err(error),
            Err(initialize) => {
                self.mode = Mode::Unknown;
                match self.discover_stateless().await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(initialize),
                    Err(discover) => Err(ProbeError::BothFailed(
                        Box::new(initialize),
                        Box::new(discover),
                    )),
                }
            }
        }
    }

    /// Asks `server/discover`; true (and the server is spoken to statelessly from now on)
    /// when it speaks 2026-07-28.
    async fn discover_stateless(&mut self) -> Result<bool, ProbeError> {
        let result = self
            .request::<Discover>("server/discover", "", MAX_BODY)
            .await?;
        if !result
            .supported_versions
            .iter()
            .any(|v| v == STATELESS_VERSION)
        {
            return Ok(false);
        }
        self.mode = Mode::Stateless;
        self.declared = offers::Declared::from(&result.capabilities);
        Ok(true)
    }

    /// The session-based handshake: `initialize`, then `notifications/initialized`.
    async fn initialize(&mut self) -> Result<(), ProbeError> {
        self.mode = Mode::Session {
            id: None,
            version: Box::from(SESSION_VERSION),
            open: false,
        };
        let (result, session) = self
            .send::<Initialized>("initialize", "", MAX_BODY)
            .await
            .and_then(|(reply, method)| self.result(reply, method))?;
        self.declared = offers::Declared::from(&result.capabilities);
        let version = result.protocol_version;
        // It goes back into our request heads.
        if version.is_empty()
            || version.len() > 32
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ProbeError::Protocol {
                at: self.at.clone(),
                method: "initialize",
                reason: format!("invalid protocolVersion {version:?}"),
            });
        }
        self.mode = Mode::Session {
            id: session,
            version: version.into_boxed_str(),
            open: false,
        };
        let (reply, method) = self
            .send::<IgnoredAny>("notifications/initialized", "", MAX_BODY)
            .await?;
        match reply.outcome {
            Outcome::Accepted | Outcome::Result(_) if (200..300).contains(&reply.status) => {}
            outcome => return Err(self.refused(reply.status, outcome, method)),
        }
        if let Mode::Session { open, .. } = &mut self.mode {
            *open = true;
        }
        Ok(())
    }

    /// Every page of `tools/list`.
    async fn list_tools(&mut self) -> Result<Vec<ToolInfo>, ProbeError> {
        let mut tools = Vec::new();
        let mut params = String::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .request::<ToolsPage>("tools/list", &params, MAX_TOOLS_BODY)
                .await?;
            tools.extend(page.tools.into_iter().map(ToolWire::into_info));
            match page.next_cursor {
                Some(cursor) if !cursor.is_empty() => {
                    params.clear();
                    params.push_str(r#""cursor":"#);
                    params.push_str(&serde_json::to_string(&cursor).unwrap_or_default());
                }
                _ => return Ok(tools),
            }
        }
        Err(ProbeError::Protocol {
            at: self.at.clone(),
            method: "tools/list",
            reason: format!("more than {MAX_PAGES} pages of tools"),
        })
    }

    /// A request whose result is `T`. A session the server no longer knows is opened again
    /// once, and the request repeated.
    async fn request<T: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: &str,
        limit: usize,
    ) -> Result<T, ProbeError> {
        let (reply, method) = self.send::<T>(method, params, limit).await?;
        let session_gone = reply.status == 404
            && matches!(&self.mode, Mode::Session { id: Some(_), .. })
            && !matches!(reply.outcome, Outcome::Error(_));
        if session_gone {
            tracing::debug!(at = %self.at, "MCP session expired; opening a new one");
            self.initialize().await?;
            let (reply, method) = self.send::<T>(method, params, limit).await?;
            return self.result(reply, method).map(|(result, _)| result);
        }
        self.result(reply, method).map(|(result, _)| result)
    }
}

#[cfg(test)]
mod tests;
