//! The daemon file (`mcpd.yaml`): its top-level settings, gateway, control socket, logs, auth
//! keys and the defaults servers inherit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::shared::{at_least_one, default_health, default_restart, health, positive, restart};
use crate::config::env::{Env, absolute};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::schema::Nested;
use crate::config::source::{Seg, Source, join, key};

const DEFAULT_PORT_RANGE: PortRange = PortRange {
    start: 5000,
    end: 5999,
};
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 4 << 20;

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
        .block::<RawDaemon>(&[], RawDaemon::NESTED, top, errors)
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

    // The fallback directory, when the socket or the state defaults into it.
    let fallback = env.fallback_dir();
    let private_dir = (control.socket.is_none() && env.default_socket().starts_with(&fallback)
        || state_dir.starts_with(&fallback))
    .then_some(fallback);
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
            limits: gateway.limits(),
            listen,
            public_url: public_url.url,
            public_host: public_url.host,
            allowed_origins: gateway.allowed_origins.unwrap_or_default(),
            allowed_hosts: gateway
                .allowed_hosts
                .unwrap_or_default()
                .into_iter()
                .map(|host| host.0)
                .collect(),
            trusted_proxies: gateway
                .trusted_proxies
                .unwrap_or_default()
                .into_iter()
                .map(|proxy| proxy.0)
                .collect(),
            max_body: gateway.max_body.map_or(DEFAULT_MAX_BODY, |size| size.0),
            web: gateway.web.unwrap_or(true),
        },
        control: ControlConfig {
            socket: match &control.socket {
                Some(socket) => resolve(socket),
                None => absolute(&env.cwd, &env.default_socket()),
            },
            mode: control.mode.map_or(0o660, |mode| mode.0),
            private_dir,
        },
        logs: LogsConfig {
            dir: logs_dir,
            rotation: logs.rotation.map_or(Rotation::Daily, Rotation::from),
            keep,
            buffer_lines,
            audit: logs.audit.unwrap_or(true),
        },
        auth: auth(source, &base, errors),
        defaults: defaults(source, errors),
        cgroup: super::limits::cgroup(source, root.cgroup.as_deref(), errors),
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
        .block::<RawAuth>(&path, RawAuth::NESTED, "in auth", errors)
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
        .block::<RawDefaults>(&path, RawDefaults::NESTED, "in defaults", errors)
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
        limits: super::limits::limits(source, &path, "in defaults", Limits::default(), errors),
    }
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
