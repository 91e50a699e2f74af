//! stdio servers (`transport: stdio`): mcpd runs the child with pipes, is its only MCP
//! client, and serves it to any number of HTTP clients at the usual gateway path.
//!
//! - `frame.rs`: newline-delimited lines of the child's stdout, capped at 16 MiB;
//! - `envelope`: [`crate::envelope::raw`], the JSON-RPC envelope read and rewritten without
//!   parsing payloads;
//! - `bridge/`: the child's pipes, id and progress-token rewriting, cancellation,
//!   failing pending requests when the child goes;
//! - `sessions.rs`: client sessions, answered by mcpd, and their notification streams;
//! - `http.rs` and `body.rs`: streamable HTTP toward clients;
//! - `per_client.rs`: `sessions: per-client`, a child per client session.
//!
//! The supervisor attaches each new process to the server's [`Bridge`] and probes through it;
//! the gateway hands a request's parts and whole body to [`serve`].

mod body;
mod bridge;
/// The bridge's modules read messages as `envelope::...`.
use crate::envelope::raw as envelope;
mod frame;
mod http;
mod per_client;
mod sessions;

use std::sync::Arc;

pub use body::BridgeBody;
pub use bridge::{Bridge, Capabilities, Counters, OutputSink};
pub use frame::MAX_LINE;
pub use http::{CLIENT_VERSIONS, serve};
pub use per_client::{Launcher, Limits, PerClient};

/// The gateway's settings a bridged request follows.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `Retry-After` of a 503 (a per-client server at `max_sessions`).
    pub retry_after_secs: u64,
    /// The most a new session of a per-client server waits for a slot that a stopping child
    /// holds (`gateway.upstream_wait`, the wait at any other upstream cap).
    pub slot_wait: std::time::Duration,
    /// How long a request answered as JSON waits for the child (`gateway.body_idle_timeout`:
    /// no byte moves meanwhile); then 504, and the request is cancelled at the child.
    pub answer_timeout: std::time::Duration,
    /// How long an SSE stream stays quiet before it carries a keep-alive comment
    /// ([`crate::gateway::sse_keep_alive`]).
    pub keep_alive: std::time::Duration,
}

/// What the gateway serves a stdio server's requests with.
#[derive(Debug)]
pub enum Target {
    /// `sessions: shared`: every caller over the one supervised child.
    Shared(Arc<Bridge>),
    /// `sessions: per-client`: a child per session.
    PerClient(Arc<PerClient>),
}

impl Target {
    /// Answers one request; `body` is the whole request body.
    pub async fn serve(
        &self,
        parts: &::http::request::Parts,
        body: bytes::Bytes,
        options: &Options,
    ) -> ::http::Response<BridgeBody> {
        match self {
            Target::Shared(bridge) => serve(bridge, parts, body, options).await,
            Target::PerClient(pool) => pool.serve(parts, body, options).await,
        }
    }

    /// The bridge of the supervised child, for mcpd's own requests (`mcpctl call`, `test`):
    /// every caller's for `shared`; for `per-client`, the child that serves no session.
    pub fn bridge(&self) -> &Arc<Bridge> {
        match self {
            Target::Shared(bridge) => bridge,
            Target::PerClient(pool) => pool.canary(),
        }
    }
}

/// The protocol version mcpd asks a stdio child for.
pub const CHILD_VERSION: &str = "2025-11-25";

/// A stdio child's stdin and stdout (the daemon's ends of its pipes) as async pipes.
pub fn pipes(
    stdin: std::os::fd::OwnedFd,
    stdout: std::os::fd::OwnedFd,
) -> std::io::Result<(
    tokio::net::unix::pipe::Sender,
    tokio::net::unix::pipe::Receiver,
)> {
    Ok((
        tokio::net::unix::pipe::Sender::from_owned_fd(stdin)?,
        tokio::net::unix::pipe::Receiver::from_owned_fd(stdout)?,
    ))
}
