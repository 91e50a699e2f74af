//! The public registry of enabled servers (`GET /api/v1/mcp/registry`) and each server's
//! RFC 9728 protected-resource metadata.

use std::time::SystemTime;

use http::{Response, StatusCode};
use serde::Serialize;

use super::response::{self, Body};
use crate::config::DaemonConfig;
use crate::directory::Directory;

#[derive(Serialize)]
struct Registry<'a> {
    data: Vec<RegistryEntry>,
    meta: Meta<'a>,
}

#[derive(Serialize)]
struct RegistryEntry {
    name: String,
    description: String,
    endpoint: String,
    port: Option<u16>,
    enabled: bool,
    display_in_web: bool,
    status: &'static str,
    oauth_required: bool,
    oauth_scopes: Vec<String>,
    tools_count: usize,
    /// A virtual server's member servers (absent for a server with a process).
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<String>>,
    /// A virtual server's members with their states and whether their cached tools are
    /// stale (absent for a server with a process).
    #[serde(skip_serializing_if = "Option::is_none")]
    member_states: Option<Vec<MemberState>>,
}

#[derive(Serialize)]
struct MemberState {
    name: String,
    status: &'static str,
    /// RFC 3339: when the member's probe last listed its tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    tools_cached_at: Option<String>,
    stale: bool,
}

#[derive(Serialize)]
struct Meta<'a> {
    timestamp: String,
    version: &'a str,
}

pub fn registry(directory: &Directory) -> Response<Body> {
    let servers = directory.all();
    let data = servers
        .values()
        .filter_map(|entry| {
            let config = entry.config.load();
            if !config.enabled {
                return None;
            }
            let status = entry.status.load();
            Some(RegistryEntry {
                name: config.name.clone(),
                description: config.description.clone(),
                endpoint: config.endpoint.clone(),
                port: status.port.or(config.port),
                enabled: config.enabled,
                display_in_web: config.display_in_web,
                status: status.state.as_str(),
                oauth_required: config.oauth.required,
                oauth_scopes: config.oauth.scopes.clone(),
                tools_count: status.tools.len(),
                members: None,
                member_states: None,
            })
        })
        .collect::<Vec<_>>();
    let mut data = data;
    for config in directory.virtuals().values().filter(|v| v.enabled) {
        let catalog = super::virtual_server::catalog_of(directory, config);
        data.push(RegistryEntry {
            name: config.name.clone(),
            description: config.description.clone(),
            endpoint: config.endpoint.clone(),
            port: None,
            enabled: true,
            display_in_web: config.display_in_web,
            status: directory.virtual_state(config).as_str(),
            oauth_required: config.oauth.required,
            oauth_scopes: config.oauth.scopes.clone(),
            tools_count: catalog.tools.len(),
            members: Some(config.members.clone()),
            member_states: Some(
                crate::virtuals::member_views(directory, config)
                    .into_iter()
                    .map(|member| MemberState {
                        name: member.name,
                        status: member.state.as_str(),
                        tools_cached_at: member
                            .tools_at
                            .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
                        stale: member.stale,
                    })
                    .collect(),
            ),
        });
    }
    data.sort_by(|a, b| a.name.cmp(&b.name));
    let body = Registry {
        data,
        meta: Meta {
            timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            version: env!("CARGO_PKG_VERSION"),
        },
    };
    response::json(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct ResourceMetadata<'a> {
    resource: &'a str,
    authorization_servers: &'a [String],
    scopes_supported: &'a [String],
    bearer_methods_supported: [&'static str; 1],
}

/// RFC 9728 metadata of server `name`, 404 when it is not configured or disabled.
pub fn resource_metadata(
    directory: &Directory,
    config: &DaemonConfig,
    name: &str,
) -> Response<Body> {
    let (endpoint, scopes, enabled) = match (directory.get(name), directory.get_virtual(name)) {
        (Some(entry), _) => {
            let server = entry.config.load();
            (
                server.endpoint.clone(),
                server.oauth.scopes.clone(),
                server.enabled,
            )
        }
        (None, Some(server)) => (
            server.endpoint.clone(),
            server.oauth.scopes.clone(),
            server.enabled,
        ),
        (None, None) => {
            return response::error(StatusCode::NOT_FOUND, "unknown server", Some(name));
        }
    };
    if !enabled {
        return response::error(StatusCode::NOT_FOUND, "server is disabled", Some(name));
    }
    let body = ResourceMetadata {
        resource: &endpoint,
        authorization_servers: &config.auth.authorization_servers,
        scopes_supported: &scopes,
        bearer_methods_supported: ["header"],
    };
    response::json(StatusCode::OK, &body)
}

/// Where a server's metadata is served: the `resource_metadata` of its challenges.
pub fn resource_metadata_url(public_url: &str, name: &str) -> String {
    format!("{public_url}/.well-known/oauth-protected-resource/api/v1/mcp/{name}/mcp")
}
