//! A virtual server entry of a server file (`aggregate:` instead of `binary:`): its own keys
//! checked here; its members are resolved once every file is read ([`resolve`]).

use std::collections::BTreeMap;

use super::shared::{audit_arguments, oauth_config};
use crate::authz::ToolPattern;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::source::{Seg, Source, join, key};

use super::shared::PROCESS_KEYS;

/// Besides the process keys: a virtual server is not probed and is no remote server.
const NOT_VIRTUAL_KEYS: &[&str] = &["health", "url", "tls", "upstream_auth"];

/// Keys only a virtual server has.
pub const VIRTUAL_KEYS: &[&str] = &[
    "exclude",
    "tools",
    "separator",
    "prefix",
    "max_calls_per_caller",
];

/// `max_calls_per_caller` when not set, and its largest value.
pub const DEFAULT_MAX_CALLS_PER_CALLER: u32 = 16;
const MAX_CALLS_PER_CALLER: u32 = 1024;

/// The longest separator accepted.
const MAX_SEPARATOR: usize = 8;

/// Errors for virtual-only keys on a server with a process.
pub fn refuse_virtual_keys(
    source: &Source,
    path: &[Seg],
    name: &str,
    errors: &mut Vec<ConfigError>,
) {
    for wanted in VIRTUAL_KEYS {
        if present(source, path, wanted) {
            errors.push(source.error(
                source.key_pos(&join(path, [key(wanted)])),
                format!("server \"{name}\": `{wanted}` is a key of virtual servers only"),
                "add `aggregate:` (and no binary) to make this a virtual server, or remove the key"
                    .to_owned(),
            ));
        }
    }
}

pub(super) fn present(source: &Source, path: &[Seg], wanted: &str) -> bool {
    let mut value = &source.value;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => value.get(k.as_str()),
            Seg::Index(i) => value.get(*i),
        };
        match next {
            Some(next) => value = next,
            None => return false,
        }
    }
    value.get(wanted).is_some()
}

/// One virtual server entry; `members` stays empty until [`resolve`].
#[allow(clippy::too_many_arguments)]
pub fn entry(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: RawServer,
    oauth: RawOAuth,
    daemon: &DaemonConfig,
    errors: &mut Vec<ConfigError>,
) -> VirtualConfig {
    for refused in PROCESS_KEYS.iter().chain(NOT_VIRTUAL_KEYS) {
        if present(source, path, refused) {
            let hint = if *refused == "binary" {
                "a server either runs a process (`binary`) or aggregates others (`aggregate`): remove one"
            } else {
                "a virtual server runs no process: remove the key"
            };
            errors.push(source.error(
                source.key_pos(&join(path, [key(refused)])),
                format!("virtual server \"{name}\": `{refused}` cannot go with `aggregate`"),
                hint.to_owned(),
            ));
        }
    }
    let aggregate_path = join(path, [key("aggregate")]);
    let written = raw.aggregate.unwrap_or_default();
    if written.is_empty() {
        errors.push(source.error(
            source.value_pos(&aggregate_path),
            format!("virtual server \"{name}\" aggregates no server"),
            "list member servers by name or glob, e.g. aggregate: [\"*\"]".to_owned(),
        ));
    }
    let mut aggregate = Vec::new();
    for (index, text) in written.iter().enumerate() {
        let at = join(&aggregate_path, [Seg::Index(index)]);
        match ToolPattern::parse(text) {
            Ok(pattern) => {
                let pos = source.value_pos(&at);
                aggregate.push(MemberSelector {
                    pattern,
                    line: pos.line,
                    column: pos.column,
                });
            }
            Err(why) => errors.push(source.error(
                source.value_pos(&at),
                format!("virtual server \"{name}\": member {text:?}: {why}"),
                "write a server name, or a glob such as \"*\" or \"db-*\"".to_owned(),
            )),
        }
    }
    let mut exclude = Vec::new();
    for (index, text) in raw.exclude.unwrap_or_default().iter().enumerate() {
        match ToolPattern::parse(text) {
            Ok(pattern) => exclude.push(pattern),
            Err(why) => errors.push(source.error(
                source.value_pos(&join(path, [key("exclude"), Seg::Index(index)])),
                format!("virtual server \"{name}\": exclude {text:?}: {why}"),
                "write a server name or a glob".to_owned(),
            )),
        }
    }
    let mut tools = Vec::new();
    for (index, text) in raw.tools.unwrap_or_default().iter().enumerate() {
        let (negated, body) = match text.strip_prefix('!') {
            Some(body) => (true, body),
            None => (false, text.as_str()),
        };
        match ToolPattern::parse(body) {
            Ok(pattern) => tools.push(ToolFilter { pattern, negated }),
            Err(why) => errors.push(source.error(
                source.value_pos(&join(path, [key("tools"), Seg::Index(index)])),
                format!("virtual server \"{name}\": tools filter {text:?}: {why}"),
                "write a glob on exposed names, e.g. \"echo_*\", or \"!*_delete*\" to leave names out"
                    .to_owned(),
            )),
        }
    }
    let separator = raw.separator.unwrap_or_else(|| "_".to_owned());
    if separator.is_empty()
        || separator.len() > MAX_SEPARATOR
        || !separator
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errors.push(source.error(
            source.value_pos(&join(path, [key("separator")])),
            format!("virtual server \"{name}\": invalid separator {separator:?}"),
            format!(
                "1 to {MAX_SEPARATOR} characters of A-Z, a-z, 0-9, `_` and `-` (exposed tool names must match ^[a-zA-Z0-9_-]{{1,64}}$)"
            ),
        ));
    }
    let max_calls_per_caller = raw
        .max_calls_per_caller
        .unwrap_or(DEFAULT_MAX_CALLS_PER_CALLER);
    if !(1..=MAX_CALLS_PER_CALLER).contains(&max_calls_per_caller) {
        errors.push(source.error(
            source.value_pos(&join(path, [key("max_calls_per_caller")])),
            format!(
                "virtual server \"{name}\": max_calls_per_caller {max_calls_per_caller} is out of range"
            ),
            format!(
                "1 to {MAX_CALLS_PER_CALLER} requests in flight per caller (default {DEFAULT_MAX_CALLS_PER_CALLER})"
            ),
        ));
    }
    let prefix_pos = source.value_pos(&join(path, [key("prefix")]));
    VirtualConfig {
        name: name.to_owned(),
        file: source.file.clone(),
        endpoint: raw
            .endpoint
            .unwrap_or_else(|| format!("{}/api/v1/mcp/{name}/mcp", daemon.gateway.public_url)),
        enabled: raw.enabled.unwrap_or(true),
        display_in_web: raw.display_in_web.unwrap_or(true),
        description: raw.description.unwrap_or_default(),
        oauth: oauth_config(oauth),
        audit_arguments: audit_arguments(raw.audit.as_ref()),
        aggregate,
        exclude,
        tools,
        separator,
        prefix: match raw.prefix {
            Some(RawPrefix::Never) => PrefixMode::Never,
            _ => PrefixMode::Always,
        },
        prefix_at: (prefix_pos.line, prefix_pos.column),
        members: Vec::new(),
        max_calls_per_caller,
    }
}

