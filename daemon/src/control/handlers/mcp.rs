//! Requests that talk MCP to a server through the daemon's client: `call`, `test`, `validate`.

use std::sync::Arc;
use std::time::Duration;

use mcpd_protocol::{
    CallReply, CallRequest, ConfigErrorInfo, ErrorCode, Response, TestReply, TestRequest,
    ValidateReply, ValidateRequest,
};

use super::audit::{CallStart, record_call};
use super::{HandlerError, HandlerResult};
use crate::config;
use crate::control::Peer;
use crate::control::context::ControlContext;
use crate::control::convert;
use crate::directory::{ServerEntry, ServerState};
use crate::mcp_client::McpError;

/// The longest tool call a client may ask to wait for.
const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Calls a tool for the operator and records the call in the audit log. `oauth.tools` does
/// not apply: the socket is open only to root and its group (see `super::audit`).
pub(super) async fn call(ctx: &ControlContext, peer: &Peer, request: CallRequest) -> HandlerResult {
    let arguments = match serde_json::from_str::<serde_json::Value>(&request.arguments_json) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => {
            return Err(HandlerError::new(
                ErrorCode::InvalidArgument,
                "--args must be a JSON object",
            ));
        }
        Err(e) => {
            return Err(HandlerError::new(
                ErrorCode::InvalidArgument,
                format!("--args is not valid JSON: {e}"),
            ));
        }
    };
    let server = match request.server {
        Some(server) => server,
        None => resolve_tool(ctx, &request.tool)?,
    };
    // A virtual server's exposed tool is called in its member, under the member's own name.
    let (server, member, tool) = match virtual_target(ctx, &server, &request.tool)? {
        Some((member, original)) => (server, Some(member), original),
        None => (server, None, request.tool.clone()),
    };
    let callee = member.as_deref().unwrap_or(&server);
    let entry = ctx
        .supervisor
        .directory()
        .get(callee)
        .ok_or_else(|| HandlerError::unknown_server(callee))?;
    let timeout = Duration::from_millis(request.timeout_ms.max(1)).min(MAX_CALL_TIMEOUT);
    let audit_arguments = entry.config.load().audit_arguments
        || member.is_some()
            && ctx
                .supervisor
                .directory()
                .get_virtual(&server)
                .is_some_and(|config| config.audit_arguments);
    let kept_arguments =
        audit_arguments.then(|| serde_json::Value::Object(arguments.clone()).to_string());
    let start = CallStart::now();
    let result = call_in(ctx, callee, &entry, &tool, arguments, timeout).await?;
    if let Some(log) = &ctx.audit {
        record_call(
            log,
            peer,
            (&server, member.as_deref(), &tool, kept_arguments),
            start,
            &result,
        );
    }
    let result = result.map_err(|e| HandlerError::new(ErrorCode::McpFailure, e.to_string()))?;
    Ok(Response::Call(CallReply {
        server,
        tool: request.tool,
        result_json: result.to_string(),
    })
    .into())
}

/// For a virtual server, the member and original name of its exposed tool `tool`; `None`
/// for any other server. An exposed name it does not offer (unknown, left out by a
/// conflict, or of a member that is down) is an error naming why.
fn virtual_target(
    ctx: &ControlContext,
    server: &str,
    tool: &str,
) -> Result<Option<(String, String)>, HandlerError> {
    let directory = ctx.supervisor.directory();
    let Some(config) = directory.get_virtual(server) else {
        return Ok(None);
    };
    if !config.enabled {
        return Err(HandlerError::new(
            ErrorCode::NotRunning,
            format!("virtual server {server:?} is disabled"),
        ));
    }
    let catalog = crate::virtuals::catalog_of(directory, &config);
    if let Some(exposed) = catalog.tools.get(tool) {
        return Ok(Some((exposed.member.clone(), exposed.original.clone())));
    }
    let all = directory.all();
    let down = config.members.iter().find_map(|member| {
        let status = all.get(member)?.status.load();
        let offered = status
            .tools
            .iter()
            .any(|t| crate::virtuals::catalog::exposed_name(&config, member, &t.name) == tool);
        (offered && status.state != ServerState::Running).then(|| (member.clone(), status.state))
    });
    if let Some((member, state)) = down {
        return Err(HandlerError::new(
            ErrorCode::NotRunning,
            format!(
                "member server {member:?} of virtual server {server:?} is {state}, not running; start it with `mcpctl start {member}`"
            ),
        ));
    }
    if let Some(conflict) = catalog.conflicts.iter().find(|c| c.exposed == tool) {
        return Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            conflict.describe(server),
        ));
    }
    Err(HandlerError::new(
        ErrorCode::InvalidArgument,
        format!(
            "virtual server {server:?} offers no tool named {tool:?} now (its running members' tools are listed by `mcpctl tools {server}`)"
        ),
    ))
}

