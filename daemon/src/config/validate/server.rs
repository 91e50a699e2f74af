//! A server file: its `mcp_servers` entries, each checked on its own (names and ports used
//! twice across files are checked by `services`).

use std::path::{Path, PathBuf};

use super::limits;
use super::remote;
use super::shared::{audit_arguments, health, oauth_config, positive, restart};
use super::virtual_server;
use crate::config::env::{Env, Resolver, absolute};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::schema::Nested;
use crate::config::source::{Seg, Source, join, key, key_text};

/// The audit log's name in `logs.dir`, so no server may have it.
pub const AUDIT_LOG_NAME: &str = "audit";

/// True for `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_server_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// The servers of one server file, in the order written; errors of the file go to `errors`.
/// Checks that need other files (names and ports used twice) are the caller's. Virtual
/// servers are checked but left out; [`server_file_entries`] returns them too.
pub fn server_file(
    source: &Source,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
    errors: &mut Vec<ConfigError>,
) -> Vec<ServerConfig> {
    server_file_entries(source, daemon, env, resolver, errors).0
}

/// The servers and the virtual servers (members not resolved yet) of one server file.
pub fn server_file_entries(
    source: &Source,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
    errors: &mut Vec<ConfigError>,
) -> (Vec<ServerConfig>, Vec<VirtualConfig>) {
    let mut virtuals = Vec::new();
    let servers = entries(source, daemon, env, resolver, &mut virtuals, errors);
    (servers, virtuals)
}

