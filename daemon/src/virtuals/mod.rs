//! Virtual servers outside the gateway: the catalog of exposed tool names (pure, shared by
//! the gateway, the control socket and `mcpctl validate`) and the sealing of session ids.
//! The HTTP side lives in `gateway::virtual_server`.

pub mod catalog;
pub mod seal;

pub use catalog::{Catalog, Conflict, ExposedTool};
