//! One request on the wire: rendered by hand (head and body in one buffer), sent on the kept
//! connection or a new one, and its reply read by [`super::http`].

use std::fmt::Write as _;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::http::{self, HttpError, Reply};
use crate::remote::Stream;

use super::{Mode, ProbeClient, ProbeError, SESSION_VERSION, STATELESS_VERSION};

/// The per-request `_meta` of the stateless generation.
pub(super) const STATELESS_META: &str = concat!(
    r#"{"io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"mcpd","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#
);

impl ProbeClient {
    /// Sends one message on the kept connection (or a new one) and reads the reply. A kept
    /// connection the server closed while idle is replaced once.
    pub(super) async fn send<T: DeserializeOwned>(
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
        // Only the light request itself: a re-initialization it leads to goes the usual way.
        if !self.settle.is_zero()
            && self.remote.is_none()
            && matches!(method, "ping" | "server/discover")
        {
            return self.send_settled::<T>(method, &request, id, limit).await;
        }
        // Taken out while in use: if the caller's timeout drops this future midway, no
        // half-read connection is kept.
        let parked = self
            .parked
            .take()
            .and_then(|parked| TcpStream::from_std(parked).ok().map(Stream::Plain));
        let kept = self.connection.take().or(parked).filter(Stream::still_open);
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
            at: self.at.clone(),
            method,
            source,
        })?;
        if reply.reusable {
            self.connection = Some(stream);
        }
        Ok((reply, method))
    }

    pub(super) async fn connect(&self) -> Result<Stream, ProbeError> {
        if let Some(remote) = &self.remote {
            // Bounded by the probe's own timeout, around the whole request.
            return Ok(remote.connect(Duration::from_secs(3600)).await?);
        }
        let connect = |source| ProbeError::Connect {
            at: self.at.clone(),
            source,
        };
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        Ok(Stream::Plain(stream))
    }

    /// The HTTP request for `method`, head and body in one buffer.
    pub(super) fn render(
        &self,
        method: &'static str,
        id: Option<u64>,
        params: &str,
    ) -> Result<Vec<u8>, ProbeError> {
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ProbeError::Protocol {
                at: self.at.clone(),
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
                r#","params":{{"protocolVersion":"{SESSION_VERSION}","capabilities":{},"clientInfo":{{"name":"mcpd","version":"{}"}}}}"#,
                self.capabilities,
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
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.path,
            self.host(),
            body.len()
        );
        if let Some(credential) = self.remote.as_ref().and_then(|r| r.credential.as_ref()) {
            // Printable ASCII by construction (`remote::Credential`).
            request.extend_from_slice(credential.header.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(credential.value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        if stateless {
            let _ = write!(
                Buffer(&mut request),
                "Mcp-Method: {method}\r\nMCP-Protocol-Version: {STATELESS_VERSION}\r\n"
            );
            if let Some(tool) = self.tool.as_deref().filter(|_| method == "tools/call") {
                // Printable ASCII, or base64 (`header_text`).
                let name = crate::envelope::header_text(tool);
                let _ = write!(Buffer(&mut request), "Mcp-Name: {name}\r\n");
            }
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

impl ProbeClient {
    /// The `Host` header: the remote URL's authority, else `127.0.0.1:<port>`.
    fn host(&self) -> &str {
        match &self.remote {
            Some(remote) => remote.host_header().to_str().unwrap_or_default(),
            None => &self.at,
        }
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
