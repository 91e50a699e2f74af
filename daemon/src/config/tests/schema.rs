//! The JSON Schemas: the committed files are what the config types generate, every example
//! file of the repository validates, and broken files are refused by the schema and by the
//! validator alike.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fixture;
use crate::config::schema::{self, DAEMON_FILE, INSTALL_DIR, SERVER_FILE};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Daemon,
    Server,
}

fn schema_of(kind: Kind) -> Value {
    match kind {
        Kind::Daemon => schema::daemon(),
        Kind::Server => schema::server(),
    }
}

/// The schema's complaints about `text` (empty when it validates).
fn schema_errors(kind: Kind, text: &str) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema_of(kind)).expect("the schema compiles");
    let instance: Value = match yaml_serde::from_str(text) {
        Ok(value) => value,
        Err(err) => return vec![format!("not YAML: {err}")],
    };
    validator
        .iter_errors(&instance)
        .map(|err| format!("{} at {}", err, err.instance_path()))
        .collect()
}

/// The validator's errors for `text` as a daemon file or as the one server file.
fn check_errors(kind: Kind, text: &str) -> Vec<String> {
    let fixture = fixture();
    match kind {
        Kind::Daemon => std::fs::write(fixture.path("mcpd.yaml"), text).unwrap(),
        Kind::Server => std::fs::write(fixture.path("mcp/s.yaml"), text).unwrap(),
    }
    match fixture.load() {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    // `MCPD_UPDATE_SCHEMA=1 cargo test -p mcpd schema` rewrites them after a config change.
    let update = std::env::var_os("MCPD_UPDATE_SCHEMA").is_some();
    for (file, schema) in [
        (DAEMON_FILE, schema::daemon()),
        (SERVER_FILE, schema::server()),
    ] {
        let path = repo().join("daemon/schema").join(file);
        let generated = schema::render(&schema);
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is not what the config types generate: run \
             `MCPD_UPDATE_SCHEMA=1 cargo test -p mcpd schema` and commit the result",
            path.display()
        );
    }
}

#[test]
fn every_example_file_validates_against_its_schema() {
    let root = repo();
    let mut files = vec![
        (Kind::Daemon, root.join("services/mcpd.yaml")),
        (Kind::Daemon, root.join("systemd/mcpd.yaml")),
        (Kind::Server, root.join("systemd/examples/echo.yaml")),
        (Kind::Server, root.join("systemd/e2e/servers.yaml")),
    ];
    for entry in std::fs::read_dir(root.join("services/mcp")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push((Kind::Server, path));
        }
    }
    let seeds = root.join("daemon/tests-data/fuzz/config_load");
    files.push((Kind::Daemon, seeds.join("seed-full-daemon.yaml")));
    files.push((Kind::Daemon, seeds.join("seed-daemon.yaml")));
    files.push((Kind::Server, seeds.join("seed-server.yaml")));
    for (kind, path) in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let errors = schema_errors(kind, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    // The files people edit point their editor at the installed schema.
    for (file, schema_file) in [
        ("services/mcpd.yaml", DAEMON_FILE),
        ("systemd/mcpd.yaml", DAEMON_FILE),
        ("services/mcp/echo.yaml", SERVER_FILE),
        ("systemd/examples/echo.yaml", SERVER_FILE),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("# yaml-language-server: $schema={INSTALL_DIR}/{schema_file}"),
            "{file}"
        );
    }
}

