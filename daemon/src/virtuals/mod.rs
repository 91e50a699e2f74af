//! Virtual servers outside the gateway: the catalog of exposed tool names (pure, shared by
//! the gateway, the control socket and `mcpctl validate`) and the sealing of session ids.
//! The HTTP side lives in `gateway::virtual_server`.

pub mod catalog;
pub mod offered;
pub mod seal;

pub use catalog::{Catalog, Conflict, ExposedTool, OfferKind};

use crate::config::VirtualConfig;
use crate::directory::{Directory, ServerState};

/// One member as `mcpctl show` and the registry describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub state: ServerState,
    /// When its tools (and prompts and resources) were last listed by its probe.
    pub tools_at: Option<std::time::SystemTime>,
    /// Its cached lists may be out of date: it is not running, or its probes have failed
    /// since they were read (the lists are still served, never waited for).
    pub stale: bool,
}

/// The members of a virtual server with their states and the age of their cached lists.
pub fn member_views(directory: &Directory, config: &VirtualConfig) -> Vec<MemberView> {
    let all = directory.all();
    config
        .members
        .iter()
        .map(|member| match all.get(member) {
            Some(entry) => {
                let status = entry.status.load();
                MemberView {
                    name: member.clone(),
                    state: status.state,
                    tools_at: status.tools_at,
                    stale: status.state != ServerState::Running
                        || status.probe_failing_since.is_some(),
                }
            }
            None => MemberView {
                name: member.clone(),
                state: ServerState::Stopped,
                tools_at: None,
                stale: true,
            },
        })
        .collect()
}

/// What a running member contributes: its cached tools and prompts/resources.
type MemberLists = Option<(
    std::sync::Arc<[crate::directory::ToolInfo]>,
    std::sync::Arc<crate::offers::Offers>,
)>;

/// Each member's lists while it runs, in member order.
fn member_lists(directory: &Directory, config: &VirtualConfig) -> Vec<MemberLists> {
    let all = directory.all();
    config
        .members
        .iter()
        .map(|member| {
            let status = all.get(member)?.status.load();
            (status.state == ServerState::Running)
                .then(|| (status.tools.clone(), status.offers.clone()))
        })
        .collect()
}

fn build(config: &VirtualConfig, lists: &[MemberLists]) -> Catalog {
    let running = || {
        config
            .members
            .iter()
            .zip(lists)
            .filter_map(|(member, lists)| Some((member.as_str(), lists.as_ref()?)))
    };
    let mut catalog = catalog::build(
        config,
        running().map(|(member, (tools, _))| (member, tools.clone())),
    );
    offered::add(
        &mut catalog,
        config,
        running().map(|(member, (_, offers))| (member, offers.as_ref())),
    );
    catalog
}

/// What a virtual server offers now: its running members' cached tools, prompts and
/// resources.
pub fn catalog_of(directory: &Directory, config: &VirtualConfig) -> Catalog {
    build(config, &member_lists(directory, config))
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
    /// Each member's lists while it runs, in member order.
    lists: Vec<MemberLists>,
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
        let lists = member_lists(directory, config);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = entries.get(&config.name)
            && Arc::ptr_eq(&cached.config, config)
            && cached.lists.len() == lists.len()
            && cached.lists.iter().zip(&lists).all(|pair| match pair {
                (Some((tools_a, offers_a)), Some((tools_b, offers_b))) => {
                    Arc::ptr_eq(tools_a, tools_b) && Arc::ptr_eq(offers_a, offers_b)
                }
                (None, None) => true,
                _ => false,
            })
        {
            return cached.catalog.clone();
        }
        let catalog = Arc::new(build(config, &lists));
        entries.insert(
            config.name.clone(),
            CachedCatalog {
                config: config.clone(),
                lists,
                catalog: catalog.clone(),
            },
        );
        catalog
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::test_builder::server_running;
    use crate::directory::{ServerEntry, ServerStatus, ToolInfo};

    fn tools(names: &[&str]) -> Arc<[ToolInfo]> {
        names
            .iter()
            .map(|name| ToolInfo::new(name, &serde_json::json!({"type": "object"})))
            .collect()
    }

    fn publish(entry: &ServerEntry, state: ServerState, tools: Arc<[ToolInfo]>) {
        let mut status = ServerStatus::new(state);
        status.tools = tools;
        // The supervisor keeps its lists between statuses.
        status.offers = entry.status.load().offers.clone();
        entry.status.store(Arc::new(status));
    }

    #[test]
    fn the_cache_follows_states_tool_lists_and_configuration() {
        let directory = Directory::new();
        let a = Arc::new(ServerEntry::new(
            server_running("a", "/bin/true"),
            ServerStatus::new(ServerState::Running),
        ));
        let b = Arc::new(ServerEntry::new(
            server_running("b", "/bin/true"),
            ServerStatus::new(ServerState::Stopped),
        ));
        let listed = tools(&["echo", "add"]);
        publish(&a, ServerState::Running, listed.clone());
        directory.replace(BTreeMap::from([
            ("a".into(), a.clone()),
            ("b".into(), b.clone()),
        ]));
        let mut config = crate::virtuals::catalog::tests_support::config();
        config.members = vec!["a".into(), "b".into()];
        let config = Arc::new(config);
        let cache = CatalogCache::default();

        let first = cache.get(&directory, &config);
        assert_eq!(first.tools.keys().collect::<Vec<_>>(), ["a_add", "a_echo"]);
        // A new status with the same tool list (every probe publishes one): same catalog.
        publish(&a, ServerState::Running, listed.clone());
        assert!(Arc::ptr_eq(&first, &cache.get(&directory, &config)));
        // A member starts: rebuilt.
        publish(&b, ServerState::Running, tools(&["sleep"]));
        let second = cache.get(&directory, &config);
        assert!(second.tools.contains_key("b_sleep"));
        // A member stops: its tools go.
        publish(&a, ServerState::Backoff, listed);
        let third = cache.get(&directory, &config);
        assert_eq!(third.tools.keys().collect::<Vec<_>>(), ["b_sleep"]);
        // Another configuration (a reload): rebuilt from it.
        let mut narrower = (*config).clone();
        narrower.members = vec!["a".into()];
        assert!(cache.get(&directory, &Arc::new(narrower)).tools.is_empty());
    }
}
