//! Read-only views of the directory: `list`, `status`, `show`, `tools`, `list-packages`.

use mcpd_protocol::{
    PackageEntry, PackagesReply, Response, ShowRequest, StatusReply, StatusRequest, ToolsReply,
    ToolsRequest,
};

use super::{HandlerError, HandlerResult};
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
        tools.extend(
            status
                .tools
                .iter()
                .map(|t| convert::tool(name, t, request.schema)),
        );
    }
    if let Some(name) = &request.name
        && !all.contains_key(name)
    {
        return Err(HandlerError::unknown_server(name));
    }
    Ok(Response::Tools(ToolsReply { tools }).into())
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
