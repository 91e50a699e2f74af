//! The one test builder of validated config values, built by hand (no YAML), for the tests
//! of every module: a daemon config under a temp dir and the servers of it. Each test starts
//! from these and sets only the fields it is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    AuthConfig, ControlConfig, DaemonConfig, GatewayConfig, HealthConfig, LogsConfig, OAuthConfig,
    PortRange, RestartConfig, RestartPolicy, Rotation, ServerConfig, ServerDefaults, ServerKind,
};

/// A daemon config with everything under `dir` (services in `mcp/`, `state/`, `logs/`, the
/// socket `mcpd.sock`), mcpd's default port range, a gateway on `127.0.0.1:0` published as
/// `http://localhost:8080`, no auth, and the server defaults of [`defaults`].
pub(crate) fn daemon_config(dir: &Path) -> DaemonConfig {
    DaemonConfig {
        source: None,
        services_dir: dir.join("mcp"),
        port_range: PortRange {
            start: 5000,
            end: 5999,
        },
        bin_dirs: Vec::new(),
        state_dir: dir.join("state"),
        gateway: GatewayConfig {
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            public_url: "http://localhost:8080".into(),
            public_host: "localhost:8080".into(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_body: 4 << 20,
            limits: Default::default(),
            web: true,
        },
        control: ControlConfig {
            socket: dir.join("mcpd.sock"),
            mode: 0o660,
            private_dir: None,
        },
        logs: LogsConfig {
            dir: dir.join("logs"),
            rotation: Rotation::Never,
            keep: 1,
            buffer_lines: 100,
            audit: true,
        },
        auth: AuthConfig::default(),
        defaults: defaults(),
        cgroup: Default::default(),
    }
}

/// mcpd's documented server defaults (the loader's are checked against these): restarts on
/// failure after 1 s (up to 60 s, 5 in 5 min), probes every 10 s (5 s timeout, 3 failures,
/// 30 s to get ready), 10 s to stop.
pub(crate) fn defaults() -> ServerDefaults {
    ServerDefaults {
        restart: RestartConfig {
            policy: RestartPolicy::OnFailure,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
            burst: 5,
            window: Duration::from_secs(300),
        },
        health: HealthConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failures: 3,
            start_timeout: Duration::from_secs(30),
        },
        stop_timeout: Duration::from_secs(10),
        limits: Default::default(),
    }
}

/// Server defaults for tests that run real processes: restarts after 50 ms (up to 400 ms),
/// 2 s probe timeout, 10 s to get ready, 300 ms to stop.
pub(crate) fn fast_defaults() -> ServerDefaults {
    let mut fast = defaults();
    fast.restart.backoff = Duration::from_millis(50);
    fast.restart.max_backoff = Duration::from_millis(400);
    fast.health.timeout = Duration::from_secs(2);
    fast.health.start_timeout = Duration::from_secs(10);
    fast.stop_timeout = Duration::from_millis(300);
    fast
}

/// Server `name` of `daemon`: file `<services_dir>/<name>.yaml`, binary
/// `/usr/bin/mcp-echo`, path `/mcp`, no OAuth, the daemon's defaults.
pub(crate) fn server_config(daemon: &DaemonConfig, name: &str) -> ServerConfig {
    ServerConfig {
        name: name.into(),
        kind: ServerKind::Http,
        file: daemon.services_dir.join(format!("{name}.yaml")),
        binary_name: "mcp-echo".into(),
        binary: PathBuf::from("/usr/bin/mcp-echo"),
        package: None,
        port: None,
        endpoint: format!("http://localhost:8080/api/v1/mcp/{name}/mcp"),
        enabled: true,
        display_in_web: true,
        description: format!("{name} server"),
        oauth: no_oauth(),
        audit_arguments: false,
        args: Vec::new(),
        env: BTreeMap::new(),
        env_passthrough: Vec::new(),
        working_dir: None,
        path: "/mcp".into(),
        restart: daemon.defaults.restart.clone(),
        health: daemon.defaults.health.clone(),
        stop_timeout: daemon.defaults.stop_timeout,
        limits: daemon.defaults.limits,
        run_as: None,
        sandbox: Default::default(),
        remote: None,
    }
}

/// Server `name` running `binary`, with the [`fast_defaults`], for tests without a daemon
/// config of their own (files under `/etc/mcpd`).
pub(crate) fn server_running(name: &str, binary: impl Into<PathBuf>) -> ServerConfig {
    let mut daemon = daemon_config(Path::new("/etc/mcpd"));
    daemon.defaults = fast_defaults();
    let mut server = server_config(&daemon, name);
    server.binary = binary.into();
    server.binary_name = server.binary.display().to_string();
    server
}

/// No OAuth: anyone may call the server.
pub(crate) fn no_oauth() -> OAuthConfig {
    OAuthConfig {
        required: false,
        scopes: Vec::new(),
        audience: "mcp".into(),
        client_id: None,
        tools: Vec::new(),
    }
}

/// OAuth required, with `scopes`.
pub(crate) fn oauth(scopes: &[&str]) -> OAuthConfig {
    OAuthConfig {
        required: true,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..no_oauth()
    }
}
