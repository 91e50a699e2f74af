//! One audit record: a `tools/call` through the gateway or by `mcpctl call`, allowed or
//! denied. Written as one JSON line to `<logs.dir>/audit.log`; travels over the socket as
//! that JSON text. Never holds a token; holds the call's arguments only when the server sets
//! `audit: {arguments: true}`.

use serde::{Deserialize, Serialize};

/// Whether the call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Unix milliseconds of `time`, for filtering.
    pub ts: u64,
    /// The server the caller addressed (a virtual server's name for calls through one).
    pub server: String,
    /// The server that ran the tool when it differs from `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub tool: String,
    /// The token's `sub`; `None` without a token (a server with no OAuth, `mcpctl call`).
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// The token's scopes.
    pub scopes: Vec<String>,
    pub decision: AuditDecision,
    /// The HTTP status answered (200 for a call answered over SSE; 0 for `mcpctl call`).
    pub status: u16,
    /// The JSON-RPC error code of the answer, if it was an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// The tool result's `isError`, if the answer was a result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// From the request to the end of the response, in milliseconds.
    pub duration_ms: f64,
    /// The JSON-RPC id as the caller wrote it (`1`, `"a"`).
    pub request_id: Option<String>,
    /// `ip:port` of a gateway caller; `uid:N` of an `mcpctl` caller.
    pub caller: String,
    /// `gateway` or `mcpctl`.
    pub via: String,
    /// The call's arguments (JSON text), only with `audit: {arguments: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}
