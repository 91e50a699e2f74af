//! Replays the committed corpora of the gateway's fuzz targets (`auth_header`,
//! `gateway_route`, `host_authority`, `query_token`, `header_filter`: seeds and every input
//! that once crashed them, in daemon/tests-data/fuzz/) through the same functions and checks,
//! so CI guards against regressions without a nightly toolchain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName};
use http::{HeaderValue, Uri};

use crate::config::{AuthConfig, KeySource, valid_server_name};
use crate::gateway::auth::{self, Authenticator, TokenError};
use crate::gateway::authority::{self, Host};
use crate::gateway::headers::{self, Forwarding};
use crate::gateway::query::has_access_token;
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

/// The same body as fuzz/fuzz_targets/gateway_route.rs.
fn check_route(path: &str) {
    let (prefix, name) = match route(path) {
        Route::Mcp(name) => ("/api/v1/mcp/", name),
        Route::Metadata(name) => ("/.well-known/oauth-protected-resource/api/v1/mcp/", name),
        Route::Healthz | Route::Metrics | Route::Registry | Route::NotFound => return,
    };
    assert!(!name.is_empty() && !name.contains('/'), "{path:?}");
    assert_eq!(format!("{prefix}{name}/mcp"), path);
    if valid_server_name(name) {
        assert!(!name.contains(['.', '%', '\\']), "{name:?}");
    }
}

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
    assert_eq!(outcome("crit"), Some(Err(TokenError::CriticalExtension)));
    assert_eq!(
        outcome("crit-empty"),
        Some(Err(TokenError::CriticalExtension))
    );
}

/// The same body as fuzz/fuzz_targets/host_authority.rs.
fn check_authority(value: &str) {
    let Ok(parsed) = authority::parse(value) else {
        return;
    };
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)),
        "{value:?}"
    );
    assert!(parsed.host.same(&parsed.host), "{value:?}");
    if let Host::Name(name) = parsed.host {
        assert!(value.starts_with(name) && !name.is_empty(), "{value:?}");
        assert!(!name.contains([':', '[', ']']), "{value:?}");
    }
    let colons_outside = value
        .rsplit(']')
        .next()
        .unwrap_or(value)
        .matches(':')
        .count();
    assert!(colons_outside <= 1, "{value:?}");
    assert_eq!(parsed.port.is_some(), colons_outside == 1, "{value:?}");
}

#[test]
fn replays_the_host_authority_corpus() {
    let mut parsed = Vec::new();
    for (path, data) in corpus("host_authority") {
        if let Ok(value) = std::str::from_utf8(&data) {
            check_authority(value);
            if authority::parse(value).is_ok() {
                parsed.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        if let Ok(value) = HeaderValue::from_bytes(&data)
            && let Ok(value) = value.to_str()
        {
            check_authority(value);
        }
    }
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

/// The same body as fuzz/fuzz_targets/query_token.rs.
fn check_query(query: &str) -> bool {
    let found = has_access_token(query);
    assert_eq!(
        found,
        has_access_token(&query.to_ascii_uppercase()),
        "{query:?}"
    );
    assert_eq!(
        found,
        has_access_token(&format!("a=1&{query}")),
        "{query:?}"
    );
    assert_eq!(
        found,
        has_access_token(&format!("{query};b=2")),
        "{query:?}"
    );
    assert!(
        has_access_token(&format!("{query}&access_token=x")),
        "{query:?}"
    );
    assert!(
        has_access_token(&format!("{query};ACCESS%5FTOKEN")),
        "{query:?}"
    );
    found
}

#[test]
fn replays_the_query_token_corpus() {
    let mut passed = Vec::new();
    for (path, data) in corpus("query_token") {
        if let Ok(query) = std::str::from_utf8(&data)
            && !check_query(query)
        {
            passed.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        let mut target = b"/api/v1/mcp/x/mcp?".to_vec();
        target.extend_from_slice(&data);
        if let Ok(uri) = Uri::try_from(target)
            && let Some(query) = uri.query()
        {
            check_query(query);
        }
    }
    passed.sort();
    assert_eq!(
        passed,
        ["broken-escape", "empty", "other-name", "value-only"]
    );
}

/// The same body as fuzz/fuzz_targets/header_filter.rs.
fn check_headers(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let trusted = first & 1 == 1;
    let mut map = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    let host = HeaderValue::from_static("localhost:8080");
    let peer: std::net::IpAddr = if first & 2 == 0 {
        "192.0.2.7".parse().unwrap()
    } else {
        "2001:db8::7".parse().unwrap()
    };
    headers::filter_request(&mut map, trusted);
    headers::set_forwarding(
        &mut map,
        &Forwarding {
            peer,
            host: Some(&host),
            proto: "https",
            trusted_peer: trusted,
        },
    );
    for name in map.keys() {
        let name = name.as_str();
        assert!(!name.contains('_'), "{name}");
        assert!(!name.starts_with("x-mcp-"), "{name}");
        assert!(
            ![
                "authorization",
                "host",
                "connection",
                "keep-alive",
                "te",
                "transfer-encoding",
                "upgrade",
                "proxy-authorization",
                "proxy-connection",
                "trailer",
            ]
            .contains(&name),
            "{name}"
        );
    }
    let get = |name: &str| map.get(name).map(|v| v.as_bytes().to_vec());
    let ip = peer.to_string();
    assert!(get("x-forwarded-for").unwrap().ends_with(ip.as_bytes()));
    assert!(
        get("forwarded")
            .unwrap()
            .ends_with(b";host=\"localhost:8080\";proto=https")
    );
    assert_eq!(map.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(map.get_all("forwarded").iter().count(), 1);
    if !trusted {
        assert_eq!(get("x-forwarded-for").unwrap(), ip.as_bytes());
        assert_eq!(get("x-forwarded-host").unwrap(), b"localhost:8080");
        assert_eq!(get("x-forwarded-proto").unwrap(), b"https");
        assert!(get("x-real-ip").is_none());
        for name in map.keys() {
            let name = name.as_str();
            assert!(
                !name.starts_with("x-forwarded-")
                    || ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"].contains(&name),
                "{name}"
            );
        }
    }
}

#[test]
fn replays_the_header_filter_corpus() {
    for (_, data) in corpus("header_filter") {
        check_headers(&data);
    }
}
