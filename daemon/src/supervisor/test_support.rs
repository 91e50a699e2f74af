//! Test helpers: validated config values built by hand (the YAML loader is not needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    AuthConfig, ControlConfig, DaemonConfig, GatewayConfig, HealthConfig, LogsConfig, OAuthConfig,
    PortRange, RestartConfig, RestartPolicy, Rotation, ServerConfig, ServerDefaults,
};

pub fn restart_config() -> RestartConfig {
    RestartConfig {
        policy: RestartPolicy::OnFailure,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        reset_after: Duration::from_secs(30),
        burst: 5,
        window: Duration::from_secs(300),
    }
}

pub fn health_config() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        failures: 3,
        start_timeout: Duration::from_secs(10),
    }
}

pub fn server_config(name: &str, binary: impl Into<PathBuf>) -> ServerConfig {
    let binary = binary.into();
    ServerConfig {
        name: name.to_owned(),
        file: PathBuf::from(format!("/etc/mcpd/mcp/{name}.yaml")),
        binary_name: binary.display().to_string(),
        binary,
        package: None,
        port: None,
        endpoint: format!("http://localhost:8080/api/v1/mcp/{name}/mcp"),
        enabled: true,
        display_in_web: true,
        description: String::new(),
        oauth: OAuthConfig {
            required: false,
            scopes: vec![],
            audience: "mcp".into(),
            client_id: None,
        },
        args: vec![],
        env: BTreeMap::new(),
        env_passthrough: vec![],
        working_dir: None,
        path: "/mcp".into(),
        restart: restart_config(),
        health: health_config(),
        stop_timeout: Duration::from_millis(300),
    }
}

pub fn daemon_config(dir: &Path, range: PortRange) -> DaemonConfig {
    DaemonConfig {
        source: None,
        services_dir: dir.join("mcp"),
        port_range: range,
        bin_dirs: vec![],
        state_dir: dir.join("state"),
        gateway: GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: "http://localhost:8080".into(),
            public_host: "localhost:8080".into(),
            allowed_origins: vec![],
            allowed_hosts: vec![],
            trusted_proxies: Vec::new(),
            max_body: 4 << 20,
        },
        control: ControlConfig {
            socket: dir.join("mcpd.sock"),
            mode: 0o660,
        },
        logs: LogsConfig {
            dir: dir.join("logs"),
            rotation: Rotation::Never,
            keep: 3,
            buffer_lines: 100,
        },
        auth: AuthConfig::default(),
        defaults: ServerDefaults {
            restart: restart_config(),
            health: health_config(),
            stop_timeout: Duration::from_millis(300),
        },
    }
}