fn entries(
    source: &Source,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
    virtuals: &mut Vec<VirtualConfig>,
    errors: &mut Vec<ConfigError>,
) -> Vec<ServerConfig> {
    if source.value.is_null() {
        errors.push(source.error(
            Default::default(),
            "the file is empty",
            "define servers under a top-level `mcp_servers:` key, or remove the file".to_owned(),
        ));
        return Vec::new();
    }
    source.block::<RawServerFile>(&[], RawServerFile::NESTED, "at the top level", errors);
    if !source.value.is_mapping() {
        return Vec::new();
    }
    let servers_path = [key("mcp_servers")];
    let entries = match source.value.get("mcp_servers") {
        None => {
            errors.push(source.error(
                Default::default(),
                "the file has no `mcp_servers` key",
                "put the servers under a top-level `mcp_servers:` key (see services/mcp/echo.yaml)".to_owned(),
            ));
            return Vec::new();
        }
        Some(yaml_serde::Value::Null) => return Vec::new(),
        Some(yaml_serde::Value::Mapping(entries)) => entries,
        Some(_) => {
            errors.push(source.error(
                source.value_pos(&servers_path),
                "mcp_servers must be a map of server name to settings",
                "write `mcp_servers:` then each server's name, indented, followed by its settings".to_owned(),
            ));
            return Vec::new();
        }
    };
    let file_dir = absolute(&env.cwd, source.file.parent().unwrap_or(Path::new("")));
    let mut servers = Vec::new();
    for (name, settings) in entries
        .iter()
        .map(|(name, settings)| (key_text(name), settings))
    {
        let path = join(&servers_path, [key(&name)]);
        if name == AUDIT_LOG_NAME {
            errors.push(source.error(
                source.key_pos(&path),
                format!("the server name \"{name}\" is reserved"),
                format!("`{AUDIT_LOG_NAME}` names the audit log in logs.dir (`{AUDIT_LOG_NAME}.log`); choose another name"),
            ));
        } else if !valid_server_name(&name) {
            errors.push(source.error(
                source.key_pos(&path),
                format!("invalid server name \"{name}\""),
                "a name is 1-63 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit".to_owned(),
            ));
        }
        let context = format!("in server \"{name}\"");
        let block = source.block::<RawServer>(&path, RawServer::NESTED, &context, errors);
        let raw = block.value;
        if !(settings.is_mapping() || settings.is_null()) {
            continue;
        }
        let oauth = source
            .block::<RawOAuth>(
                &join(&path, [key("oauth")]),
                &[],
                &format!("in server \"{name}\" oauth"),
                errors,
            )
            .value;
        if raw.aggregate.is_some() {
            virtuals.push(virtual_server::entry(
                source, &path, &name, raw, oauth, daemon, errors,
            ));
            continue;
        }
        virtual_server::refuse_virtual_keys(source, &path, &name, errors);
        let remote = if raw.url.is_some() {
            remote::remote(source, &path, &name, &raw, &file_dir, errors)
        } else {
            remote::refuse_remote_keys(source, &path, &name, errors);
            None
        };
        let restart = restart(
            source,
            &path,
            &format!("in server \"{name}\" restart"),
            &daemon.defaults.restart,
            errors,
        );
        let health = health(
            source,
            &path,
            &format!("in server \"{name}\" health"),
            &daemon.defaults.health,
            errors,
        );
        let limits = limits::limits(
            source,
            &path,
            &format!("in server \"{name}\""),
            daemon.defaults.limits,
            errors,
        );
        let may_switch = raw.user.is_some() && limits::may_switch_users();
        let run_as = limits::run_as(source, &path, &name, &raw, may_switch, errors);
        let sandbox = limits::sandbox(source, &path, &name, &raw, errors);
        let stop_timeout = raw
            .stop_timeout
            .map_or(daemon.defaults.stop_timeout, |d| d.0);
        positive(
            source,
            &join(&path, [key("stop_timeout")]),
            &context,
            stop_timeout,
            errors,
        );

        let binary_name = raw.binary.clone().unwrap_or_default();
        let binary = if raw.binary.is_none() {
            if !block.failed.contains("binary") && raw.url.is_none() {
                errors.push(source.error(
                    source.key_pos(&path),
                    format!("server \"{name}\" has no binary"),
                    "add `binary:` with a program name (looked up in bin_dirs, then PATH) or an absolute path, or `url:` for a server mcpd does not run"
                        .to_owned(),
                ));
            }
            PathBuf::new()
        } else {
            let wanted = if binary_name.contains('/') {
                absolute(&file_dir, Path::new(&binary_name))
                    .display()
                    .to_string()
            } else {
                binary_name.clone()
            };
            match resolver(&wanted, &daemon.bin_dirs, env) {
                Ok(found) => found,
                Err(why) => {
                    let hint = match &raw.package {
                        Some(package) => format!(
                            "build it (cargo build --release -p {package}), add its directory to bin_dirs, or write its absolute path"
                        ),
                        None => {
                            "install it, add its directory to bin_dirs, or write its absolute path"
                                .to_owned()
                        }
                    };
                    errors.push(source.error(
                        source.value_pos(&join(&path, [key("binary")])),
                        format!("server \"{name}\": {why}"),
                        hint,
                    ));
                    PathBuf::from(&binary_name)
                }
            }
        };

        if let Some(port) = raw.port
            && !daemon.port_range.contains(port)
        {
            errors.push(source.error(
                source.value_pos(&join(&path, [key("port")])),
                format!(
                    "port {port} of server \"{name}\" is outside port_range {}",
                    daemon.port_range
                ),
                format!(
                    "use a port inside {}, widen port_range in the daemon file, or omit port to have one allocated",
                    daemon.port_range
                ),
            ));
        }
        let mcp_path = raw.path.clone().unwrap_or_else(|| "/mcp".to_owned());
        // Both go into HTTP requests and headers, where a CR or LF would end a line.
        let path_clean = request_safe(
            source,
            &join(&path, [key("path")]),
            &name,
            "path",
            &mcp_path,
            errors,
        );
        if let Some(endpoint) = &raw.endpoint {
            request_safe(
                source,
                &join(&path, [key("endpoint")]),
                &name,
                "endpoint",
                endpoint,
                errors,
            );
        }
        if path_clean && !mcp_path.starts_with('/') {
            errors.push(source.error(
                source.value_pos(&join(&path, [key("path")])),
                format!("path \"{mcp_path}\" of server \"{name}\" does not start with /"),
                format!("write it as an absolute URL path, e.g. /{mcp_path}"),
            ));
        }

        let kind = if raw.url.is_some() {
            ServerKind::Remote
        } else {
            server_kind(source, &path, &name, &raw, errors)
        };

        servers.push(ServerConfig {
            kind,
            endpoint: raw
                .endpoint
                .unwrap_or_else(|| format!("{}/api/v1/mcp/{name}/mcp", daemon.gateway.public_url)),
            file: source.file.clone(),
            binary_name,
            binary,
            package: raw.package,
            port: raw.port,
            enabled: raw.enabled.unwrap_or(true),
            display_in_web: raw.display_in_web.unwrap_or(true),
            description: raw.description.unwrap_or_default(),
            oauth: oauth_config(oauth),
            audit_arguments: audit_arguments(raw.audit.as_ref()),
            args: raw.args.unwrap_or_default(),
            env: raw.env.unwrap_or_default(),
            env_passthrough: raw.env_passthrough.unwrap_or_default(),
            working_dir: raw.working_dir.map(|dir| absolute(&file_dir, &dir)),
            path: mcp_path,
            restart,
            health,
            stop_timeout,
            limits,
            run_as,
            sandbox,
            remote,
            name,
        });
    }
    servers
}

