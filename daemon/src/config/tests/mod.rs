//! Loading and validation: shared fixtures, defaults, path resolution, reload semantics and
//! the example configuration. `errors` covers each error class with its message and line.

mod errors;
mod files;
mod fuzz;
mod gateway_limits;
mod limits;
mod reading;
mod remote;
mod schema;
mod server_kinds;
mod virtual_servers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A temp directory acting as the working directory, with `mcpd.yaml` and `mcp/` inside.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) env: Env,
}

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = Env {
        vars: [(
            "HOME".to_owned(),
            dir.path().join("home").display().to_string(),
        )]
        .into(),
        cwd: dir.path().to_owned(),
        exe_dir: Some(PathBuf::from("/opt/mcpd/bin")),
        uid: 1000,
    };
    std::fs::create_dir(dir.path().join("mcp")).expect("services dir");
    Fixture { dir, env }
}

/// Any binary name resolves to `/usr/bin/<name>`.
pub(super) fn any_binary(name: &str, _: &[PathBuf], _: &Env) -> Result<PathBuf, String> {
    Ok(Path::new("/usr/bin").join(name))
}

/// `text` without its first newline and common indentation, so tests can indent YAML.
fn yaml(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|line| line.get(indent..).unwrap_or("").to_owned() + "\n")
        .collect()
}

impl Fixture {
    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(super) fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, yaml(text)).unwrap();
        path
    }

    /// Writes a minimal daemon file unless the test wrote one.
    pub(super) fn daemon_file(&self) -> PathBuf {
        let path = self.path("mcpd.yaml");
        if !path.exists() {
            std::fs::write(&path, "services_dir: mcp\n").unwrap();
        }
        path
    }

    pub(super) fn load(&self) -> Result<Config, Vec<ConfigError>> {
        load_in(Some(&self.daemon_file()), &self.env, &any_binary)
    }

    pub(super) fn errors(&self) -> Vec<ConfigError> {
        match self.load() {
            Ok(config) => panic!("expected errors, got {:#?}", config.services.servers.keys()),
            Err(errors) => errors,
        }
    }

    pub(super) fn servers(&self) -> std::collections::BTreeMap<String, ServerConfig> {
        match self.load() {
            Ok(config) => config.services.servers,
            Err(errors) => panic!("unexpected errors:\n{}", show(&errors)),
        }
    }

    pub(super) fn daemon(&self) -> DaemonConfig {
        load_daemon_in(Some(&self.daemon_file()), &self.env)
            .unwrap_or_else(|errors| panic!("unexpected errors:\n{}", show(&errors)))
    }
}

pub(super) fn show(errors: &[ConfigError]) -> String {
    errors.iter().map(|error| format!("{error}\n")).collect()
}

/// [`expect_error`] for every `(line, message)` of `file`: the errors one YAML text was
/// written to cause, as a table.
pub(super) fn expect_errors(errors: &[ConfigError], file: &str, table: &[(usize, &str)]) {
    for &(line, message) in table {
        expect_error(errors, file, line, message);
    }
}

/// Asserts that exactly one error mentions `message`, in `file` (a suffix), on `line`; returns it.
#[track_caller]
pub(super) fn expect_error<'a>(
    errors: &'a [ConfigError],
    file: &str,
    line: usize,
    message: &str,
) -> &'a ConfigError {
    let found: Vec<_> = errors
        .iter()
        .filter(|error| error.message.contains(message))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want one error with {message:?} in:\n{}",
        show(errors)
    );
    let error = found[0];
    assert!(error.file.ends_with(file), "{error} is not in {file}");
    assert_eq!(error.line, Some(line), "wrong line for {error}");
    assert!(error.column.is_some(), "no column for {error}");
    assert!(error.hint.is_some(), "no hint for {error}");
    error
}

#[test]
fn only_visible_yaml_files_are_read() {
    let f = fixture();
    f.write("mcp/echo.yaml", "mcp_servers: {echo: {binary: a}}");
    for ignored in [
        ".echo.yaml.swp",
        "echo.yaml~",
        ".hidden.yaml",
        "notes.txt",
        "other.yml",
        "#echo.yaml#",
    ] {
        f.write(&format!("mcp/{ignored}"), "this: is not: valid yaml: [");
    }
    std::fs::create_dir(f.path("mcp/dir.yaml")).unwrap();
    let servers = f.servers();
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["echo"]);
}