/// `tools/call` of `tool` in the server `server` (not virtual), however it is reached: an
/// error when it is not running, else the call's outcome.
async fn call_in(
    ctx: &ControlContext,
    server: &str,
    entry: &ServerEntry,
    tool: &str,
    arguments: serde_json::Map<String, serde_json::Value>,
    timeout: Duration,
) -> Result<Result<serde_json::Value, McpError>, HandlerError> {
    Ok(match entry.stdio.load_full() {
        Some(target) => {
            running(server, entry)?;
            let params = serde_json::json!({ "name": tool, "arguments": arguments });
            target
                .bridge()
                .request("tools/call", &params.to_string(), timeout)
                .await
                .map_err(|reason| McpError::Protocol {
                    url: format!("stdio:{server}"),
                    reason,
                })
                .and_then(|raw| {
                    serde_json::from_str(raw.get()).map_err(|e| McpError::Protocol {
                        url: format!("stdio:{server}"),
                        reason: e.to_string(),
                    })
                })
        }
        None => match entry.config.load().remote.clone() {
            Some(remote) => {
                running(server, entry)?;
                let url = remote.url.text.clone();
                crate::probe_client::ProbeClient::remote(remote)
                    .call_tool(
                        tool,
                        &serde_json::Value::Object(arguments).to_string(),
                        timeout,
                    )
                    .await
                    .map_err(|e| McpError::Protocol {
                        url,
                        reason: e.to_string(),
                    })
            }
            None => {
                let url = running_url(server, entry)?;
                ctx.mcp.call_tool(&url, tool, arguments, timeout).await
            }
        },
    })
}

