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
//!
//! One connection is kept between probes. If it turns out closed (the server closed it while
//! idle), the request is sent again once on a new connection: `ping`, `server/discover` and
//! `tools/list` are idempotent. A session the server no longer knows (404) is re-initialized
//! once; that is not a failure. A failed probe drops the connection and, for a session-based
//! server, the session. Nothing is kept between probes but the socket, the session id and the
//! negotiated version: read buffers live only for one request.

mod http;

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::net::TcpStream;

use crate::directory::ToolInfo;
use http::{HttpError, Outcome, Reply};

/// Every this many liveness probes, the probe lists the tools (refreshing the tool cache)
/// instead of the lighter ping: every 5 minutes at the default 10 s interval.
pub const TOOL_REFRESH_EVERY: u32 = 30;
/// The largest response body accepted for `tools/list` (per page).
const MAX_TOOLS_BODY: usize = 1 << 20;
/// The largest response body accepted for any other request.
const MAX_BODY: usize = 64 * 1024;
/// The most `tools/list` pages followed.
const MAX_PAGES: usize = 64;
/// The stateless protocol generation.
const STATELESS_VERSION: &str = "2026-07-28";
/// The version asked for in `initialize` (the latest with the handshake).
const SESSION_VERSION: &str = "2025-11-25";
/// The per-request `_meta` of the stateless generation.
const STATELESS_META: &str = concat!(
    r#"{"io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"mcpd","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#
);

/// Why a probe failed; the text goes to `mcpctl status` (LAST-ERROR) and the log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to 127.0.0.1:{port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("no answer from 127.0.0.1:{port} within {timeout:?}")]
    Timeout { port: u16, timeout: Duration },
    #[error("{method} to 127.0.0.1:{port}: {source}")]
    Http {
        port: u16,
        method: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("{method} to 127.0.0.1:{port}: HTTP {status}{}", detail(.body))]
    Status {
        port: u16,
        method: &'static str,
        status: u16,
        body: String,
    },
    #[error("{method} to 127.0.0.1:{port}: JSON-RPC error {code}: {message}")]
    Rpc {
        port: u16,
        method: &'static str,
        code: i64,
        message: String,
    },
    #[error("{method} to 127.0.0.1:{port}: {reason}")]
    Protocol {
        port: u16,
        method: &'static str,
        reason: String,
    },
    #[error("{0} (and server/discover failed: {1})")]
    BothFailed(Box<ProbeError>, Box<ProbeError>),
}

fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

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

/// Probes one process of one server; see the module docs.
#[derive(Debug)]
pub struct ProbeClient {
    port: u16,
    path: Box<str>,
    connection: Option<TcpStream>,
    mode: Mode,
    next_id: u64,
    probes: u32,
}

impl ProbeClient {
    pub fn new(port: u16, path: &str) -> Self {
        ProbeClient {
            port,
            path: Box::from(path),
            connection: None,
            mode: Mode::Unknown,
            next_id: 1,
            probes: 0,
        }
    }