#[test]
fn built_in_defaults_without_a_config_file() {
    let f = fixture();
    let daemon = load_daemon_in(None, &f.env).unwrap();
    let home = f.path("home");
    assert_eq!(daemon.source, None);
    assert_eq!(daemon.services_dir, f.path("services/mcp"));
    assert_eq!(
        daemon.port_range,
        PortRange {
            start: 5000,
            end: 5999
        }
    );
    assert_eq!(daemon.bin_dirs, [PathBuf::from("/opt/mcpd/bin")]);
    assert_eq!(daemon.state_dir, home.join(".local/state/mcpd"));
    assert_eq!(
        daemon.control.socket,
        PathBuf::from("/tmp/mcpd-1000/mcpd.sock")
    );
    assert_eq!(daemon.control.mode, 0o660);
    // The socket is in the fallback directory, which must then be mcpd's alone.
    assert_eq!(
        daemon.control.private_dir,
        Some(PathBuf::from("/tmp/mcpd-1000"))
    );
    assert_eq!(daemon.logs.dir, home.join(".local/state/mcpd/logs"));
    assert_eq!(daemon.logs.rotation, Rotation::Daily);
    assert_eq!((daemon.logs.keep, daemon.logs.buffer_lines), (7, 1000));
    assert!(daemon.logs.audit);
    assert_eq!(daemon.gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(daemon.gateway.public_url, "http://localhost:8080");
    assert_eq!(daemon.gateway.public_host, "localhost:8080");
    assert_eq!(daemon.gateway.max_body, 4 * 1024 * 1024);
    assert!(daemon.gateway.allowed_origins.is_empty() && daemon.gateway.allowed_hosts.is_empty());
    assert_eq!(
        daemon.auth,
        AuthConfig {
            leeway: Duration::from_secs(30),
            ..AuthConfig::default()
        }
    );
    // The builder's defaults spell out the documented ones.
    assert_eq!(daemon.defaults, super::test_builder::defaults());
}

#[test]
fn systemd_directories_win_over_home() {
    let mut f = fixture();
    f.env
        .vars
        .insert("STATE_DIRECTORY".into(), "/var/lib/mcpd".into());
    f.env
        .vars
        .insert("RUNTIME_DIRECTORY".into(), "/run/mcpd".into());
    f.env
        .vars
        .insert("LOGS_DIRECTORY".into(), "/var/log/mcpd".into());
    let daemon = load_daemon_in(None, &f.env).unwrap();
    assert_eq!(daemon.state_dir, PathBuf::from("/var/lib/mcpd"));
    assert_eq!(daemon.control.socket, PathBuf::from("/run/mcpd/mcpd.sock"));
    assert_eq!(daemon.logs.dir, PathBuf::from("/var/log/mcpd"));
}

#[test]
fn relative_paths_resolve_against_the_daemon_file() {
    let f = fixture();
    f.write(
        "etc/mcpd.yaml",
        "
        services_dir: servers
        bin_dirs: [../bin, /usr/local/bin]
        state_dir: ../state
        control: {socket: run/mcpd.sock}
        logs: {dir: /var/log/mcpd}
        gateway: {public_url: \"https://mcp.example.com:8443/\"}
        auth:
          keys:
            - {hs256_secret_file: jwt.secret}
            - {public_key_file: /keys/pub.pem, algorithm: ES256}
            - {jwks_file: ../jwks.json}
        ",
    );
    // A relative --config resolves against the working directory first.
    let daemon = load_daemon_in(Some(Path::new("etc/mcpd.yaml")), &f.env).unwrap();
    assert_eq!(daemon.source, Some(f.path("etc/mcpd.yaml")));
    assert_eq!(daemon.services_dir, f.path("etc/servers"));
    assert_eq!(
        daemon.bin_dirs,
        [f.path("bin"), PathBuf::from("/usr/local/bin")]
    );
    assert_eq!(daemon.state_dir, f.path("state"));
    assert_eq!(daemon.control.socket, f.path("etc/run/mcpd.sock"));
    assert_eq!(daemon.logs.dir, PathBuf::from("/var/log/mcpd"));
    assert_eq!(daemon.gateway.public_url, "https://mcp.example.com:8443");
    assert_eq!(daemon.gateway.public_host, "mcp.example.com:8443");
    assert_eq!(
        daemon.auth.keys,
        [
            KeySource::Hs256SecretFile(f.path("etc/jwt.secret")),
            KeySource::PublicKeyFile {
                path: PathBuf::from("/keys/pub.pem"),
                algorithm: jsonwebtoken::Algorithm::ES256
            },
            KeySource::JwksFile(f.path("jwks.json")),
        ]
    );
}

#[test]
fn a_config_file_without_services_dir_uses_mcp_beside_it_and_an_empty_one_is_all_defaults() {
    let f = fixture();
    f.write("etc/mcpd.yaml", "# defaults only\n");
    let daemon = load_daemon_in(Some(&f.path("etc/mcpd.yaml")), &f.env).unwrap();
    assert_eq!(daemon.services_dir, f.path("etc/mcp"));
    assert_eq!(daemon.gateway.public_url, "http://localhost:8080");
}

#[test]
fn servers_get_defaults_and_override_them_field_by_field() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway: {public_url: \"https://mcp.example.com/\"}
        defaults:
          restart: {policy: always, burst: 9}
          health: {interval: 20s}
        ",
    );
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
          tuned:
            binary: mcp-echo
            package: mcp-echo
            port: 5010
            endpoint: https://elsewhere/mcp
            enabled: false
            display_in_web: false
            description: Tuned
            oauth: {required: true, scopes: [a, b], audience: api, client_id: cli}
            args: [\"--port\", \"{port}\"]
            env: {RUST_LOG: info, NUMBER: 5}
            env_passthrough: [DATABASE_URL]
            working_dir: work
            path: /custom
            restart: {backoff: 2s}
            health: {failures: 7}
            stop_timeout: 3s
        ",
    );
    let servers = f.servers();
    let echo = &servers["echo"];
    assert_eq!(echo.binary, PathBuf::from("/usr/bin/mcp-echo"));
    assert_eq!(echo.binary_name, "mcp-echo");
    assert_eq!(echo.file, f.path("mcp/echo.yaml"));
    assert_eq!(echo.endpoint, "https://mcp.example.com/api/v1/mcp/echo/mcp");
    assert_eq!(
        (echo.port, echo.enabled, echo.display_in_web),
        (None, true, true)
    );
    assert_eq!(echo.description, "");
    assert_eq!(
        echo.oauth,
        OAuthConfig {
            required: false,
            scopes: vec![],
            audience: "mcp".into(),
            client_id: None,
            tools: vec![],
        }
    );
    assert_eq!(echo.path, "/mcp");
    assert_eq!(echo.restart.policy, RestartPolicy::Always);
    assert_eq!(echo.restart.burst, 9);
    assert_eq!(echo.health.interval, Duration::from_secs(20));
    assert_eq!(echo.stop_timeout, Duration::from_secs(10));

    let tuned = &servers["tuned"];
    assert_eq!(tuned.port, Some(5010));
    assert_eq!(tuned.endpoint, "https://elsewhere/mcp");
    assert_eq!((tuned.enabled, tuned.display_in_web), (false, false));
    assert_eq!(tuned.description, "Tuned");
    assert_eq!(tuned.package.as_deref(), Some("mcp-echo"));
    assert_eq!(
        tuned.oauth,
        OAuthConfig {
            required: true,
            scopes: vec!["a".into(), "b".into()],
            audience: "api".into(),
            client_id: Some("cli".into()),
            tools: vec![],
        }
    );
    assert_eq!(tuned.args, ["--port", "{port}"]);
    assert_eq!(tuned.env["NUMBER"], "5");
    assert_eq!(tuned.env_passthrough, ["DATABASE_URL"]);
    assert_eq!(tuned.working_dir, Some(f.path("mcp/work")));
    assert_eq!(tuned.path, "/custom");
    // Overridden fields change; the others still come from `defaults`.
    assert_eq!(tuned.restart.backoff, Duration::from_secs(2));
    assert_eq!(tuned.restart.policy, RestartPolicy::Always);
    assert_eq!(tuned.restart.burst, 9);
    assert_eq!(tuned.health.failures, 7);
    assert_eq!(tuned.health.interval, Duration::from_secs(20));
    assert_eq!(tuned.stop_timeout, Duration::from_secs(3));
}

#[test]
fn a_failing_file_keeps_its_previous_servers() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "mcp_servers: {alpha: {binary: a, port: 5001}}",
    );
    f.write("mcp/b.yaml", "mcp_servers: {beta: {binary: b}}");
    let daemon = f.daemon();
    let first = load_services_in(&daemon, None, &f.env, &any_binary);
    assert!(first.errors.is_empty(), "{}", show(&first.errors));

    // a.yaml breaks, b.yaml changes: alpha stays as it was, beta is updated.
    f.write(
        "mcp/a.yaml",
        "mcp_servers: {alpha: {binary: a, port: 5001, enbled: true}}",
    );
    f.write("mcp/b.yaml", "mcp_servers: {beta: {binary: b2}}");
    let second = load_services_in(&daemon, Some(&first), &f.env, &any_binary);
    assert_eq!(second.errors.len(), 1, "{}", show(&second.errors));
    assert!(second.errors[0].file.ends_with("a.yaml"));
    assert_eq!(second.servers["alpha"], first.servers["alpha"]);
    assert_eq!(second.servers["beta"].binary_name, "b2");

    // A new file clashing with a kept server fails too, and the kept server stays.
    f.write(
        "mcp/c.yaml",
        "mcp_servers: {gamma: {binary: c, port: 5001}}",
    );
    let third = load_services_in(&daemon, Some(&second), &f.env, &any_binary);
    assert_eq!(third.errors.len(), 2, "{}", show(&third.errors));
    assert!(third.servers.contains_key("alpha") && !third.servers.contains_key("gamma"));

    // A removed file drops its servers.
    std::fs::remove_file(f.path("mcp/b.yaml")).unwrap();
    let fourth = load_services_in(&daemon, Some(&third), &f.env, &any_binary);
    assert!(!fourth.servers.contains_key("beta"));
}

