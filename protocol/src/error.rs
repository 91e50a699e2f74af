//! The typed error code of an error reply, so clients can react without parsing messages.

use serde::{Deserialize, Serialize};

/// Why a request failed. Append-only: new codes go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No server has that name.
    UnknownServer,
    /// An argument is invalid (bad JSON, ambiguous tool, zero TTL, ...).
    InvalidArgument,
    /// The daemon understands the request but cannot do it in this configuration or state.
    Unsupported,
    /// The daemon is at its connection limit or shutting down; try again.
    Busy,
    /// A bug or an unexpected failure inside the daemon.
    Internal,
    /// The frame could not be read or decoded.
    Malformed,
    /// Something the request needs is not configured (e.g. no HS256 key for `token`).
    NotConfigured,
    /// The MCP server answered with an error, or did not answer.
    McpFailure,
    /// The first request of a connection must be `Hello`.
    HandshakeRequired,
    /// The server exists but is not running, so it cannot be asked anything.
    NotRunning,
    /// The client sent nothing (no `Hello`, or no request) for too long; the daemon closes.
    Timeout,
}

impl ErrorCode {
    /// The stable snake_case name used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownServer => "unknown_server",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
            ErrorCode::Malformed => "malformed",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::McpFailure => "mcp_failure",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