    /// Learns the protocol generation on a new connection and lists the tools, within
    /// `timeout`.
    pub async fn ready(&mut self, timeout: Duration) -> Result<Vec<ToolInfo>, ProbeError> {
        self.connection = None;
        self.mode = Mode::Unknown;
        let port = self.port;
        let work = async {
            self.handshake().await?;
            self.list_tools().await
        };
        let outcome = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(ProbeError::Timeout { port, timeout }));
        if outcome.is_err() {
            self.forget();
        }
        outcome
    }

    /// One light request (or, every [`TOOL_REFRESH_EVERY`]th time, the tool list), within
    /// `timeout`. `Some(tools)` when the tools were listed.
    pub async fn alive(&mut self, timeout: Duration) -> Result<Option<Vec<ToolInfo>>, ProbeError> {
        self.probes = self.probes.wrapping_add(1);
        let refresh = self.probes % TOOL_REFRESH_EVERY == 0;
        let port = self.port;
        let outcome = tokio::time::timeout(timeout, self.liveness(refresh))
            .await
            .unwrap_or(Err(ProbeError::Timeout { port, timeout }));
        if outcome.is_err() {
            self.forget();
        }
        outcome
    }

    /// After a failure: no connection, and a session is opened afresh next time.
    fn forget(&mut self) {
        self.connection = None;
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
                return self.list_tools().await.map(Some);
            }
            Mode::Session { open: false, .. } => self.initialize().await?,
            Mode::Session { .. } | Mode::Stateless => {}
        }
        if refresh {
            return self.list_tools().await.map(Some);
        }
        let method = if self.mode == Mode::Stateless {
            "server/discover"
        } else {
            "ping"
        };
        self.request::<IgnoredAny>(method, "", MAX_BODY).await?;
        Ok(None)
    }

    /// Learns the generation: `server/discover`, else `initialize`.
    async fn handshake(&mut self) -> Result<(), ProbeError> {
        let discover = self
            .request::<Discover>("server/discover", "", MAX_BODY)
            .await;
        match discover {
            Ok(result)
                if result
                    .supported_versions
                    .iter()
                    .any(|v| v == STATELESS_VERSION) =>
            {
                self.mode = Mode::Stateless;
                Ok(())
            }
            Ok(_) => self.initialize().await,
            // A server that could not be reached, or went quiet, will not do better with
            // `initialize`.
            Err(error @ (ProbeError::Connect { .. } | ProbeError::Timeout { .. })) => Err(error),
            Err(discover) => match self.initialize().await {
                Ok(()) => Ok(()),
                Err(error) => Err(ProbeError::BothFailed(Box::new(error), Box::new(discover))),
            },
        }
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
        let version = result.protocol_version;
        // It goes back into our request heads.
        if version.is_empty()
            || version.len() > 32
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ProbeError::Protocol {
                port: self.port,
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
            port: self.port,
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
            tracing::debug!(port = self.port, "MCP session expired; opening a new one");
            self.initialize().await?;
            let (reply, method) = self.send::<T>(method, params, limit).await?;
            return self.result(reply, method).map(|(result, _)| result);
        }
        self.result(reply, method).map(|(result, _)| result)
    }

    /// The result of `reply`, with the session id it carried.
    fn result<T>(
        &self,
        reply: Reply<T>,
        method: &'static str,
    ) -> Result<(T, Option<Box<str>>), ProbeError> {
        match reply.outcome {
            Outcome::Result(result) => Ok((result, reply.session_id)),
            outcome => Err(self.refused(reply.status, outcome, method)),
        }
    }

    fn refused<T>(&self, status: u16, outcome: Outcome<T>, method: &'static str) -> ProbeError {
        let port = self.port;
        match outcome {
            Outcome::Error(error) => ProbeError::Rpc {
                port,
                method,
                code: error.code,
                message: error.message,
            },
            Outcome::Status(body) => ProbeError::Status {
                port,
                method,
                status,
                body,
            },
            Outcome::Accepted if (200..300).contains(&status) => ProbeError::Protocol {
                port,
                method,
                reason: format!("HTTP {status} with an empty body"),
            },
            Outcome::Accepted | Outcome::Result(_) => ProbeError::Status {
                port,
                method,
                status,
                body: String::new(),
            },
        }
    }

    /// Sends one message on the kept connection (or a new one) and reads the reply. A kept
    /// connection the server closed while idle is replaced once.
    async fn send<T: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: &str,
        limit: usize,
    ) -> Result<(Reply<T>, &'static str), ProbeError> {
        let id = (!method.starts_with("notifications/")).then(|| {
            let id = self.next_id;
            self.next_id += 1;
            id
        });
        let request = self.render(method, id, params)?;
        // Taken out while in use: if the caller's timeout drops this future midway, no
        // half-read connection is kept.
        let kept = self.connection.take().filter(still_open);
        let reused = kept.is_some();
        let mut stream = match kept {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        let want_session = method == "initialize";
        let mut reply =
            http::exchange::<_, T>(&mut stream, &request, id, limit, want_session).await;
        if reused && matches!(reply, Err(HttpError::ClosedBeforeResponse)) {
            stream = self.connect().await?;
            reply = http::exchange::<_, T>(&mut stream, &request, id, limit, want_session).await;
        }
        let reply = reply.map_err(|source| ProbeError::Http {
            port: self.port,
            method,
            source,
        })?;
        if reply.reusable {
            self.connection = Some(stream);
        }
        Ok((reply, method))
    }

    async fn connect(&self) -> Result<TcpStream, ProbeError> {
        let connect = |source| ProbeError::Connect {
            port: self.port,
            source,
        };
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        Ok(stream)
    }

    /// The HTTP request for `method`, head and body in one buffer.
    fn render(
        &self,
        method: &'static str,
        id: Option<u64>,
        params: &str,
    ) -> Result<Vec<u8>, ProbeError> {
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ProbeError::Protocol {
                port: self.port,
                method,
                reason: format!("path {:?} is not a valid HTTP request target", self.path),
            });
        }
        let mut body = String::with_capacity(256);
        body.push_str(r#"{"jsonrpc":"2.0","#);
        if let Some(id) = id {
            let _ = write!(body, r#""id":{id},"#);
        }
        let _ = write!(body, r#""method":"{method}""#);
        let stateless = self.mode == Mode::Stateless || method == "server/discover";
        if method == "initialize" {
            let _ = write!(
                body,
                r#","params":{{"protocolVersion":"{SESSION_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcpd","version":"{}"}}}}"#,
                env!("CARGO_PKG_VERSION")
            );
        } else if stateless {
            let comma = if params.is_empty() { "" } else { "," };
            let _ = write!(
                body,
                r#","params":{{{params}{comma}"_meta":{STATELESS_META}}}"#
            );
        } else if !params.is_empty() {
            let _ = write!(body, r#","params":{{{params}}}"#);
        }
        body.push('}');

        let mut request = Vec::with_capacity(body.len() + 320);
        let _ = write!(
            Buffer(&mut request),
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.path,
            self.port,
            body.len()
        );
        if stateless {
            let _ = write!(
                Buffer(&mut request),
                "Mcp-Method: {method}\r\nMCP-Protocol-Version: {STATELESS_VERSION}\r\n"
            );
        } else if let Mode::Session { id, version, .. } = &self.mode
            && method != "initialize"
        {
            if let Some(id) = id {
                let _ = write!(Buffer(&mut request), "Mcp-Session-Id: {id}\r\n");
            }
            let _ = write!(Buffer(&mut request), "MCP-Protocol-Version: {version}\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body.as_bytes());
        Ok(request)
    }
}

/// `fmt::Write` into a byte buffer.
struct Buffer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buffer<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// False when a kept connection was closed by the server (or has unexpected bytes waiting).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
}

#[derive(Deserialize)]
struct Discover {
    #[serde(rename = "supportedVersions", default)]
    supported_versions: Vec<String>,
}

#[derive(Deserialize)]
struct Initialized {
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
}

#[derive(Deserialize)]
struct ToolsPage {
    tools: Vec<ToolWire>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ToolWire {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "inputSchema", default)]
    input_schema: serde_json::Map<String, serde_json::Value>,
}

impl ToolWire {
    fn into_info(self) -> ToolInfo {
        ToolInfo {
            name: self.name,
            description: self.description,
            input_schema: serde_json::Value::Object(self.input_schema),
        }
    }
}

#[cfg(test)]
mod tests;
