//! Raw YAML blocks -> the validated types of `model`, with defaults applied, relative paths
//! resolved, and every error collected with its position.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{Env, Resolver, absolute};
use super::error::ConfigError;
use super::model::*;
use super::raw::*;
use super::source::{Seg, Source, join, key, key_text};

const DEFAULT_PORT_RANGE: PortRange = PortRange {
    start: 5000,
    end: 5999,
};
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 4 << 20;

pub fn default_restart() -> RestartConfig {
    RestartConfig {
        policy: RestartPolicy::OnFailure,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        reset_after: Duration::from_secs(30),
        burst: 5,
        window: Duration::from_secs(300),
    }
}

pub fn default_health() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        failures: 3,
        start_timeout: Duration::from_secs(30),
    }
}

/// The daemon settings from `source` (or built-in defaults when `None`); relative paths
/// resolve against the file's directory, or the working directory without a file.
pub fn daemon(source: Option<&Source>, env: &Env, errors: &mut Vec<ConfigError>) -> DaemonConfig {
    let base = match source {
        Some(source) => source
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        None => env.cwd.clone(),
    };
    let base = absolute(&env.cwd, &base);
    let resolve = |path: &Path| absolute(&base, path);
    let has_file = source.is_some();
    let empty = Source::empty();
    let source = source.unwrap_or(&empty);
    let top = "at the top level";

    let root = source
        .block::<RawDaemon>(
            &[],
            &["gateway", "control", "logs", "auth", "defaults"],
            top,
            errors,
        )
        .value;
    let gateway = source
        .block::<RawGateway>(&[key("gateway")], &[], "in gateway", errors)
        .value;
    let control = source
        .block::<RawControl>(&[key("control")], &[], "in control", errors)
        .value;
    let logs = source
        .block::<RawLogs>(&[key("logs")], &[], "in logs", errors)
        .value;

    let services_dir = match (&root.services_dir, has_file) {
        (Some(dir), _) => resolve(dir),
        (None, false) => resolve(Path::new("services/mcp")),
        (None, true) => resolve(Path::new("mcp")),
    };
    let state_dir = match &root.state_dir {
        Some(dir) => resolve(dir),
        None => absolute(&env.cwd, &env.default_state_dir()),
    };
    let bin_dirs = match &root.bin_dirs {
        Some(dirs) => dirs.iter().map(|dir| resolve(dir)).collect(),
        None => env.exe_dir.iter().cloned().collect(),
    };
    let logs_dir = match &logs.dir {
        Some(dir) => resolve(dir),
        None => absolute(&env.cwd, &env.default_logs_dir(&state_dir)),
    };
    let logs_path = [key("logs")];
    let keep = logs.keep.unwrap_or(7);
    at_least_one(
        source,
        &join(&logs_path, [key("keep")]),
        "in logs",
        keep as u64,
        errors,
    );
    let buffer_lines = logs.buffer_lines.unwrap_or(1000);
    at_least_one(
        source,
        &join(&logs_path, [key("buffer_lines")]),
        "in logs",
        buffer_lines as u64,
        errors,
    );

    let listen: SocketAddr = gateway
        .listen
        .map(|listen| listen.0)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen address"));
    let public_url = gateway
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(listen));

    DaemonConfig {
        source: has_file.then(|| absolute(&env.cwd, &source.file)),
        services_dir,
        port_range: root
            .port_range
            .map(|range| PortRange {
                start: range.start,
                end: range.end,
            })
            .unwrap_or(DEFAULT_PORT_RANGE),
        bin_dirs,
        state_dir,
        gateway: GatewayConfig {
            listen,
            public_url: public_url.url,
            public_host: public_url.host,
            allowed_origins: gateway.allowed_origins.unwrap_or_default(),
            allowed_hosts: gateway.allowed_hosts.unwrap_or_default(),
            trusted_proxies: gateway
                .trusted_proxies
                .unwrap_or_default()
                .into_iter()
                .map(|proxy| proxy.0)
                .collect(),
            max_body: gateway.max_body.map_or(DEFAULT_MAX_BODY, |size| size.0),
        },
        control: ControlConfig {
            socket: match &control.socket {
                Some(socket) => resolve(socket),
                None => absolute(&env.cwd, &env.default_socket()),
            },
            mode: control.mode.map_or(0o660, |mode| mode.0),
        },
        logs: LogsConfig {
            dir: logs_dir,
            rotation: logs.rotation.map_or(Rotation::Daily, Rotation::from),
            keep,
            buffer_lines,
        },
        auth: auth(source, &base, errors),
        defaults: defaults(source, errors),
    }
}

