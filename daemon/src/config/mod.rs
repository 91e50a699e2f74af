//! Configuration: finding, parsing and validating `mcpd.yaml` and the server files.
//!
//! `raw` holds the serde types that mirror the YAML, `source` reads a file block by block
//! and knows where every key is, `validate` turns raw blocks into the types of `model` while
//! collecting every error, `services` reads the directory of server files, `env` holds what
//! is read from the surroundings, and `error` carries each error with its file, line and column.

mod env;
mod error;
mod file;
mod limits;
mod model;
mod raw;
pub mod schema;
mod services;
mod source;
#[cfg(test)]
pub(crate) mod test_builder;
mod validate;

pub use env::{Env, Resolver, resolve_binary};
pub use error::ConfigError;
pub use file::{MAX_CONFIG_FILE, read_config_file, read_config_text};
pub use model::*;
pub use validate::{AUDIT_LOG_NAME, may_switch_users, valid_server_name};

use std::path::{Path, PathBuf};

/// Where the daemon file is looked for when neither `--config` nor `$MCPD_CONFIG` is given.
pub const SYSTEM_CONFIG: &str = "/etc/mcpd/mcpd.yaml";

/// The daemon file to use: `explicit` (`--config`), else `$MCPD_CONFIG`, else
/// `/etc/mcpd/mcpd.yaml` if it exists, else `None` (built-in defaults).
pub fn find_daemon_config(explicit: Option<&Path>) -> Option<PathBuf> {
    find_daemon_config_in(explicit, &Env::from_process(), Path::new(SYSTEM_CONFIG))
}

/// `find_daemon_config` with its surroundings given.
pub fn find_daemon_config_in(explicit: Option<&Path>, env: &Env, system: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(path) = env.var("MCPD_CONFIG") {
        return Some(PathBuf::from(path));
    }
    system.is_file().then(|| system.to_owned())
}

/// Loads and validates the daemon file at `path`, or the built-in defaults when `None`.
pub fn load_daemon(path: Option<&Path>) -> Result<DaemonConfig, Vec<ConfigError>> {
    load_daemon_in(path, &Env::from_process())
}

/// `load_daemon` with its surroundings given.
pub fn load_daemon_in(path: Option<&Path>, env: &Env) -> Result<DaemonConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let source = match path {
        None => None,
        Some(path) => {
            let file = env::absolute(&env.cwd, path);
            let text = file::read_config_text(&file).map_err(|err| {
                vec![ConfigError {
                    file: file.clone(),
                    line: None,
                    column: None,
                    message: format!("cannot read the daemon configuration: {err}"),
                    hint: Some(
                        "check the path given by --config or $MCPD_CONFIG; without either, mcpd reads /etc/mcpd/mcpd.yaml if it exists"
                            .into(),
                    ),
                }]
            })?;
            Some(source::Source::parse(&file, text).map_err(|err| vec![err])?)
        }
    };
    let daemon = validate::daemon(source.as_ref(), env, &mut errors);
    services::sort_by_position(&mut errors);
    if errors.is_empty() {
        Ok(daemon)
    } else {
        Err(errors)
    }
}

/// Parses and validates the text of a daemon file as if read from `file`, reading nothing from
/// disk: the pure core of `load_daemon_in`, also what the fuzz target and its regression tests
/// drive.
pub fn parse_daemon_str(
    file: &Path,
    text: &str,
    env: &Env,
) -> Result<DaemonConfig, Vec<ConfigError>> {
    let source = source::Source::parse(file, text.to_owned()).map_err(|err| vec![err])?;
    let mut errors = Vec::new();
    let daemon = validate::daemon(Some(&source), env, &mut errors);
    services::sort_by_position(&mut errors);
    if errors.is_empty() {
        Ok(daemon)
    } else {
        Err(errors)
    }
}

/// Parses and validates the text of one server file as if read from `file`, with the checks
/// inside that file but none across files (a name or port another file also uses).
pub fn parse_server_file_str(
    file: &Path,
    text: &str,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
) -> Result<Vec<ServerConfig>, Vec<ConfigError>> {
    let source = source::Source::parse(file, text.to_owned()).map_err(|err| vec![err])?;
    let mut errors = Vec::new();
    let servers = validate::server_file(&source, daemon, env, resolver, &mut errors);
    services::sort_by_position(&mut errors);
    if errors.is_empty() {
        Ok(servers)
    } else {
        Err(errors)
    }
}

/// Loads every `*.yaml` file of `daemon.services_dir`.
///
/// A file that fails keeps the servers it had in `previous` (if any) and its errors are
/// listed in `Services::errors`; cross-file errors (a name or port used twice) are reported
/// against the later file, which then counts as failed.
pub fn load_services(daemon: &DaemonConfig, previous: Option<&Services>) -> Services {
    load_services_in(daemon, previous, &Env::from_process(), &resolve_binary)
}

/// `load_services` with its surroundings and binary lookup given.
pub fn load_services_in(
    daemon: &DaemonConfig,
    previous: Option<&Services>,
    env: &Env,
    resolver: &Resolver,
) -> Services {
    services::load(daemon, previous, env, resolver)
}

/// Loads the daemon file and every server file; any error at all is returned.
pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    load_in(path, &Env::from_process(), &resolve_binary)
}

/// `load` with its surroundings and binary lookup given.
pub fn load_in(
    path: Option<&Path>,
    env: &Env,
    resolver: &Resolver,
) -> Result<Config, Vec<ConfigError>> {
    let daemon = load_daemon_in(path, env)?;
    let services = load_services_in(&daemon, None, env, resolver);
    if !services.errors.is_empty() {
        return Err(services.errors);
    }
    Ok(Config { daemon, services })
}

#[cfg(test)]
mod tests;
