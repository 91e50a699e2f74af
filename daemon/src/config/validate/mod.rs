//! Raw YAML blocks -> the validated types of `model`, with defaults applied, relative paths
//! resolved, and every error collected with its position: the daemon file in [`daemon`], a
//! server file in [`server`], and what both share (restart and health blocks, single-value
//! checks) in [`shared`].

mod daemon;
mod limits;
mod remote;
mod server;
mod shared;
pub mod virtual_server;

pub use daemon::daemon;
pub use limits::may_switch_users;
pub use server::{AUDIT_LOG_NAME, server_file, server_file_entries, valid_server_name};
