//! Replays the committed corpora of the `auth_header` and `gateway_route` fuzz targets (seeds
//! and every input that once crashed them, in daemon/tests-data/fuzz/) through the same
//! functions and checks, so CI guards against regressions without a nightly toolchain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderValue, Uri};

use crate::config::{AuthConfig, KeySource, valid_server_name};
use crate::gateway::auth::{self, Authenticator, TokenError};
use crate::gateway::{Route, route};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests-data/fuzz")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read");
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "too few inputs in {}", dir.display());
    inputs
}

include!("fuzz_route_check.rs");

#[test]
fn replays_the_gateway_route_corpus() {
    for (_, data) in corpus("gateway_route") {
        if let Ok(uri) = Uri::try_from(data.as_slice()) {
            check_route(uri.path());
        }
        if let Ok(path) = std::str::from_utf8(&data) {
            check_route(path);
        }
    }
}

#[test]
fn traversal_shapes_name_no_valid_server() {
    for path in [
        "/api/v1/mcp/../mcp",
        "/api/v1/mcp/%2e%2e/mcp",
        "/api/v1/mcp/a%2Fb/mcp",
        "/api/v1/mcp/ECHO/mcp",
        "/api/v1/mcp/\u{e9}cho/mcp",
    ] {
        match route(path) {
            Route::Mcp(name) => assert!(!valid_server_name(name), "{path}"),
            other => assert_eq!(other, Route::NotFound, "{path}"),
        }
    }
}

/// The secret fuzz/fuzz_targets/auth_header.rs signs against (the seed tokens use it).
const SECRET: &[u8] = b"mcpd-fuzz-secret";

fn authenticator() -> Authenticator {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jwt.secret");
    std::fs::write(&path, SECRET).expect("write the secret");
    Authenticator::load(&AuthConfig {
        issuer: None,
        authorization_servers: Vec::new(),
        keys: vec![KeySource::Hs256SecretFile(path)],
        leeway: Duration::from_secs(30),
    })
    .expect("load the key")
}

#[test]
fn replays_the_auth_header_corpus() {
    let auth = authenticator();
    let mut outcomes = Vec::new();
    for (path, data) in corpus("auth_header") {
        // The same body as the fuzz target.
        let Ok(value) = HeaderValue::from_bytes(&data) else {
            continue;
        };
        let Some(token) = auth::bearer_token(&value) else {
            outcomes.push((path, None));
            continue;
        };
        let first = auth.verify(token).map(|claims| claims.expires_at);
        let second = auth.verify(token).map(|claims| claims.expires_at);
        assert_eq!(first, second);
        outcomes.push((path, Some(first)));
    }
    // The named seeds mean what they say.
    let outcome = |name: &str| {
        outcomes
            .iter()
            .find(|(path, _)| path.file_name().is_some_and(|file| file == name))
            .map(|(_, outcome)| *outcome)
            .unwrap_or_else(|| panic!("seed {name} missing"))
    };
    assert_eq!(outcome("valid"), Some(Ok(4_102_444_800)));
    assert_eq!(outcome("basic"), None);
    assert_eq!(outcome("expired"), Some(Err(TokenError::Expired)));
    assert_eq!(outcome("no-aud"), Some(Err(TokenError::MissingClaim)));
    assert_eq!(outcome("wrong-secret"), Some(Err(TokenError::BadSignature)));
    assert!(matches!(outcome("alg-none"), Some(Err(_))));
    assert_eq!(outcome("alg-rs256"), Some(Err(TokenError::NoMatchingKey)));
}