/// Files that both the schema and `mcpd check` refuse.
const BROKEN: &[(Kind, &str, &str)] = &[
    (
        Kind::Server,
        "tool pattern with a space",
        "mcp_servers:\n  a:\n    binary: mcp-echo\n    oauth: {tools: {\"del ete\": [admin]}}\n",
    ),
    (
        Kind::Server,
        "tool rule without scopes",
        "mcp_servers:\n  a:\n    binary: mcp-echo\n    oauth: {tools: {\"x\": []}}\n",
    ),
    (
        Kind::Server,
        "scope with a quote",
        "mcp_servers:\n  a:\n    binary: mcp-echo\n    oauth: {scopes: [\"a\\\"b\"]}\n",
    ),
    (
        Kind::Server,
        "unknown audit key",
        "mcp_servers:\n  a:\n    binary: mcp-echo\n    audit: {args: true}\n",
    ),
    (Kind::Daemon, "unknown top-level key", "servicedir: mcp\n"),
    (
        Kind::Daemon,
        "unknown gateway key",
        "gateway: {listn: 127.0.0.1:8080}\n",
    ),
    (Kind::Daemon, "bad duration", "auth: {leeway: soon}\n"),
    (
        Kind::Daemon,
        "duration without unit",
        "auth: {leeway: 30}\n",
    ),
    (
        Kind::Daemon,
        "zero timeout",
        "gateway: {header_timeout: 0s}\n",
    ),
    (
        Kind::Daemon,
        "bad size unit",
        "gateway: {max_body: 4 parsecs}\n",
    ),
    (Kind::Daemon, "negative size", "gateway: {max_body: -1}\n"),
    (
        Kind::Daemon,
        "port range without dash",
        "port_range: \"5000\"\n",
    ),
    (Kind::Daemon, "unquoted mode", "control: {mode: 660}\n"),
    (
        Kind::Daemon,
        "mode not octal",
        "control: {mode: \"0999\"}\n",
    ),
    (
        Kind::Daemon,
        "listen with a host name",
        "gateway: {listen: \"localhost:8080\"}\n",
    ),
    (
        Kind::Daemon,
        "public_url not http",
        "gateway: {public_url: \"ftp://x\"}\n",
    ),
    (
        Kind::Daemon,
        "rotation unknown",
        "logs: {rotation: weekly}\n",
    ),
    (Kind::Daemon, "keep not a number", "logs: {keep: many}\n"),
    (
        Kind::Daemon,
        "unknown key in a key",
        "auth: {keys: [{hs256_secret: x}]}\n",
    ),
    (
        Kind::Daemon,
        "HS256 as public key algorithm",
        "auth: {keys: [{public_key_file: k.pem, algorithm: HS256}]}\n",
    ),
    (
        Kind::Daemon,
        "policy unknown",
        "defaults: {restart: {policy: sometimes}}\n",
    ),
    (Kind::Daemon, "a list for a block", "gateway: [a, b]\n"),
    (Kind::Daemon, "a list at the top", "- services_dir: mcp\n"),
    (Kind::Server, "empty file", ""),
    (Kind::Server, "no mcp_servers", "servers: {}\n"),
    (
        Kind::Server,
        "typo in a server key",
        "mcp_servers:\n  echo: {binary: mcp-echo, enbled: true}\n",
    ),
    (
        Kind::Server,
        "bad server name",
        "mcp_servers:\n  Echo: {binary: mcp-echo}\n",
    ),
    (
        Kind::Server,
        "port above 65535",
        "mcp_servers:\n  echo: {binary: mcp-echo, port: 70000}\n",
    ),
    (
        Kind::Server,
        "enabled not a boolean",
        "mcp_servers:\n  echo: {binary: mcp-echo, enabled: sometimes}\n",
    ),
    (
        Kind::Server,
        "args not a list",
        "mcp_servers:\n  echo: {binary: mcp-echo, args: {a: b}}\n",
    ),
    (
        Kind::Server,
        "unknown oauth key",
        "mcp_servers:\n  echo: {binary: mcp-echo, oauth: {requried: true}}\n",
    ),
    (
        Kind::Server,
        "scopes not a list",
        "mcp_servers:\n  echo: {binary: mcp-echo, oauth: {scopes: {a: 1}}}\n",
    ),
    (
        Kind::Server,
        "bad health duration",
        "mcp_servers:\n  echo: {binary: mcp-echo, health: {interval: fast}}\n",
    ),
    (
        Kind::Server,
        "restart burst a word",
        "mcp_servers:\n  echo: {binary: mcp-echo, restart: {burst: lots}}\n",
    ),
    (Kind::Server, "mcp_servers a list", "mcp_servers: [echo]\n"),
];