#[test]
fn the_daemon_file_is_found_by_flag_then_env_then_system_path() {
    let f = fixture();
    let system = f.write("etc/mcpd.yaml", "{}");
    let missing = f.path("etc/none.yaml");
    let mut env = f.env.clone();
    assert_eq!(find_daemon_config_in(None, &env, &missing), None);
    assert_eq!(
        find_daemon_config_in(None, &env, &system),
        Some(system.clone())
    );
    env.vars
        .insert("MCPD_CONFIG".into(), "/from/env.yaml".into());
    assert_eq!(
        find_daemon_config_in(None, &env, &system),
        Some(PathBuf::from("/from/env.yaml"))
    );
    assert_eq!(
        find_daemon_config_in(Some(Path::new("flag.yaml")), &env, &system),
        Some(PathBuf::from("flag.yaml"))
    );
}

#[test]
fn the_example_configuration_loads() {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let env = Env {
        cwd: services.join(".."),
        ..Env::default()
    };
    let config = load_in(Some(&services.join("mcpd.yaml")), &env, &any_binary)
        .unwrap_or_else(|errors| panic!("example config invalid:\n{}", show(&errors)));
    let root = env::absolute(&env.cwd, Path::new(""));
    assert_eq!(config.daemon.services_dir, root.join("services/mcp"));
    assert_eq!(config.daemon.bin_dirs, [root.join("target/release")]);
    assert_eq!(config.daemon.state_dir, root.join("target/mcpd-state"));
    assert_eq!(
        config.daemon.control.socket,
        root.join("target/mcpd-state/mcpd.sock")
    );
    assert_eq!(
        config.daemon.gateway.listen,
        "127.0.0.1:8080".parse().unwrap()
    );
    let echo = &config.services.servers["echo"];
    assert_eq!(echo.binary_name, "mcp-echo");
    assert_eq!(echo.package.as_deref(), Some("mcp-echo"));
    assert!(!echo.oauth.required);
    assert_eq!(echo.endpoint, "http://localhost:8080/api/v1/mcp/echo/mcp");
    let all = &config.services.virtuals["all"];
    assert_eq!(all.members, ["echo"]);
    assert_eq!(all.endpoint, "http://localhost:8080/api/v1/mcp/all/mcp");
}
