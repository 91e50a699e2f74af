//! Read-only views of the directory: `list`, `status`, `show`, `tools`, `list-packages`.

use mcpd_protocol::{
    PackageEntry, PackagesReply, Response, ShowRequest, StatusReply, StatusRequest, ToolAccess,
    ToolsReply, ToolsRequest,
};

use super::{HandlerError, HandlerResult};
use crate::authz::{self, ADMIN, Decision};
use crate::config::OAuthConfig;
use crate::control::context::ControlContext;
use crate::control::convert;

pub(super) fn list(ctx: &ControlContext) -> HandlerResult {
    status(ctx, StatusRequest { name: None })
}

pub(super) fn status(ctx: &ControlContext, request: StatusRequest) -> HandlerResult {
    let directory = ctx.supervisor.directory();
    let all = directory.all();
    let virtuals = directory.virtuals();
    let servers = match &request.name {
        Some(name) => match (all.get(name), virtuals.get(name)) {
            (Some(entry), _) => vec![convert::server_info(name, entry)],
            (None, Some(config)) => vec![convert::virtual_info(directory, config)],
            (None, None) => return Err(HandlerError::unknown_server(name)),
        },
        None => {
            let mut servers: Vec<_> = all
                .iter()
                .map(|(name, entry)| convert::server_info(name, entry))
                .chain(
                    virtuals
                        .values()
                        .map(|config| convert::virtual_info(directory, config)),
                )
                .collect();
            servers.sort_by(|a, b| a.name.cmp(&b.name));
            servers
        }
    };
    let config_errors = directory
        .config_errors()
        .iter()
        .map(convert::config_error)
        .collect();
    Ok(Response::Status(StatusReply {
        servers,
        config_errors,
        conflicts: convert::conflicts(directory),
    })
    .into())
}

pub(super) fn show(ctx: &ControlContext, request: ShowRequest) -> HandlerResult {
    let directory = ctx.supervisor.directory();
    if let Some(config) = directory.get_virtual(&request.name) {
        return Ok(Response::Show(Box::new(convert::show_virtual(directory, &config))).into());
    }
    let entry = directory
        .get(&request.name)
        .ok_or_else(|| HandlerError::unknown_server(&request.name))?;
    Ok(Response::Show(Box::new(convert::show(&request.name, &entry))).into())
}

pub(super) fn tools(ctx: &ControlContext, request: ToolsRequest) -> HandlerResult {
    let directory = ctx.supervisor.directory();
    if let Some(name) = &request.name
        && let Some(config) = directory.get_virtual(name)
    {
        let catalog = crate::virtuals::catalog_of(directory, &config);
        let tools = convert::virtual_tools(&config, &catalog, request.schema);
        return Ok(Response::Tools(ToolsReply { tools }).into());
    }
    let all = directory.all();
    let mut tools = Vec::new();
    for (name, entry) in all.iter() {
        if request.name.as_ref().is_some_and(|wanted| wanted != name) {
            continue;
        }
        let status = entry.status.load();
        let config = entry.config.load();
        tools.extend(status.tools.iter().map(|t| {
            let mut tool = convert::tool(name, t, request.schema);
            tool.access = request
                .as_scopes
                .as_deref()
                .map(|scopes| access(scopes, &config.oauth, &t.name));
            tool
        }));
    }
    if let Some(name) = &request.name
        && !all.contains_key(name)
    {
        return Err(HandlerError::unknown_server(name));
    }
    Ok(Response::Tools(ToolsReply { tools }).into())
}

/// What a token with `scopes` may do with `tool` through the gateway (`tools --as-scopes`):
/// the token must first be admitted to the server (one of `oauth.scopes`, or `admin`), then
/// [`authz::decide_call`] decides. A server that does not require OAuth lets anyone call.
fn access(scopes: &[String], oauth: &OAuthConfig, tool: &str) -> ToolAccess {
    if !oauth.required {
        return ToolAccess {
            may_call: true,
            rule: None,
            allowing: Vec::new(),
        };
    }
    let rule = authz::rule_for(oauth, tool).map(|rule| rule.pattern.to_string());
    if !admitted(scopes, oauth) {
        // Any one scope that would both admit the token and allow the call.
        let mut candidates = vec![ADMIN.to_owned()];
        candidates.extend(oauth.scopes.iter().cloned());
        candidates.extend(
            authz::rule_for(oauth, tool)
                .into_iter()
                .flat_map(|r| r.scopes.clone()),
        );
        let mut allowing: Vec<String> = Vec::new();
        for scope in candidates {
            let alone = std::slice::from_ref(&scope);
            if !allowing.contains(&scope)
                && admitted(alone, oauth)
                && authz::decide_call(alone, oauth, tool).is_allowed()
            {
                allowing.push(scope);
            }
        }
        return ToolAccess {
            may_call: false,
            rule,
            allowing,
        };
    }
    match authz::decide_call(scopes, oauth, tool) {
        Decision::Allow => ToolAccess {
            may_call: true,
            rule,
            allowing: Vec::new(),
        },
        Decision::Deny { allowing } => ToolAccess {
            may_call: false,
            rule,
            allowing,
        },
    }
}

/// The gateway's admission to a server: `admin`, or one of its scopes when it lists any.
fn admitted(scopes: &[String], oauth: &OAuthConfig) -> bool {
    oauth.scopes.is_empty()
        || scopes
            .iter()
            .any(|scope| scope == ADMIN || oauth.scopes.contains(scope))
}

pub(super) fn packages(ctx: &ControlContext) -> HandlerResult {
    let packages = ctx
        .supervisor
        .directory()
        .all()
        .iter()
        .map(|(name, entry)| {
            let config = entry.config.load();
            PackageEntry {
                server: name.clone(),
                package: config.package.clone(),
                binary: config.binary_name.clone(),
            }
        })
        .collect();
    Ok(Response::Packages(PackagesReply { packages }).into())
}
