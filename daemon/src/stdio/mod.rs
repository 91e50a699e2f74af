//! stdio servers (`transport: stdio`): mcpd runs the child with pipes, is its only MCP
//! client, and serves it to any number of HTTP clients at the usual gateway path.
//!
//! - `frame.rs`: newline-delimited lines of the child's stdout, capped at 16 MiB;
//! - `envelope.rs`: the JSON-RPC envelope, read and rewritten without parsing payloads;
//! - `bridge.rs`: the child's pipes, id and progress-token rewriting, cancellation,
//!   failing pending requests when the child goes;
//! - `sessions.rs`: client sessions, answered by mcpd, and their notification streams;
//! - `http.rs` and `body.rs`: streamable HTTP toward clients.
//!
//! The supervisor attaches each new process to the server's [`Bridge`] and probes through it;
//! the gateway hands a request's parts and whole body to [`serve`].

mod body;
mod bridge;
mod envelope;
mod frame;
mod http;
mod sessions;

pub use body::BridgeBody;
pub use bridge::{Bridge, Counters, OutputSink};
pub use frame::MAX_LINE;
pub use http::{CLIENT_VERSIONS, serve};

/// The protocol version mcpd asks a stdio child for.
pub const CHILD_VERSION: &str = "2025-11-25";