/// Resolves the members of every virtual server against the servers of every file: a name
/// must be a server (not a virtual one); a glob takes every enabled server it matches;
/// `exclude` is applied last. A virtual server with an error is left out (its previous
/// version, if any, kept) and the error located at its entry.
pub fn resolve(
    servers: &BTreeMap<String, ServerConfig>,
    virtuals: &mut BTreeMap<String, VirtualConfig>,
    previous: Option<&BTreeMap<String, VirtualConfig>>,
    errors: &mut Vec<ConfigError>,
) {
    let names: std::collections::BTreeSet<String> = virtuals.keys().cloned().collect();
    for name in &names {
        let Some(mut config) = virtuals.remove(name) else {
            continue;
        };
        let name = name.clone();
        match members_of(&config, servers, &names) {
            Ok(members) => {
                config.members = members;
                virtuals.insert(name, config);
            }
            Err(mut found) => {
                errors.append(&mut found);
                if let Some(kept) = previous.and_then(|p| p.get(&name)) {
                    virtuals.insert(name, kept.clone());
                }
            }
        }
    }
}

fn members_of(
    config: &VirtualConfig,
    servers: &BTreeMap<String, ServerConfig>,
    virtuals: &std::collections::BTreeSet<String>,
) -> Result<Vec<String>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let error = |line, column, message: String, hint: &str| ConfigError {
        file: config.file.clone(),
        line,
        column,
        message,
        hint: Some(hint.to_owned()),
    };
    let mut members: Vec<String> = Vec::new();
    for selector in &config.aggregate {
        let wanted = selector.pattern.as_str();
        if selector.is_glob() {
            for (server, server_config) in servers {
                if server_config.enabled
                    && selector.pattern.matches(server)
                    && !members.contains(server)
                {
                    members.push(server.clone());
                }
            }
        } else if wanted == config.name || virtuals.contains(wanted) {
            errors.push(error(
                selector.line,
                selector.column,
                format!(
                    "virtual server \"{}\": member \"{wanted}\" is itself a virtual server",
                    config.name
                ),
                "a virtual server aggregates servers that run a process; list those instead",
            ));
        } else if servers.contains_key(wanted) {
            if !members.iter().any(|m| m == wanted) {
                members.push(wanted.to_owned());
            }
        } else {
            errors.push(error(
                selector.line,
                selector.column,
                format!(
                    "virtual server \"{}\": unknown member server \"{wanted}\"",
                    config.name
                ),
                "name a server defined in services_dir, or use a glob such as \"*\"",
            ));
        }
    }
    members.retain(|member| !config.exclude.iter().any(|p| p.matches(member)));
    if config.prefix == PrefixMode::Never && members.len() != 1 && errors.is_empty() {
        errors.push(error(
            config.prefix_at.0,
            config.prefix_at.1,
            format!(
                "virtual server \"{}\": prefix: never needs exactly one member, it has {}",
                config.name,
                members.len()
            ),
            "without prefixes two members' tools could share a name: use prefix: always",
        ));
    }
    if errors.is_empty() {
        Ok(members)
    } else {
        Err(errors)
    }
}