#[test]
fn broken_files_are_refused_by_the_schema_and_by_check() {
    for (kind, what, text) in BROKEN {
        assert!(
            !schema_errors(*kind, text).is_empty(),
            "{what}: the schema accepts {kind:?} file {text:?}"
        );
        assert!(
            !check_errors(*kind, text).is_empty(),
            "{what}: mcpd check accepts {kind:?} file {text:?}"
        );
    }
}

/// Scalars in their less common forms, which both accept.
const VALID: &[(Kind, &str)] = &[
    (
        Kind::Server,
        "mcp_servers:\n  a:\n    binary: mcp-echo\n    oauth: {scopes: [user, \"tools:read\"], tools: {\"delete_*\": [admin], \"*\": [user]}}\n    audit: {arguments: true}\n",
    ),
    (Kind::Daemon, ""),
    (Kind::Daemon, "gateway:\n"),
    (
        Kind::Daemon,
        "auth: {leeway: 1m 30s}\ndefaults: {stop_timeout: 1.5s, restart: {backoff: 250ms, max_backoff: 2h}}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {max_body: 4096}\nauth: {leeway: \"0\"}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {max_body: 4 MB, upstream_wait: 2s}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {max_body: 1g, listen: \"[::1]:9000\"}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {public_url: \"https://mcp.example.com:8443/base/\"}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {allowed_hosts: [\"mcp.example.com\", \"10.0.0.5:8080\", \"[::1]:80\"]}\n",
    ),
    (
        Kind::Daemon,
        "gateway: {trusted_proxies: [\"10.0.0.0/8\", \"::1\"]}\n",
    ),
    (
        Kind::Daemon,
        "control: {mode: \"600\"}\nport_range: 80-80\n",
    ),
    (
        Kind::Daemon,
        "auth: {keys: [{public_key_file: k.pem, algorithm: EdDSA}]}\n",
    ),
    (Kind::Server, "mcp_servers:\n"),
    (
        Kind::Server,
        "mcp_servers:\n  a-1_b: {binary: x, oauth: null, restart: {policy: always}, health: {failures: 2}}\n",
    ),
];

#[test]
fn less_common_scalar_forms_pass_both() {
    for (kind, text) in VALID {
        let errors = schema_errors(*kind, text);
        assert!(errors.is_empty(), "schema refuses {text:?}: {errors:#?}");
        let errors = check_errors(*kind, text);
        assert!(errors.is_empty(), "check refuses {text:?}: {errors:#?}");
    }
}

#[test]
fn the_nested_blocks_are_in_the_schema() {
    let daemon = schema::daemon();
    for key in ["gateway", "control", "logs", "auth", "defaults"] {
        assert!(daemon["properties"][key].is_object(), "{key}");
    }
    let keys = &daemon["properties"]["auth"]["anyOf"][0]["properties"]["keys"];
    assert_eq!(keys["anyOf"][0]["type"], "array", "{keys:#}");
    let server = schema::server();
    assert_eq!(server["required"], serde_json::json!(["mcp_servers"]));
    let entry =
        &server["properties"]["mcp_servers"]["anyOf"][0]["additionalProperties"]["anyOf"][0];
    for key in ["oauth", "restart", "health", "binary", "display_in_web"] {
        assert!(entry["properties"][key].is_object(), "{key}: {entry:#}");
    }
    assert_eq!(entry["additionalProperties"], false);
}

#[test]
#[should_panic(expected = "nested_blocks! table")]
fn reading_a_block_with_nested_keys_the_table_lacks_is_caught() {
    use crate::config::raw::RawServer;
    use crate::config::source::{Source, key};
    let source = Source::parse(
        Path::new("s.yaml"),
        "mcp_servers:\n  echo: {binary: x, sandbox: {}}\n".to_owned(),
    )
    .unwrap();
    let path = [key("mcp_servers"), key("echo")];
    // A block added in validate/ but not in raw.rs's table would not reach the schema.
    let _ = source.block::<RawServer>(
        &path,
        &["oauth", "restart", "health", "limits", "sandbox"],
        "",
        &mut Vec::new(),
    );
}
