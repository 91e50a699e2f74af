//! Loading and validation, file by file: each error class with its message and line,
//! defaults, path resolution, reload semantics and the example configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A temp directory acting as the working directory, with `mcpd.yaml` and `mcp/` inside.
struct Fixture {
    dir: tempfile::TempDir,
    env: Env,
}

fn fixture() -> Fixture {
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
fn any_binary(name: &str, _: &[PathBuf], _: &Env) -> Result<PathBuf, String> {
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
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, yaml(text)).unwrap();
        path
    }

    /// Writes a minimal daemon file unless the test wrote one.
    fn daemon_file(&self) -> PathBuf {
        let path = self.path("mcpd.yaml");
        if !path.exists() {
            std::fs::write(&path, "services_dir: mcp\n").unwrap();
        }
        path
    }

    fn load(&self) -> Result<Config, Vec<ConfigError>> {
        load_in(Some(&self.daemon_file()), &self.env, &any_binary)
    }

    fn errors(&self) -> Vec<ConfigError> {
        match self.load() {
            Ok(config) => panic!("expected errors, got {:#?}", config.services.servers.keys()),
            Err(errors) => errors,
        }
    }

    fn servers(&self) -> std::collections::BTreeMap<String, ServerConfig> {
        match self.load() {
            Ok(config) => config.services.servers,
            Err(errors) => panic!("unexpected errors:\n{}", show(&errors)),
        }
    }

    fn daemon(&self) -> DaemonConfig {
        load_daemon_in(Some(&self.daemon_file()), &self.env)
            .unwrap_or_else(|errors| panic!("unexpected errors:\n{}", show(&errors)))
    }
}

fn show(errors: &[ConfigError]) -> String {
    errors.iter().map(|error| format!("{error}\n")).collect()
}

/// Asserts that exactly one error mentions `message`, in `file` (a suffix), on `line`; returns it.
#[track_caller]
fn expect_error<'a>(
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
fn yaml_syntax_error_names_the_line() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            args: [unclosed
        ",
    );
    let errors = f.errors();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert!(
        errors[0].message.starts_with("invalid YAML"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].line.is_some_and(|line| line >= 4),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_key_lists_the_valid_keys() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            enbled: false
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "unknown key \"enbled\" in server \"echo\"",
    );
    assert_eq!(error.column, Some(5));
    let hint = error.hint.as_deref().unwrap();
    assert!(
        hint.starts_with("valid keys: binary, package, port"),
        "{hint}"
    );
    assert!(
        hint.contains("enabled") && hint.contains("restart"),
        "{hint}"
    );
    assert_eq!(
        error.to_string().lines().next().unwrap(),
        format!(
            "{}:4:5: unknown key \"enbled\" in server \"echo\"",
            f.path("mcp/echo.yaml").display()
        )
    );
}

#[test]
fn unknown_keys_in_nested_blocks_and_the_daemon_file_are_found() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          listen: 127.0.0.1:8080
          max_bdy: 1MiB
        servics_dir: x
        ",
    );
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            restart: {policy: always, bakoff: 2s}
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_error(
        &errors,
        "mcpd.yaml",
        4,
        "unknown key \"max_bdy\" in gateway",
    );
    expect_error(
        &errors,
        "mcpd.yaml",
        5,
        "unknown key \"servics_dir\" at the top level",
    );
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    std::fs::write(f.path("mcpd.yaml"), "services_dir: mcp\n").unwrap();
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "unknown key \"bakoff\" in server \"echo\" restart",
    );
    assert_eq!(error.column, Some(31));
}

