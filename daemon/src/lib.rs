//! mcpd: runs the MCP servers of one host, health-checks and restarts them, and fronts them
//! with one authenticated HTTP gateway and a local control socket.

mod accept;
#[cfg(test)]
mod alloc_count;
pub mod audit;
pub mod authz;
mod background;
pub mod check;
pub mod config;
pub mod control;
pub mod directory;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod mcp_client;
pub mod metrics;
pub mod offers;
pub mod ports;
pub mod probe_client;
pub mod remote;
mod run;
pub mod stdio;
pub mod supervisor;
pub mod systemd;
pub mod virtuals;
pub mod watch;

pub use run::{DaemonReloader, Listeners, RunError, run};
