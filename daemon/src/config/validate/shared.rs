//! What the daemon file and the server files share: the `restart` and `health` blocks (a
//! server's fall back to the daemon's defaults), and the checks of single values.

use std::time::Duration;

use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::source::{Seg, Source, join, key};

/// Keys that only a server mcpd runs as a process can have: refused beside `url` (a remote
/// server) and beside `aggregate` (a virtual server, which also refuses `health` and the
/// remote keys).
pub(super) const PROCESS_KEYS: &[&str] = &[
    "binary",
    "package",
    "port",
    "args",
    "env",
    "env_passthrough",
    "working_dir",
    "path",
    "stop_timeout",
    "restart",
    "limits",
    "user",
    "group",
    "sandbox",
    "transport",
    "sessions",
    "max_sessions",
    "idle_timeout",
];

pub(super) fn default_restart() -> RestartConfig {
    RestartConfig {
        policy: RestartPolicy::OnFailure,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        reset_after: Duration::from_secs(30),
        burst: 5,
        window: Duration::from_secs(300),
    }
}

pub(super) fn default_health() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        failures: 3,
        start_timeout: Duration::from_secs(30),
    }
}

/// The `restart` block under `parent`, each field falling back to `base`.
pub(super) fn restart(
    source: &Source,
    parent: &[Seg],
    context: &str,
    base: &RestartConfig,
    errors: &mut Vec<ConfigError>,
) -> RestartConfig {
    let path = join(parent, [key("restart")]);
    let block = source.block::<RawRestart>(&path, &[], context, errors);
    let raw = block.value;
    let config = RestartConfig {
        policy: raw.policy.map_or(base.policy, RestartPolicy::from),
        backoff: raw.backoff.map_or(base.backoff, |d| d.0),
        max_backoff: raw.max_backoff.map_or(base.max_backoff, |d| d.0),
        reset_after: raw.reset_after.map_or(base.reset_after, |d| d.0),
        burst: raw.burst.unwrap_or(base.burst),
        window: raw.window.map_or(base.window, |d| d.0),
    };
    // A key that failed holds its default, which is valid: single-key checks always run.
    at_least_one(
        source,
        &join(&path, [key("burst")]),
        context,
        config.burst.into(),
        errors,
    );
    positive(
        source,
        &join(&path, [key("window")]),
        context,
        config.window,
        errors,
    );
    let both_read = !block.failed.contains("backoff") && !block.failed.contains("max_backoff");
    if both_read && config.max_backoff < config.backoff {
        let at = if raw.max_backoff.is_some() {
            "max_backoff"
        } else {
            "backoff"
        };
        errors.push(source.error(
            source.value_pos(&join(&path, [key(at)])),
            format!(
                "max_backoff ({}) is below backoff ({}) {context}",
                humantime::format_duration(config.max_backoff),
                humantime::format_duration(config.backoff)
            ),
            "make max_backoff at least as long as backoff".to_owned(),
        ));
    }
    config
}

/// The `health` block under `parent`, each field falling back to `base`.
pub(super) fn health(
    source: &Source,
    parent: &[Seg],
    context: &str,
    base: &HealthConfig,
    errors: &mut Vec<ConfigError>,
) -> HealthConfig {
    let path = join(parent, [key("health")]);
    let block = source.block::<RawHealth>(&path, &[], context, errors);
    let raw = block.value;
    let config = HealthConfig {
        interval: raw.interval.map_or(base.interval, |d| d.0),
        timeout: raw.timeout.map_or(base.timeout, |d| d.0),
        failures: raw.failures.unwrap_or(base.failures),
        start_timeout: raw.start_timeout.map_or(base.start_timeout, |d| d.0),
    };
    positive(
        source,
        &join(&path, [key("interval")]),
        context,
        config.interval,
        errors,
    );
    positive(
        source,
        &join(&path, [key("timeout")]),
        context,
        config.timeout,
        errors,
    );
    positive(
        source,
        &join(&path, [key("start_timeout")]),
        context,
        config.start_timeout,
        errors,
    );
    at_least_one(
        source,
        &join(&path, [key("failures")]),
        context,
        config.failures.into(),
        errors,
    );
    config
}

pub(super) fn positive(
    source: &Source,
    path: &[Seg],
    context: &str,
    value: Duration,
    errors: &mut Vec<ConfigError>,
) {
    let name = name_of(path);
    if value.is_zero() {
        errors.push(source.error(
            source.value_pos(path),
            format!("{name} must be longer than zero {context}"),
            "write a duration such as \"500ms\", \"10s\" or \"5m\"".to_owned(),
        ));
    }
}

pub(super) fn at_least_one(
    source: &Source,
    path: &[Seg],
    context: &str,
    value: u64,
    errors: &mut Vec<ConfigError>,
) {
    let name = name_of(path);
    if value < 1 {
        errors.push(source.error(
            source.value_pos(path),
            format!("{name} must be at least 1, not {value} {context}"),
            "write a whole number of at least 1".to_owned(),
        ));
    }
}

/// The last key of `path`.
fn name_of(path: &[Seg]) -> &str {
    match path.last() {
        Some(Seg::Key(name)) => name,
        _ => "value",
    }
}

/// A server's (or virtual server's) `oauth` block with its defaults.
pub(super) fn oauth_config(oauth: RawOAuth) -> OAuthConfig {
    OAuthConfig {
        required: oauth.required.unwrap_or(false),
        scopes: oauth.scopes.map(|scopes| scopes.0).unwrap_or_default(),
        audience: oauth.audience.unwrap_or_else(|| "mcp".to_owned()),
        client_id: oauth.client_id,
        tools: oauth.tools.map(|rules| rules.0).unwrap_or_default(),
    }
}

/// `audit.arguments` of a server entry (default false).
pub(super) fn audit_arguments(audit: Option<&RawAudit>) -> bool {
    audit.and_then(|audit| audit.arguments).unwrap_or(false)
}