#[test]
fn wrong_types_name_the_key_and_what_to_write() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            port: fifty
            enabled: maybe
            args: --verbose
        ",
    );
    let errors = f.errors();
    let port = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "invalid value for \"port\" in server \"echo\"",
    );
    assert!(
        port.message.contains("invalid type: string \"fifty\""),
        "{port}"
    );
    assert_eq!(port.column, Some(11));
    expect_error(&errors, "mcp/echo.yaml", 5, "invalid value for \"enabled\"");
    expect_error(&errors, "mcp/echo.yaml", 6, "invalid value for \"args\"");
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn bad_durations_and_sizes_are_all_reported() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          max_body: 4 parsecs
        defaults:
          restart:
            backoff: 1x
          stop_timeout: soon
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    let size = expect_error(&errors, "mcpd.yaml", 3, "invalid size \"4 parsecs\"");
    assert!(size.hint.as_deref().unwrap().contains("4MiB"));
    let duration = expect_error(&errors, "mcpd.yaml", 6, "invalid duration \"1x\"");
    assert!(
        duration.message.contains("\"backoff\" in defaults.restart"),
        "{duration}"
    );
    expect_error(&errors, "mcpd.yaml", 7, "invalid duration \"soon\"");
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn invalid_server_names_are_refused() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          ok-name_1:
            binary: a
          Echo:
            binary: b
          -dash:
            binary: c
        ",
    );
    let errors = f.errors();
    expect_error(&errors, "mcp/echo.yaml", 4, "invalid server name \"Echo\"");
    expect_error(&errors, "mcp/echo.yaml", 6, "invalid server name \"-dash\"");
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    assert!(valid_server_name(&"a".repeat(63)));
    assert!(!valid_server_name(&"a".repeat(64)));
    assert!(!valid_server_name(""));
    assert!(!valid_server_name("_x"));
    assert!(valid_server_name("0x"));
}

#[test]
fn a_name_defined_twice_in_one_file_is_an_error() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
          echo:
            binary: b
        ",
    );
    let errors = f.errors();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(
        errors[0].message,
        "key \"echo\" appears twice in the mapping that starts here"
    );
    assert_eq!(
        (errors[0].line, errors[0].column),
        (Some(2), Some(3)),
        "{}",
        errors[0]
    );
}

#[test]
fn a_name_defined_in_two_files_fails_the_later_file() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers: {echo: {binary: a}}");
    f.write(
        "mcp/b.yaml",
        "
        mcp_servers:
          other:
            binary: b
          echo:
            binary: b
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/b.yaml",
        4,
        "server \"echo\" is already defined in",
    );
    assert!(error.message.ends_with("a.yaml"), "{error}");
    assert_eq!(errors.len(), 1);

    let daemon = f.daemon();
    let services = load_services_in(&daemon, None, &f.env, &any_binary);
    let names: Vec<_> = services.servers.keys().cloned().collect();
    assert_eq!(names, ["echo"], "b.yaml failed as a whole");
    assert_eq!(services.servers["echo"].binary_name, "a");
}

#[test]
fn explicit_ports_must_lie_in_the_range() {
    let f = fixture();
    f.write("mcpd.yaml", "services_dir: mcp\nport_range: 7000-7099\n");
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
            port: 7100
          fine:
            binary: a
            port: 7099
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "port 7100 of server \"echo\" is outside port_range 7000-7099",
    );
    assert_eq!(error.column, Some(11));
    assert_eq!(errors.len(), 1);
}

#[test]
fn two_servers_on_one_port_are_refused_within_and_across_files() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers: {one: {binary: a, port: 5001}}");
    f.write(
        "mcp/b.yaml",
        "
        mcp_servers:
          two:
            binary: a
            port: 5002
          three:
            binary: a
            port: 5002
          four: {binary: a, port: 5001}
        ",
    );
    let errors = f.errors();
    let within = expect_error(
        &errors,
        "mcp/b.yaml",
        7,
        "port 5002 of server \"three\" is already used by server \"two\"",
    );
    assert_eq!(within.column, Some(11));
    let across = expect_error(
        &errors,
        "mcp/b.yaml",
        8,
        "port 5001 of server \"four\" is already used by server \"one\"",
    );
    assert_eq!(across.column, Some(27));
    assert_eq!(errors.len(), 2, "{}", show(&errors));
}

