//! The server files of `services_dir`: which files count, reading them in order, and the
//! checks across files (a name or an explicit port used twice). A file that fails keeps the
//! servers it had before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::env::{Env, Resolver};
use super::error::ConfigError;
use super::model::{DaemonConfig, ServerConfig, Services, VirtualConfig};
use super::source::{Source, join, key};
use super::validate;

/// True for a server file: `*.yaml`, not hidden (editor swap and lock files start with `.`).
pub fn is_server_file(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".yaml") && name.len() > ".yaml".len()
}

/// The server files of `dir`, sorted by name.
fn server_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Follows symlinks, so a linked file counts and a dangling link is skipped. Anything
        // else but a directory counts: a FIFO or device named `*.yaml` is reported when read
        // (and its servers kept), not silently taken for a removed file.
        if is_server_file(name) && entry.path().metadata().is_ok_and(|meta| !meta.is_dir()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// What the servers accepted so far claim.
#[derive(Default)]
struct Claims {
    /// Name -> the file that defines it.
    names: BTreeMap<String, PathBuf>,
    /// Explicit port -> (server, file).
    ports: BTreeMap<u16, (String, PathBuf)>,
}

impl Claims {
    fn add(&mut self, server: &ServerConfig) {
        self.names.insert(server.name.clone(), server.file.clone());
        if let Some(port) = server.port {
            self.ports
                .insert(port, (server.name.clone(), server.file.clone()));
        }
    }

    fn conflicts(&self, server: &ServerConfig) -> bool {
        self.names.contains_key(&server.name)
            || server
                .port
                .is_some_and(|port| self.ports.contains_key(&port))
    }
}

pub fn load(
    daemon: &DaemonConfig,
    previous: Option<&Services>,
    env: &Env,
    resolver: &Resolver,
) -> Services {
    let dir = &daemon.services_dir;
    let keep_previous = |file: &Path| -> Vec<ServerConfig> {
        previous
            .map(|services| {
                services
                    .servers
                    .values()
                    .filter(|s| s.file == file)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let files = match server_files(dir) {
        Ok(files) => files,
        Err(err) => {
            return Services {
                servers: previous.map(|services| services.servers.clone()).unwrap_or_default(),
                virtuals: previous.map(|services| services.virtuals.clone()).unwrap_or_default(),
                errors: vec![ConfigError {
                    file: dir.clone(),
                    line: None,
                    column: None,
                    message: format!("cannot read the services directory: {err}"),
                    hint: Some(
                        "create it, or point services_dir in the daemon file at the directory of server files".into(),
                    ),
                }],
            };
        }
    };

    let keep_previous_virtuals = |file: &Path| -> Vec<VirtualConfig> {
        previous
            .map(|services| {
                services
                    .virtuals
                    .values()
                    .filter(|s| s.file == file)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut claims = Claims::default();
    let mut services = Services::default();
    for file in files {
        let mut errors = Vec::new();
        let (servers, virtuals) = read_file(&file, daemon, env, resolver, &claims, &mut errors);
        let (accepted, virtuals) = if errors.is_empty() {
            (servers, virtuals)
        } else {
            (keep_previous(&file), keep_previous_virtuals(&file))
        };
        services.errors.append(&mut errors);
        for virtual_server in virtuals {
            if !claims.names.contains_key(&virtual_server.name) {
                claims
                    .names
                    .insert(virtual_server.name.clone(), virtual_server.file.clone());
                services
                    .virtuals
                    .insert(virtual_server.name.clone(), virtual_server);
            }
        }
        for server in accepted {
            // A kept server that now clashes with an earlier file yields to it.
            if !claims.conflicts(&server) {
                claims.add(&server);
                services.servers.insert(server.name.clone(), server);
            }
        }
    }
    validate::virtual_server::resolve(
        &services.servers,
        &mut services.virtuals,
        previous.map(|p| &p.virtuals),
        &mut services.errors,
    );
    services
}

/// One file's servers; any error (its own, or a clash with `claims`) goes to `errors`.
fn read_file(
    file: &Path,
    daemon: &DaemonConfig,
    env: &Env,
    resolver: &Resolver,
    claims: &Claims,
    errors: &mut Vec<ConfigError>,
) -> (Vec<ServerConfig>, Vec<VirtualConfig>) {
    let text = match super::file::read_config_text(file) {
        Ok(text) => text,
        Err(err) => {
            errors.push(ConfigError {
                file: file.to_owned(),
                line: None,
                column: None,
                message: format!("cannot read the file: {err}"),
                hint: Some(
                    "a server file is a regular file (or a link to one) of UTF-8 text, at most 4 MiB, readable by mcpd"
                        .into(),
                ),
            });
            return Default::default();
        }
    };
    let source = match Source::parse(file, text) {
        Ok(source) => source,
        Err(err) => {
            errors.push(err);
            return Default::default();
        }
    };
    let (servers, virtuals) = validate::server_file_entries(&source, daemon, env, resolver, errors);

    let mut seen = Claims {
        names: claims.names.clone(),
        ports: claims.ports.clone(),
    };
    for server in &servers {
        let path = [key("mcp_servers"), key(&server.name)];
        if let Some(other) = seen.names.get(&server.name) {
            errors.push(source.error(
                source.key_pos(&path),
                format!(
                    "server \"{}\" is already defined in {}",
                    server.name,
                    other.display()
                ),
                "rename one of them or remove the duplicate".to_owned(),
            ));
        }
        if let Some(port) = server.port
            && let Some((owner, owner_file)) = seen.ports.get(&port)
        {
            errors.push(source.error(
                source.value_pos(&join(&path, [key("port")])),
                format!(
                    "port {port} of server \"{}\" is already used by server \"{owner}\" ({})",
                    server.name,
                    owner_file.display()
                ),
                "give each server its own port, or omit port to have one allocated".to_owned(),
            ));
        }
        seen.add(server);
    }
    for virtual_server in &virtuals {
        if let Some(other) = seen.names.get(&virtual_server.name) {
            errors.push(source.error(
                source.key_pos(&[key("mcp_servers"), key(&virtual_server.name)]),
                format!(
                    "server \"{}\" is already defined in {}",
                    virtual_server.name,
                    other.display()
                ),
                "rename one of them or remove the duplicate".to_owned(),
            ));
        }
        seen.names
            .insert(virtual_server.name.clone(), virtual_server.file.clone());
    }
    sort_by_position(errors);
    (servers, virtuals)
}

/// Orders one file's errors top to bottom; errors about the whole file come first.
pub fn sort_by_position(errors: &mut [ConfigError]) {
    errors.sort_by_key(|error| (error.line, error.column));
}
