//! `mcpd check`: validates all configuration offline and reports servers or every error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, ConfigError, Env, Resolver};

/// What `mcpd check` prints, and whether the configuration is valid (exit 0) or not (exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub text: String,
    pub ok: bool,
}

/// Checks the configuration `mcpd` would run with, given `--config` (if any).
pub fn check(explicit: Option<&Path>) -> Report {
    check_in(
        explicit,
        &Env::from_process(),
        Path::new(config::SYSTEM_CONFIG),
        &config::resolve_binary,
    )
}

/// `check` with its surroundings, the system config path and the binary lookup given.
pub fn check_in(explicit: Option<&Path>, env: &Env, system: &Path, resolver: &Resolver) -> Report {
    let file = config::find_daemon_config_in(explicit, env, system);
    let result = config::load_in(file.as_deref(), env, resolver);
    render(file.as_deref(), &result, &env.cwd)
}

/// The report for a load `result`; paths under `cwd` are shown relative to it.
pub fn render(
    file: Option<&Path>,
    result: &Result<Config, Vec<ConfigError>>,
    cwd: &Path,
) -> Report {
    let mut text = String::new();
    let shown = |path: &Path| display_path(path, cwd);
    match file {
        Some(file) => writeln!(text, "config:   {}", shown(file)),
        None => writeln!(text, "config:   none (built-in defaults)"),
    }
    .expect("write to String");
    match result {
        Ok(config) => {
            let _ = writeln!(text, "services: {}", shown(&config.daemon.services_dir));
            let _ = writeln!(text);
            let rows: Vec<[String; 4]> = config
                .services
                .servers
                .values()
                .map(|server| {
                    [
                        server.name.clone(),
                        match &server.remote {
                            Some(_) => "-".to_owned(),
                            None => server
                                .port
                                .map_or_else(|| "auto".to_owned(), |port| port.to_string()),
                        },
                        // A remote server's URL holds no credential (validation refuses one).
                        match &server.remote {
                            Some(remote) => remote.url.text.clone(),
                            None => shown(&server.binary),
                        },
                        oauth_summary(&server.oauth),
                    ]
                })
                .collect();
            table(&mut text, ["NAME", "PORT", "BINARY", "OAUTH"], &rows);
            for server in config.services.servers.values() {
                if let Some(warning) = config::oauth_warning(&server.name, &server.oauth) {
                    let _ = writeln!(text, "warning: {warning}");
                }
                for warning in crate::authz::shadowed_rules(&server.name, &server.oauth) {
                    let _ = writeln!(text, "warning: {warning}");
                }
            }
            let count = rows.len();
            let plural = if count == 1 { "" } else { "s" };
            let _ = writeln!(text, "\nconfiguration OK: {count} server{plural}");
            Report { text, ok: true }
        }
        Err(errors) => {
            for error in errors {
                let error = ConfigError {
                    file: PathBuf::from(shown(&error.file)),
                    ..error.clone()
                };
                let _ = writeln!(text, "{error}");
            }
            let count = errors.len();
            let plural = if count == 1 { "" } else { "s" };
            let _ = writeln!(text, "\nconfiguration invalid: {count} error{plural}");
            Report { text, ok: false }
        }
    }
}

/// `off`, or `required (scopes: a,b; aud: mcp)`.
fn oauth_summary(oauth: &config::OAuthConfig) -> String {
    if !oauth.required {
        return "off".to_owned();
    }
    let scopes = if oauth.scopes.is_empty() {
        "any".to_owned()
    } else {
        oauth.scopes.join(",")
    };
    let mut summary = format!("required (scopes: {scopes}; aud: {}", oauth.audience);
    if let Some(client) = &oauth.client_id {
        let _ = write!(summary, "; client: {client}");
    }
    summary.push(')');
    summary
}

fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// `path` relative to `cwd` when it lies below it, else as is.
fn display_path(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd)
        .ok()
        .filter(|relative| !relative.as_os_str().is_empty())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cwd: &Path) -> Env {
        Env {
            cwd: cwd.to_owned(),
            ..Env::default()
        }
    }

    /// `mcpd check` of a daemon file `services_dir: mcp` and one server file holding `servers`.
    fn check_servers(servers: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mcp")).unwrap();
        std::fs::write(dir.path().join("mcpd.yaml"), "services_dir: mcp\n").unwrap();
        std::fs::write(dir.path().join("mcp/servers.yaml"), servers).unwrap();
        check_in(
            Some(Path::new("mcpd.yaml")),
            &env(dir.path()),
            Path::new("/nonexistent"),
            &config::resolve_binary,
        )
    }

    #[test]
    fn a_valid_configuration_prints_its_servers() {
        let report = check_servers(
            "mcp_servers:\n  echo: {binary: /bin/sh}\n  secure:\n    binary: /bin/sh\n    port: 5010\n    \
             oauth: {required: true, scopes: [admin, ops]}\n",
        );
        assert!(report.ok, "{}", report.text);
        assert_eq!(
            report.text,
            "config:   mcpd.yaml\n\
             services: mcp\n\
             \n\
             NAME    PORT  BINARY   OAUTH\n\
             echo    auto  /bin/sh  off\n\
             secure  5010  /bin/sh  required (scopes: admin,ops; aud: mcp)\n\
             \n\
             configuration OK: 2 servers\n"
        );
    }

    #[test]
    fn a_server_that_admits_any_token_is_flagged() {
        let report = check_servers(
            "mcp_servers:\n  open:\n    binary: /bin/sh\n    oauth: {required: true}\n",
        );
        assert!(report.ok, "{}", report.text);
        assert!(
            report.text.contains(
                "open  auto  /bin/sh  required (scopes: any; aud: mcp)\n\
                 warning: server open: oauth.required with no oauth.scopes admits any valid \
                 token for audience mcp\n"
            ),
            "{}",
            report.text
        );
    }

    #[test]
    fn an_invalid_configuration_prints_every_error_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services/mcp");
        std::fs::create_dir_all(&services).unwrap();
        std::fs::write(
            services.join("echo.yaml"),
            "mcp_servers:\n  echo:\n    binary: /bin/sh\n    enbled: true\n    port: 1\n",
        )
        .unwrap();
        let report = check_in(
            None,
            &env(dir.path()),
            Path::new("/nonexistent"),
            &config::resolve_binary,
        );
        assert!(!report.ok);
        let lines: Vec<&str> = report.text.lines().collect();
        assert_eq!(lines[0], "config:   none (built-in defaults)");
        assert_eq!(
            lines[1],
            "services/mcp/echo.yaml:4:5: unknown key \"enbled\" in server \"echo\""
        );
        assert!(
            lines[2].starts_with("  hint: valid keys: binary, package, port, endpoint, enabled")
        );
        assert_eq!(
            lines[3],
            "services/mcp/echo.yaml:5:11: port 1 of server \"echo\" is outside port_range 5000-5999"
        );
        assert!(lines[4].starts_with("  hint: use a port inside 5000-5999"));
        assert_eq!(lines.last(), Some(&"configuration invalid: 2 errors"));
    }
}
