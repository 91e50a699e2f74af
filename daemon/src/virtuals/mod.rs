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

/// Catalogs kept between requests, rebuilt when the virtual server's configuration or a
/// member's state or tool list changes (compared by identity: the cache holds what it was
/// built from, so no address can be reused while it is compared).
#[derive(Debug, Default)]
pub struct CatalogCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedCatalog>>,
}

#[derive(Debug)]
struct CachedCatalog {
    config: std::sync::Arc<VirtualConfig>,
    /// Each member's tools while it runs, in member order.
    tools: Vec<Option<std::sync::Arc<[crate::directory::ToolInfo]>>>,
    catalog: std::sync::Arc<Catalog>,
}

impl CatalogCache {
    /// The catalog of `config` now.
    pub fn get(
        &self,
        directory: &Directory,
        config: &std::sync::Arc<VirtualConfig>,
    ) -> std::sync::Arc<Catalog> {
        use std::sync::Arc;
        let all = directory.all();
        let tools: Vec<Option<Arc<[crate::directory::ToolInfo]>>> = config
            .members
            .iter()
            .map(|member| {
                let status = all.get(member)?.status.load();
                (status.state == ServerState::Running).then(|| status.tools.clone())
            })
            .collect();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = entries.get(&config.name)
            && Arc::ptr_eq(&cached.config, config)
            && cached.tools.len() == tools.len()
            && cached.tools.iter().zip(&tools).all(|pair| match pair {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        {
            return cached.catalog.clone();
        }
        let members = config
            .members
            .iter()
            .zip(&tools)
            .filter_map(|(member, tools)| Some((member.as_str(), tools.clone()?)));
        let catalog = Arc::new(catalog::build(config, members));
        entries.insert(
            config.name.clone(),
            CachedCatalog {
                config: config.clone(),
                tools,
                catalog: catalog.clone(),
            },
        );
        catalog
    }
}