/// Without `gateway.public_url`, clients are told to reach the gateway where it listens:
/// `http://localhost:<port>` for a loopback or unspecified address, else the address itself.
fn default_public_url(listen: SocketAddr) -> PublicUrl {
    let ip = listen.ip();
    let host = if ip.is_loopback() || ip.is_unspecified() {
        format!("localhost:{}", listen.port())
    } else {
        listen.to_string()
    };
    PublicUrl {
        url: format!("http://{host}"),
        host,
    }
}

fn auth(source: &Source, base: &Path, errors: &mut Vec<ConfigError>) -> AuthConfig {
    let path = [key("auth")];
    let raw = source
        .block::<RawAuth>(&path, &["keys"], "in auth", errors)
        .value;
    let keys_path = join(&path, [key("keys")]);
    let mut keys = Vec::new();
    match source.value.get("auth").and_then(|auth| auth.get("keys")) {
        None | Some(yaml_serde::Value::Null) => {}
        Some(yaml_serde::Value::Sequence(entries)) => {
            for index in 0..entries.len() {
                let entry_path = join(&keys_path, [Seg::Index(index)]);
                let context = format!("in auth.keys[{index}]");
                let block = source.block::<RawKey>(&entry_path, &[], &context, errors);
                if let Some(key) = key_source(
                    source,
                    &entry_path,
                    &context,
                    block.value,
                    base,
                    block.ok,
                    errors,
                ) {
                    keys.push(key);
                }
            }
        }
        Some(_) => errors.push(
            source.error(
                source.value_pos(&keys_path),
                "auth.keys must be a list",
                "write a list such as [{hs256_secret_file: jwt.secret}, {jwks_file: jwks.json}]"
                    .to_owned(),
            ),
        ),
    }
    AuthConfig {
        issuer: raw.issuer,
        authorization_servers: raw.authorization_servers.unwrap_or_default(),
        keys,
        leeway: raw
            .leeway
            .map_or(Duration::from_secs(30), |leeway| leeway.0),
    }
}

