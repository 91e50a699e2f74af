//! A remote server entry of a server file (`url:` instead of `binary:`): the URL, `tls` and
//! `upstream_auth`, with the CA and credential files read now, so a file that cannot be read
//! or used is an error at its key, at start and on every reload.

use std::path::Path;
use std::sync::Arc;

use http::HeaderName;

use super::virtual_server::present;
use crate::config::env::absolute;
use crate::config::error::ConfigError;
use crate::config::file::read_config_file;
use crate::config::raw::*;
use crate::config::source::{Seg, Source, join, key};
use crate::remote::{Credential, RemoteTarget, RemoteUrl, refused_header_name};

use super::shared::PROCESS_KEYS;

/// Errors for `tls` or `upstream_auth` on a server that has no `url`.
pub fn refuse_remote_keys(
    source: &Source,
    path: &[Seg],
    name: &str,
    errors: &mut Vec<ConfigError>,
) {
    for wanted in ["tls", "upstream_auth"] {
        if present(source, path, wanted) {
            errors.push(source.error(
                source.key_pos(&join(path, [key(wanted)])),
                format!("server \"{name}\": `{wanted}` applies to remote servers (url:) only"),
                "remove it, or replace binary with url".to_owned(),
            ));
        }
    }
}

/// The target of a remote server (`raw.url` is set); `None` after an error.
pub fn remote(
    source: &Source,
    path: &[Seg],
    name: &str,
    raw: &RawServer,
    file_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<RemoteTarget>> {
    let before = errors.len();
    for refused in PROCESS_KEYS {
        if present(source, path, refused) {
            let hint = if *refused == "binary" {
                "a server either runs a program (`binary`) or is reached at a URL (`url`): remove one"
                    .to_owned()
            } else {
                format!("mcpd does not run a remote server: remove `{refused}`")
            };
            errors.push(source.error(
                source.key_pos(&join(path, [key(refused)])),
                format!("server \"{name}\" has url, which takes no {refused}"),
                hint,
            ));
        }
    }
    let url_at = join(path, [key("url")]);
    let url = match RemoteUrl::parse(raw.url.as_deref().unwrap_or_default()) {
        Ok(url) => Some(url),
        Err(why) => {
            errors.push(source.error(
                source.value_pos(&url_at),
                format!("url of server \"{name}\" {why}"),
                "write the server's MCP endpoint, e.g. https://mcp.example.com/mcp".to_owned(),
            ));
            None
        }
    };

    let tls_at = join(path, [key("tls")]);
    let tls = source
        .block::<RawTls>(&tls_at, &[], &format!("in server \"{name}\" tls"), errors)
        .value;
    if present(source, path, "tls")
        && let Some(url) = &url
        && !url.https
    {
        errors.push(source.error(
            source.key_pos(&tls_at),
            format!("server \"{name}\" has tls but its url is http:"),
            "use an https: url, or remove tls".to_owned(),
        ));
    }
    let ca_file = tls.ca_file.and_then(|file| {
        let file = absolute(file_dir, &file);
        let at = join(&tls_at, [key("ca_file")]);
        let pem = read_config_file(&file)
            .map_err(|err| err.to_string())
            .and_then(|pem| {
                crate::remote::client_config(Some(&pem))
                    .map(|_| pem)
                    .map_err(|err| err.to_string())
            });
        match pem {
            Ok(pem) => Some((file, pem)),
            Err(why) => {
                errors.push(source.error(
                    source.value_pos(&at),
                    format!("tls.ca_file {} of server \"{name}\": {why}", file.display()),
                    "name a readable PEM file of certificate authorities".to_owned(),
                ));
                None
            }
        }
    });

    let credential = credential(source, path, name, file_dir, errors);
    if errors.len() > before {
        return None;
    }
    match RemoteTarget::new(url?, ca_file, credential) {
        Ok(target) => Some(Arc::new(target)),
        Err(err) => {
            errors.push(source.error(
                source.key_pos(&url_at),
                format!("server \"{name}\": {err}"),
                None,
            ));
            None
        }
    }
}

/// `upstream_auth`: `{bearer_file: F}` or `{header: H, value_file: F}`.
fn credential(
    source: &Source,
    path: &[Seg],
    name: &str,
    file_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Credential> {
    let at = join(path, [key("upstream_auth")]);
    let context = format!("in server \"{name}\" upstream_auth");
    let auth = source
        .block::<RawUpstreamAuth>(&at, &[], &context, errors)
        .value;
    let mut error = |key_name: &str, value: bool, message: String, hint: &str| {
        let key_at = join(&at, [key(key_name)]);
        let pos = if value {
            source.value_pos(&key_at)
        } else {
            source.key_pos(&key_at)
        };
        errors.push(source.error(pos, message, hint.to_owned()));
    };
    let (header, file, file_key, bearer) = match (auth.bearer_file, auth.header, auth.value_file) {
        (None, None, None) => return None,
        (Some(file), None, None) => (http::header::AUTHORIZATION, file, "bearer_file", true),
        (Some(_), _, _) => {
            let other = if present(source, &at, "header") {
                "header"
            } else {
                "value_file"
            };
            error(
                other,
                false,
                format!("upstream_auth of server \"{name}\" has both bearer_file and {other}"),
                "write either {bearer_file: F} or {header: NAME, value_file: F}",
            );
            return None;
        }
        (None, Some(header), Some(file)) => {
            if let Some(why) = refused_header_name(&header) {
                error(
                    "header",
                    true,
                    format!("upstream_auth.header {header:?} of server \"{name}\" {why}"),
                    "name the header the remote server reads its key from, e.g. X-Api-Key",
                );
                return None;
            }
            let Ok(header) = HeaderName::from_bytes(header.as_bytes()) else {
                return None;
            };
            (header, file, "value_file", false)
        }
        (None, Some(_), None) => {
            error(
                "header",
                false,
                format!("upstream_auth of server \"{name}\" has header but no value_file"),
                "add value_file: the file holding the header's value",
            );
            return None;
        }
        (None, None, Some(_)) => {
            error(
                "value_file",
                false,
                format!("upstream_auth of server \"{name}\" has value_file but no header"),
                "add header: the name of the header to send, e.g. X-Api-Key",
            );
            return None;
        }
    };
    let file = absolute(file_dir, &file);
    let read = read_config_file(&file)
        .map_err(|err| err.to_string())
        .and_then(|bytes| {
            Credential::from_file(header, &bytes, bearer, file.clone())
                .map_err(|err| err.to_string())
        });
    match read {
        Ok(credential) => Some(credential),
        Err(why) => {
            error(
                file_key,
                true,
                format!(
                    "upstream_auth.{file_key} {} of server \"{name}\": {why}",
                    file.display()
                ),
                "write the credential alone on one line (printable ASCII), in a file mcpd can read",
            );
            None
        }
    }
}
