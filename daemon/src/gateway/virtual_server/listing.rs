//! The `tools/list` of a virtual server: the members' cached tools the caller may see,
//! written as JSON text with the members' schemas passed on as they sent them.

use super::{Context, access};
use crate::config::VirtualConfig;
use crate::directory::Directory;
use crate::gateway::auth::Claims;

/// The tools the caller sees, as `tools/list` gives them.
pub(super) fn visible(
    directory: &Directory,
    config: &VirtualConfig,
    catalog: &crate::virtuals::Catalog,
    claims: Option<&Claims>,
) -> Vec<(String, crate::virtuals::ExposedTool)> {
    let all = directory.all();
    catalog
        .tools
        .iter()
        .filter(|(exposed, tool)| {
            all.get(&tool.member).is_some_and(|entry| {
                let member = entry.config.load();
                access::sees(claims, config, &member.oauth, exposed, &tool.original)
            })
        })
        .map(|(exposed, tool)| (exposed.clone(), tool.clone()))
        .collect()
}

/// The `tools/list` result, written as JSON text: the members' schemas are passed on as the
/// text they sent, never parsed again.
pub(super) fn list(context: &Context<'_>) -> String {
    let directory = &context.shared.directory;
    let catalog = context
        .shared
        .virtuals
        .catalogs
        .get(directory, &context.config);
    let mut result = String::from("{\"tools\":[");
    let visible = visible(
        directory,
        &context.config,
        &catalog,
        context.claims.as_deref(),
    );
    for (index, (exposed, tool)) in visible.iter().enumerate() {
        if index > 0 {
            result.push(',');
        }
        tool.info.listed_as(exposed, &mut result);
    }
    result.push(']');
    if context.stateless {
        result.push_str(",\"resultType\":\"complete\",\"ttlMs\":0,\"cacheScope\":\"private\"");
    }
    result.push('}');
    result
}