fn key_source(
    source: &Source,
    path: &[Seg],
    context: &str,
    raw: RawKey,
    base: &Path,
    ok: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<KeySource> {
    if !ok {
        return None;
    }
    let kinds = [&raw.hs256_secret_file, &raw.public_key_file, &raw.jwks_file]
        .iter()
        .filter(|kind| kind.is_some())
        .count();
    let hint =
        "give exactly one of hs256_secret_file, public_key_file (with algorithm) or jwks_file"
            .to_owned();
    if kinds != 1 {
        let message = if kinds == 0 {
            "a key without a file"
        } else {
            "a key with more than one file"
        };
        errors.push(source.error(source.value_pos(path), format!("{message} {context}"), hint));
        return None;
    }
    if let Some(file) = raw.public_key_file {
        let Some(algorithm) = raw.algorithm else {
            errors.push(source.error(
                source.value_pos(path),
                format!("public_key_file without algorithm {context}"),
                format!("add `algorithm:` with one of {PUBLIC_KEY_ALGORITHMS}"),
            ));
            return None;
        };
        return Some(KeySource::PublicKeyFile {
            path: absolute(base, &file),
            algorithm: algorithm.0,
        });
    }
    if raw.algorithm.is_some() {
        errors.push(
            source.error(
                source.value_pos(&join(path, [key("algorithm")])),
                format!("algorithm only applies to public_key_file {context}"),
                "remove `algorithm:` (HS256 secrets and JWKS keys carry their own algorithm)"
                    .to_owned(),
            ),
        );
        return None;
    }
    match (raw.hs256_secret_file, raw.jwks_file) {
        (Some(file), _) => Some(KeySource::Hs256SecretFile(absolute(base, &file))),
        (_, Some(file)) => Some(KeySource::JwksFile(absolute(base, &file))),
        (None, None) => None,
    }
}

fn defaults(source: &Source, errors: &mut Vec<ConfigError>) -> ServerDefaults {
    let path = [key("defaults")];
    let raw = source
        .block::<RawDefaults>(&path, &["restart", "health"], "in defaults", errors)
        .value;
    let stop_timeout = raw.stop_timeout.map_or(Duration::from_secs(10), |d| d.0);
    positive(
        source,
        &join(&path, [key("stop_timeout")]),
        "in defaults",
        stop_timeout,
        errors,
    );
    ServerDefaults {
        restart: restart(
            source,
            &path,
            "in defaults.restart",
            &default_restart(),
            errors,
        ),
        health: health(
            source,
            &path,
            "in defaults.health",
            &default_health(),
            errors,
        ),
        stop_timeout,
    }
}

/// The `restart` block under `parent`, each field falling back to `base`.
fn restart(
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
fn health(
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

fn positive(
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

fn at_least_one(
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
/// Checks that need other files (names and ports used twice) are the caller's.
pub fn server_file(
    source: &Source,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
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
    source.block::<RawServerFile>(&[], &["mcp_servers"], "at the top level", errors);
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
        if !valid_server_name(&name) {
            errors.push(source.error(
                source.key_pos(&path),
                format!("invalid server name \"{name}\""),
                "a name is 1-63 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit".to_owned(),
            ));
        }
        let context = format!("in server \"{name}\"");
        let block =
            source.block::<RawServer>(&path, &["oauth", "restart", "health"], &context, errors);
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
            if !block.failed.contains("binary") {
                errors.push(source.error(
                    source.key_pos(&path),
                    format!("server \"{name}\" has no binary"),
                    "add `binary:` with a program name (looked up in bin_dirs, then PATH) or an absolute path"
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
        if !mcp_path.starts_with('/') {
            errors.push(source.error(
                source.value_pos(&join(&path, [key("path")])),
                format!("path \"{mcp_path}\" of server \"{name}\" does not start with /"),
                format!("write it as an absolute URL path, e.g. /{mcp_path}"),
            ));
        }

        servers.push(ServerConfig {
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
            oauth: OAuthConfig {
                required: oauth.required.unwrap_or(false),
                scopes: oauth.scopes.unwrap_or_default(),
                audience: oauth.audience.unwrap_or_else(|| "mcp".to_owned()),
                client_id: oauth.client_id,
            },
            args: raw.args.unwrap_or_default(),
            env: raw.env.unwrap_or_default(),
            env_passthrough: raw.env_passthrough.unwrap_or_default(),
            working_dir: raw.working_dir.map(|dir| absolute(&file_dir, &dir)),
            path: mcp_path,
            restart,
            health,
            stop_timeout,
            name,
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_defaults_to_where_the_gateway_listens() {
        for (listen, url) in [
            ("127.0.0.1:8080", "http://localhost:8080"),
            ("0.0.0.0:9000", "http://localhost:9000"),
            ("[::]:9001", "http://localhost:9001"),
            ("[::1]:9002", "http://localhost:9002"),
            ("192.0.2.7:9003", "http://192.0.2.7:9003"),
            ("[2001:db8::1]:9004", "http://[2001:db8::1]:9004"),
        ] {
            let public = default_public_url(listen.parse().unwrap());
            assert_eq!(public.url, url, "{listen}");
            assert_eq!(public.host, url.trim_start_matches("http://"), "{listen}");
        }
    }
}