#[test]
fn a_binary_that_cannot_be_found_is_an_error_with_a_build_hint() {
    let f = fixture();
    let bin = f.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("present");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.join("not-executable"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        bin.join("not-executable"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    f.write("mcpd.yaml", "services_dir: mcp\nbin_dirs: [bin]\n");
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          found:
            binary: present
          missing:
            binary: mcp-nowhere
            package: mcp-nowhere
          absolute:
            binary: /nonexistent/mcp-echo
          plain:
            binary: ../bin/not-executable
        ",
    );
    let errors = load_in(Some(&f.daemon_file()), &f.env, &resolve_binary).unwrap_err();
    let missing = expect_error(
        &errors,
        "mcp/echo.yaml",
        5,
        "binary \"mcp-nowhere\" not found in bin_dirs",
    );
    assert_eq!(missing.column, Some(13));
    assert!(
        missing
            .hint
            .as_deref()
            .unwrap()
            .contains("cargo build --release -p mcp-nowhere")
    );
    expect_error(&errors, "mcp/echo.yaml", 8, "/nonexistent/mcp-echo");
    expect_error(
        &errors,
        "mcp/echo.yaml",
        10,
        "not-executable is not executable",
    );
    assert_eq!(errors.len(), 3, "{}", show(&errors));

    std::fs::write(
        f.path("mcp/echo.yaml"),
        "mcp_servers: {found: {binary: present}}\n",
    )
    .unwrap();
    let config = load_in(Some(&f.daemon_file()), &f.env, &resolve_binary).unwrap();
    assert_eq!(config.services.servers["found"].binary, exe);
}

#[test]
fn empty_files_and_files_without_servers_are_errors() {
    let f = fixture();
    f.write("mcp/empty.yaml", "# nothing yet\n");
    f.write("mcp/other.yaml", "servers:\n  echo: {binary: a}\n");
    f.write("mcp/none.yaml", "mcp_servers:\n");
    let errors = f.errors();
    let empty = errors
        .iter()
        .find(|e| e.file.ends_with("empty.yaml"))
        .expect("empty.yaml error");
    assert_eq!(empty.message, "the file is empty");
    assert_eq!(empty.line, None);
    expect_error(
        &errors,
        "mcp/other.yaml",
        1,
        "unknown key \"servers\" at the top level",
    );
    let missing = errors
        .iter()
        .find(|e| e.message.contains("no `mcp_servers` key"))
        .expect("missing key");
    assert!(missing.file.ends_with("other.yaml"));
    assert_eq!(errors.len(), 3, "{}", show(&errors));
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
fn port_ranges_must_be_ordered_and_inside_the_tcp_range() {
    for (range, message) in [
        ("5999-5000", "start is above end"),
        ("0-100", "0 is outside 1-65535"),
        ("5000-65536", "65536 is outside 1-65535"),
        ("5000", "expected START-END"),
    ] {
        let f = fixture();
        f.write(
            "mcpd.yaml",
            &format!("services_dir: mcp\n\nport_range: {range}\n"),
        );
        let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
        let error = expect_error(&errors, "mcpd.yaml", 3, message);
        assert!(
            error.message.contains("invalid value for \"port_range\""),
            "{error}"
        );
    }
}

#[test]
fn semantic_rules_of_restart_health_and_paths() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
            path: mcp
            restart:
              backoff: 10s
              max_backoff: 5s
              burst: 0
            health:
              timeout: 0s
              failures: 0
            stop_timeout: 0ms
        ",
    );
    let errors = f.errors();
    expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "path \"mcp\" of server \"echo\" does not start with /",
    );
    expect_error(
        &errors,
        "mcp/echo.yaml",
        7,
        "max_backoff (5s) is below backoff (10s)",
    );
    expect_error(
        &errors,
        "mcp/echo.yaml",
        8,
        "burst must be at least 1, not 0 in server \"echo\" restart",
    );
    expect_error(
        &errors,
        "mcp/echo.yaml",
        10,
        "timeout must be longer than zero in server \"echo\" health",
    );
    expect_error(&errors, "mcp/echo.yaml", 11, "failures must be at least 1");
    expect_error(
        &errors,
        "mcp/echo.yaml",
        12,
        "stop_timeout must be longer than zero in server \"echo\"",
    );
    assert_eq!(errors.len(), 6, "{}", show(&errors));
}

