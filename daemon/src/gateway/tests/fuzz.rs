//! Replays the committed corpora of the gateway's fuzz targets (`auth_header`,
//! `gateway_route`, `host_authority`, `query_token`, `header_filter`, `h1_response`, `h1_head`: seeds and every input
//! that once crashed them, in daemon/tests-data/fuzz/) through the targets' own checks
//! (`crate::fuzzing`), so CI guards against regressions without a nightly toolchain; and
//! checks that the named seeds mean what they say.

use std::path::{Path, PathBuf};

use crate::config::valid_server_name;
use crate::fuzzing;
use crate::gateway::auth::TokenError;
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

#[test]
fn replays_the_gateway_route_corpus() {
    for (_, data) in corpus("gateway_route") {
        fuzzing::gateway_route(&data);
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

#[test]
fn replays_the_auth_header_corpus() {
    let auth = fuzzing::hs256_authenticator();
    let outcomes: Vec<_> = corpus("auth_header")
        .into_iter()
        .map(|(path, data)| (path, fuzzing::auth_header(&auth, &data)))
        .collect();
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
    assert_eq!(outcome("crit"), Some(Err(TokenError::CriticalExtension)));
    assert_eq!(
        outcome("crit-empty"),
        Some(Err(TokenError::CriticalExtension))
    );
}

#[test]
fn replays_the_host_authority_corpus() {
    let mut parsed: Vec<_> = corpus("host_authority")
        .into_iter()
        .filter(|(_, data)| fuzzing::host_authority(data))
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    parsed.sort();
    assert_eq!(
        parsed,
        [
            "ipv4-port",
            "ipv6-mapped",
            "ipv6-port",
            "ipvfuture",
            "localhost",
            "localhost-port",
            "pct-name"
        ]
    );
}

#[test]
fn replays_the_query_token_corpus() {
    let mut passed: Vec<_> = corpus("query_token")
        .into_iter()
        .filter(|(_, data)| fuzzing::query_token(data) == Some(false))
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    passed.sort();
    assert_eq!(
        passed,
        ["broken-escape", "empty", "other-name", "value-only"]
    );
}

#[test]
fn replays_the_header_filter_corpus() {
    for (_, data) in corpus("header_filter") {
        fuzzing::header_filter(&data);
    }
}

#[test]
fn replays_the_envelope_corpus() {
    let mut accepted: Vec<_> = corpus("envelope")
        .into_iter()
        .filter(|(_, data)| fuzzing::envelope(data))
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    accepted.sort();
    // The named seeds mean what they say: everything else is refused. Values the gateway does
    // not decide on (`arguments`, other params) are skipped unchecked: 10,000 levels of
    // nesting or 1e999 there are the server's to judge.
    assert_eq!(
        accepted,
        [
            "batch",
            "call",
            "call-escaped-name",
            "call-headers-2026",
            "call-headers-base64",
            "call-headers-mismatch",
            "deep-arguments",
            "deep-arguments-10000",
            "duplicate-in-arguments",
            "huge-id",
            "huge-number-in-params",
            "notification",
            "response",
        ]
    );
}

#[test]
fn replays_the_h1_response_corpus() {
    for (_, data) in corpus("h1_response") {
        fuzzing::h1_response(&data);
    }
}

#[test]
fn replays_the_sse_split_corpus() {
    for (_, data) in corpus("sse_split") {
        fuzzing::sse_split(&data);
    }
}

#[test]
fn replays_the_h1_head_corpus() {
    use crate::gateway::h1_head::{Verdict, parse};
    for (path, data) in corpus("h1_head") {
        fuzzing::h1_head(&data);
        // The named seeds mean what they say: only the plain ones are handled by hand.
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let fast = matches!(parse(&data, 1024, &mut Vec::new()), Verdict::Fast(_));
        let plain = ["post", "get-sse", "obs-text-two-hosts"].contains(&name.as_str());
        assert_eq!(fast, plain, "{name}");
    }
}