/// The kind of the server: `transport` and, for stdio, `sessions` with its limits. Keys that
/// do not apply to the kind are errors at the key.
fn server_kind(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: &RawServer,
    errors: &mut Vec<ConfigError>,
) -> ServerKind {
    let mut misplaced = |key_name: &str, why: &str| {
        errors.push(source.error(
            source.key_pos(&join(path, [key(key_name)])),
            format!("{key_name} of server \"{name}\" {why}"),
            format!("remove {key_name}, or set what it needs"),
        ));
    };
    match raw.transport {
        None | Some(RawTransport::Http) => {
            for (set, key_name) in [
                (raw.sessions.is_some(), "sessions"),
                (raw.max_sessions.is_some(), "max_sessions"),
                (raw.idle_timeout.is_some(), "idle_timeout"),
            ] {
                if set {
                    misplaced(key_name, "applies to transport: stdio only");
                }
            }
            ServerKind::Http
        }
        Some(RawTransport::Stdio) => {
            stdio_only_keys(source, path, name, raw, errors);
            match raw.sessions {
                None | Some(RawSessions::Shared) => {
                    let mut misplaced = |key_name: &str| {
                        errors.push(source.error(
                            source.key_pos(&join(path, [key(key_name)])),
                            format!("{key_name} of server \"{name}\" applies to sessions: per-client only"),
                            "remove it, or set sessions: per-client".to_owned(),
                        ));
                    };
                    if raw.max_sessions.is_some() {
                        misplaced("max_sessions");
                    }
                    if raw.idle_timeout.is_some() {
                        misplaced("idle_timeout");
                    }
                    ServerKind::Stdio(StdioSessions::Shared)
                }
                Some(RawSessions::PerClient) => {
                    let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
                    if max_sessions == 0 {
                        errors.push(source.error(
                            source.value_pos(&join(path, [key("max_sessions")])),
                            format!("max_sessions of server \"{name}\" is 0"),
                            "write a whole number of at least 1".to_owned(),
                        ));
                    }
                    let idle_timeout = raw.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0);
                    positive(
                        source,
                        &join(path, [key("idle_timeout")]),
                        &format!("in server \"{name}\""),
                        idle_timeout,
                        errors,
                    );
                    ServerKind::Stdio(StdioSessions::PerClient {
                        max_sessions,
                        idle_timeout,
                    })
                }
            }
        }
    }
}

/// A stdio server has no port and no HTTP path: either key is a mistake, said at the key.
fn stdio_only_keys(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: &RawServer,
    errors: &mut Vec<ConfigError>,
) {
    for (set, key_name) in [(raw.port.is_some(), "port"), (raw.path.is_some(), "path")] {
        if set {
            errors.push(source.error(
                source.key_pos(&join(path, [key(key_name)])),
                format!("server \"{name}\" has transport: stdio, which takes no {key_name}"),
                format!(
                    "remove {key_name}: mcpd talks to a stdio server over its stdin and stdout \
                     and serves it at the gateway's usual path"
                ),
            ));
        }
    }
}

/// False (and an error at the value) when `value` holds a control character (CR, LF, NUL, any
/// other C0 or C1 code, DEL) or, for the request-line `path`, white space.
fn request_safe(
    source: &Source,
    at: &[Seg],
    server: &str,
    what: &str,
    value: &str,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let bad = value
        .chars()
        .find(|c| c.is_control() || (what == "path" && c.is_whitespace()));
    let Some(bad) = bad else {
        return true;
    };
    let named = match bad {
        '\r' => "a carriage return (CR)".to_owned(),
        '\n' => "a line feed (LF)".to_owned(),
        '\0' => "a NUL byte".to_owned(),
        ' ' => "a space".to_owned(),
        other => format!("the control character U+{:04X}", u32::from(other)),
    };
    errors.push(source.error(
        source.value_pos(at),
        format!("{what} {value:?} of server \"{server}\" contains {named}"),
        format!(
            "{what} goes into HTTP requests, where such characters would break or inject lines: \
             write visible characters only, percent-encoding anything else (e.g. %20 for a space)"
        ),
    ));
    false
}
