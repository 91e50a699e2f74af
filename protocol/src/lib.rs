//! The control-socket protocol between `mcpctl` and `mcpd`: messages, framing and version.
//!
//! - [`Request`] and [`Response`] are enums of per-command structs. Both are **append-only**:
//!   a variant's position is its wire tag, so new commands go at the end and existing
//!   variants and struct fields never change (a change is a new variant and a bump of
//!   [`PROTOCOL_VERSION`]).
//! - The first exchange of every connection is [`Request::Hello`] answered by
//!   [`Response::Welcome`] or [`Response::Incompatible`]. These three are the first variants
//!   and are frozen forever, so any two versions can at least tell each other they differ.
//! - [`codec`] is the only place that knows the body encoding (bincode): a frame is a
//!   big-endian `u32` length followed by that many body bytes, at most [`codec::MAX_FRAME`].
//! - JSON values (tool arguments, results and schemas) travel as JSON text inside the structs.
//! - [`terminal`] escapes text a server or client controls before a human reads it.
//! - [`connect`] writes each MCP client's setup (mcpctl connect and the web page share it).

mod audit;
pub mod codec;
pub mod connect;
mod error;
mod request;
mod response;
pub mod terminal;

pub use audit::{AuditDecision, AuditRecord};
pub use error::ErrorCode;
pub use request::*;
pub use response::*;

/// The version of this protocol. Bumped whenever a message changes in a way an older peer
/// cannot decode; `Hello` carries it and the daemon refuses a client that differs.
///
/// 2: [`LogStream::Daemon`], the daemon's own notes in a server's log.
/// 3: `audit`, per-tool rules in `show`, `tools --as-scopes`, warnings in `validate`,
/// [`ServerInfo::usage`], [`ShowReply::limits`] and [`ServerInfo::session_pids`] (bincode has
/// no optional trailing fields: an older peer cannot read the longer structs).
/// 4: virtual servers: members in `ServerInfo`, conflicts in `status` and `show`.
/// 5: [`MemberInfo::tools_cached_unix_ms`] and [`MemberInfo::stale`].
pub const PROTOCOL_VERSION: u32 = 5;