#[test]
fn a_backoff_above_the_default_max_backoff_is_caught() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "mcp_servers:\n  echo:\n    binary: a\n    restart: {backoff: 2m}\n",
    );
    let errors = f.errors();
    expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "max_backoff (1m) is below backoff (2m)",
    );
}

#[test]
fn daemon_scalars_are_checked() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          listen: localhost:8080
          public_url: ftp://example.com
        control:
          mode: \"0999\"
        logs:
          keep: 0
          rotation: weekly
        auth:
          keys:
            - {public_key_file: k.pem, algorithm: HS256}
            - {public_key_file: k.pem}
            - {hs256_secret_file: s, jwks_file: j}
            - {jwks_file: j, algorithm: RS256}
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_error(
        &errors,
        "mcpd.yaml",
        3,
        "invalid listen address \"localhost:8080\"",
    );
    expect_error(&errors, "mcpd.yaml", 4, "the scheme must be http or https");
    expect_error(&errors, "mcpd.yaml", 6, "invalid mode \"0999\"");
    expect_error(&errors, "mcpd.yaml", 8, "keep must be at least 1");
    expect_error(&errors, "mcpd.yaml", 9, "unknown variant `weekly`");
    let hs = expect_error(&errors, "mcpd.yaml", 12, "invalid algorithm \"HS256\"");
    assert!(hs.hint.as_deref().unwrap().contains("hs256_secret_file"));
    expect_error(
        &errors,
        "mcpd.yaml",
        13,
        "public_key_file without algorithm in auth.keys[1]",
    );
    expect_error(
        &errors,
        "mcpd.yaml",
        14,
        "a key with more than one file in auth.keys[2]",
    );
    expect_error(
        &errors,
        "mcpd.yaml",
        15,
        "algorithm only applies to public_key_file",
    );
    assert_eq!(errors.len(), 9, "{}", show(&errors));
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
    assert_eq!(daemon.logs.dir, home.join(".local/state/mcpd/logs"));
    assert_eq!(daemon.logs.rotation, Rotation::Daily);
    assert_eq!((daemon.logs.keep, daemon.logs.buffer_lines), (7, 1000));
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
    assert_eq!(
        daemon.defaults,
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
        }
    );
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
            client_id: None
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
            client_id: Some("cli".into())
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
fn a_missing_services_dir_is_an_error() {
    let f = fixture();
    f.write("mcpd.yaml", "services_dir: nowhere\n");
    let errors = f.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .starts_with("cannot read the services directory"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].file, f.path("nowhere"));
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
fn errors_of_many_files_and_servers_are_reported_together() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "mcp_servers:\n  one: {binary: a, port: 1}\n  two: {binary: a, prt: 5002}\n",
    );
    f.write(
        "mcp/b.yaml",
        "mcp_servers:\n  three: {}\n  four: {binary: a, health: {interval: never}}\n",
    );
    let errors = f.errors();
    expect_error(&errors, "mcp/a.yaml", 2, "port 1 of server \"one\"");
    expect_error(&errors, "mcp/a.yaml", 3, "unknown key \"prt\"");
    expect_error(&errors, "mcp/b.yaml", 2, "server \"three\" has no binary");
    expect_error(&errors, "mcp/b.yaml", 3, "invalid duration \"never\"");
    assert_eq!(errors.len(), 4, "{}", show(&errors));
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
}
