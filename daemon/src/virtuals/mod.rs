//! Virtual servers outside the gateway: the catalog of exposed tool names (pure, shared by
//! the gateway, the control socket and `mcpctl validate`) and the sealing of session ids.
//! The HTTP side lives in `gateway::virtual_server`.

pub mod catalog;
pub mod seal;

pub use catalog::{Catalog, Conflict, ExposedTool};

use crate::config::VirtualConfig;
use crate::directory::{Directory, ServerState};

/// The tools a virtual server offers now: its running members' cached tools.
pub fn catalog_of(directory: &Directory, config: &VirtualConfig) -> Catalog {
    let all = directory.all();
    let members = config.members.iter().filter_map(|member| {
        let entry = all.get(member)?;
        let status = entry.status.load();
        (status.state == ServerState::Running).then(|| (member.as_str(), status.tools.clone()))
    });
    catalog::build(config, members)
}