/// The one server whose cached tool list offers `tool`.
fn resolve_tool(ctx: &ControlContext, tool: &str) -> Result<String, HandlerError> {
    let all = ctx.supervisor.directory().all();
    let offering: Vec<&String> = all
        .iter()
        .filter(|(_, entry)| entry.status.load().tools.iter().any(|t| t.name == tool))
        .map(|(name, _)| name)
        .collect();
    match offering.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            format!(
                "no running server offers a tool named {tool:?}; see `mcpctl tools`, or name the server"
            ),
        )),
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            Err(HandlerError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "tool {tool:?} is offered by several servers: {}; name one: mcpctl call SERVER {tool}",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The server's own MCP URL, if it is up.
/// An error unless the server is running (or starting).
fn running(name: &str, entry: &ServerEntry) -> Result<(), HandlerError> {
    match entry.status.load().state {
        ServerState::Running | ServerState::Starting => Ok(()),
        state => Err(HandlerError::new(
            ErrorCode::NotRunning,
            format!("server {name:?} is {state}, not running; start it with `mcpctl start {name}`"),
        )),
    }
}

fn running_url(name: &str, entry: &ServerEntry) -> Result<String, HandlerError> {
    let config = entry.config.load();
    let status = entry.status.load();
    match (status.state, convert::upstream_url(&config, &status)) {
        (ServerState::Running | ServerState::Starting, Some(url)) => Ok(url),
        (state, _) => Err(HandlerError::new(
            ErrorCode::NotRunning,
            format!("server {name:?} is {state}, not running; start it with `mcpctl start {name}`"),
        )),
    }
}

pub(super) async fn test(ctx: &ControlContext, request: TestRequest) -> HandlerResult {
    let entry = ctx
        .supervisor
        .directory()
        .get(&request.name)
        .ok_or_else(|| HandlerError::unknown_server(&request.name))?;
    Ok(Response::Test(handshake(ctx, &request.name, &entry).await).into())
}

/// One MCP handshake, reported as a value (a failure is an outcome, not an error).
async fn handshake(ctx: &ControlContext, name: &str, entry: &ServerEntry) -> TestReply {
    let mut reply = TestReply {
        server: name.to_owned(),
        ok: false,
        url: None,
        latency_ms: None,
        protocol_version: None,
        server_name: None,
        server_version: None,
        tools_count: None,
        error: None,
    };
    if let Some(target) = entry.stdio.load_full() {
        stdio_handshake(name, entry, target.bridge(), &mut reply).await;
        return reply;
    }
    if let Some(remote) = entry.config.load().remote.clone() {
        remote_handshake(remote, entry.config.load().health.timeout, &mut reply).await;
        return reply;
    }
    let url = match running_url(name, entry) {
        Ok(url) => url,
        Err(e) => {
            reply.error = Some(e.message);
            return reply;
        }
    };
    reply.url = Some(url.clone());
    let timeout = entry.config.load().health.timeout;
    match ctx.mcp.handshake(&url, timeout).await {
        Ok(hs) => {
            reply.ok = true;
            reply.latency_ms = Some(u64::try_from(hs.latency.as_millis()).unwrap_or(u64::MAX));
            reply.protocol_version = Some(hs.protocol_version);
            reply.server_name = Some(hs.server_name);
            reply.server_version = Some(hs.server_version);
            reply.tools_count = Some(u32::try_from(hs.tools.len()).unwrap_or(u32::MAX));
        }
        Err(e) => reply.error = Some(e.to_string()),
    }
    reply
}

/// The handshake of a remote server with the probe client (its TLS settings and the
/// operator's credential, which the rmcp client of `mcp_client` does not have): reached, and
/// its tools listed. Whatever state the supervisor shows, it is tried now.
async fn remote_handshake(
    remote: Arc<crate::remote::RemoteTarget>,
    timeout: std::time::Duration,
    reply: &mut TestReply,
) {
    reply.url = Some(remote.url.text.clone());
    let started = std::time::Instant::now();
    match crate::probe_client::ProbeClient::remote(remote)
        .ready(timeout)
        .await
    {
        Ok(tools) => {
            reply.ok = true;
            reply.latency_ms =
                Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            reply.tools_count = Some(u32::try_from(tools.len()).unwrap_or(u32::MAX));
        }
        Err(e) => reply.error = Some(e.to_string()),
    }
}

/// The handshake of a stdio server, over its pipe: the child's `initialize` answer (kept by
/// its bridge) and a fresh `tools/list`.
async fn stdio_handshake(
    name: &str,
    entry: &ServerEntry,
    bridge: &Arc<crate::stdio::Bridge>,
    reply: &mut TestReply,
) {
    if let Err(e) = running(name, entry) {
        reply.error = Some(e.message);
        return;
    }
    reply.url = Some(format!("stdio:{}", entry.config.load().binary.display()));
    let Some(init) = bridge.init_info() else {
        reply.error = Some(format!("server {name:?} is not initialized yet"));
        return;
    };
    let started = std::time::Instant::now();
    let timeout = entry.config.load().health.timeout;
    match bridge.request("tools/list", "{}", timeout).await {
        Ok(tools) => {
            let tools: serde_json::Value = serde_json::from_str(tools.get()).unwrap_or_default();
            let info: serde_json::Value =
                serde_json::from_str(init.result.get()).unwrap_or_default();
            let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
            reply.ok = true;
            reply.latency_ms =
                Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            reply.protocol_version = Some(init.protocol_version.clone());
            reply.server_name = text(&info["serverInfo"]["name"]);
            reply.server_version = text(&info["serverInfo"]["version"]);
            reply.tools_count = tools["tools"]
                .as_array()
                .map(|tools| u32::try_from(tools.len()).unwrap_or(u32::MAX));
        }
        Err(e) => reply.error = Some(e),
    }
}

/// Re-reads every configuration file from disk and handshakes each enabled server.
pub(super) async fn validate(ctx: &ControlContext, request: ValidateRequest) -> HandlerResult {
    let directory = ctx.supervisor.directory().clone();
    let all = directory.all();
    let virtual_named = request
        .name
        .as_ref()
        .is_some_and(|name| directory.get_virtual(name).is_some());
    let selected: Vec<(String, Arc<ServerEntry>)> = match &request.name {
        Some(_) if virtual_named => Vec::new(),
        Some(name) => {
            let entry = all
                .get(name)
                .ok_or_else(|| HandlerError::unknown_server(name))?;
            vec![(name.clone(), entry.clone())]
        }
        None => all.iter().map(|(n, e)| (n.clone(), e.clone())).collect(),
    };

    let current = ctx.config.load_full();
    let (errors, on_disk) = tokio::task::spawn_blocking(move || {
        let daemon = match config::load_daemon(current.source.as_deref()) {
            Ok(daemon) => daemon,
            Err(errors) if !errors.is_empty() => return (errors, Default::default()),
            Err(_) => current.as_ref().clone(),
        };
        let services = config::load_services(&daemon, None);
        (services.errors, services.virtuals)
    })
    .await
    .map_err(|e| {
        HandlerError::new(
            ErrorCode::Internal,
            format!("reading the configuration failed: {e}"),
        )
    })?;
    let config_errors: Vec<ConfigErrorInfo> = errors
        .iter()
        .filter(|error| match &request.name {
            Some(_) => selected
                .iter()
                .any(|(_, entry)| entry.config.load().file == error.file),
            None => true,
        })
        .map(convert::config_error)
        .collect();

    let checks = selected
        .iter()
        .filter(|(_, entry)| entry.status.load().state != ServerState::Disabled)
        .map(|(name, entry)| handshake(ctx, name, entry));
    let handshakes = futures::future::join_all(checks).await;
    let mut warnings: Vec<String> = selected
        .iter()
        .flat_map(|(name, entry)| {
            let config = entry.config.load();
            config::oauth_warning(name, &config.oauth)
                .into_iter()
                .chain(crate::authz::shadowed_rules(name, &config.oauth))
                .collect::<Vec<_>>()
        })
        .collect();
    // Conflicts of the virtual servers on disk, over the tools the members list now.
    for (name, virtual_config) in &on_disk {
        if request.name.as_ref().is_some_and(|wanted| wanted != name) {
            continue;
        }
        let catalog = crate::virtuals::catalog_of(&directory, virtual_config);
        warnings.extend(catalog.conflicts.iter().map(|c| c.describe(name)));
        warnings.extend(crate::authz::shadowed_rules(name, &virtual_config.oauth));
    }
    Ok(Response::Validate(ValidateReply {
        config_errors,
        handshakes,
        warnings,
    })
    .into())
}
