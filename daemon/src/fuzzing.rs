//! The properties the fuzz targets check, one function per target over its raw input:
//! `fuzz/fuzz_targets/*.rs` call them, and the unit tests replay each committed corpus
//! (`daemon/tests-data/fuzz/<target>/`: seeds and every input that once crashed a target)
//! through the same functions, so CI guards against regressions without a nightly toolchain.
//! Each function panics when a property does not hold; refusing an input is fine.

mod h1_head;
mod h1_response;
mod mcp_traffic;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub use h1_head::h1_head;
pub use h1_response::h1_response;
pub use mcp_traffic::{envelope, sse_split};

use crate::config::{self, AuthConfig, Env, KeySource, valid_server_name};
use crate::gateway::auth::{self, Authenticator, TokenError};
use crate::gateway::authority::{self, Host};
use crate::gateway::headers::{self, Forwarding};
use crate::gateway::query::has_access_token;
use crate::gateway::{Route, WebRoute, route};

/// `gateway_route`: the input as a request target parsed the way hyper does, and as a path.
/// A route that names a server names exactly one undecoded path segment between the fixed
/// prefix and `/mcp`; a name that could reach another path (`/`, `..` after decoding) never
/// passes the server-name rule, so it can only be answered 404.
pub fn gateway_route(data: &[u8]) {
    if let Ok(uri) = Uri::try_from(data) {
        check_route(uri.path());
    }
    if let Ok(path) = std::str::from_utf8(data) {
        check_route(path);
    }
}

fn check_route(path: &str) {
    let (prefix, name) = match route(path) {
        Route::Mcp(name) => ("/api/v1/mcp/", name),
        Route::Metadata(name) => ("/.well-known/oauth-protected-resource/api/v1/mcp/", name),
        Route::Web(WebRoute::Server(name)) => {
            // A server page: one segment after the prefix, nothing else.
            assert!(!name.is_empty() && !name.contains('/'), "{path:?}");
            assert_eq!(format!("/ui/servers/{name}"), path);
            return;
        }
        Route::Healthz | Route::Metrics | Route::Registry | Route::Web(_) | Route::NotFound => {
            return;
        }
    };
    assert!(!name.is_empty() && !name.contains('/'), "{path:?}");
    assert_eq!(format!("{prefix}{name}/mcp"), path);
    if valid_server_name(name) {
        assert!(!name.contains(['.', '%', '\\']), "{name:?}");
    }
}

/// The secret the seed tokens of the `auth_header` corpus are signed with.
pub const AUTH_SECRET: &[u8] = b"mcpd-fuzz-secret";

/// An authenticator with [`AUTH_SECRET`] as its one HS256 key.
pub fn hs256_authenticator() -> Authenticator {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "mcpd-fuzz-{}-{}.secret",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, AUTH_SECRET).expect("write the secret");
    let config = AuthConfig {
        issuer: None,
        authorization_servers: Vec::new(),
        keys: vec![KeySource::Hs256SecretFile(path.clone())],
        leeway: Duration::from_secs(30),
    };
    let loaded = Authenticator::load(&config);
    let _ = std::fs::remove_file(&path);
    loaded.expect("load the key")
}

/// `auth_header`: an `Authorization` header value through the bearer-token path (header
/// value, bearer token, JWT verification). A second look at the same token (served from the
/// verified-token cache when it passed) gives the same answer. Returns the outcome (the
/// token's expiry, or why it was refused), `None` when the value holds no bearer token.
pub fn auth_header(auth: &Authenticator, data: &[u8]) -> Option<Result<u64, TokenError>> {
    let value = HeaderValue::from_bytes(data).ok()?;
    let token = auth::bearer_token(&value)?;
    let first = auth.verify(token).map(|claims| claims.expires_at);
    let second = auth.verify(token).map(|claims| claims.expires_at);
    assert_eq!(first, second);
    Some(first)
}

/// `host_authority`: the `Host` grammar, on the input as text and as a header value. What
/// parses holds only characters of the authority grammar (never `@`, `/`, `\`, whitespace or
/// controls), has at most one port, and its host is the same host as itself. Returns whether
/// the input, as UTF-8 text, parsed.
pub fn host_authority(data: &[u8]) -> bool {
    let parsed = std::str::from_utf8(data).is_ok_and(check_authority);
    if let Ok(value) = HeaderValue::from_bytes(data)
        && let Ok(value) = value.to_str()
    {
        check_authority(value);
    }
    parsed
}

fn check_authority(value: &str) -> bool {
    let Ok(parsed) = authority::parse(value) else {
        return false;
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
    true
}

/// `query_token`: finding `access_token` in a query string, as text and as hyper hands it
/// over (`http::Uri`). The answer does not depend on ASCII case or on other parameters before
/// or after it (with `&` or `;`), and a literal `access_token=` parameter is always found.
/// Returns whether the input, as UTF-8 text, holds a token (`None`: not UTF-8).
pub fn query_token(data: &[u8]) -> Option<bool> {
    let found = std::str::from_utf8(data).ok().map(check_query);
    let mut target = b"/api/v1/mcp/x/mcp?".to_vec();
    target.extend_from_slice(data);
    if let Ok(uri) = Uri::try_from(target)
        && let Some(query) = uri.query()
    {
        check_query(query);
    }
    found
}

fn check_query(query: &str) -> bool {
    let found = has_access_token(query);
    let upper = query.to_ascii_uppercase();
    assert_eq!(found, has_access_token(&upper), "{query:?}");
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

/// Headers no server ever receives from a client.
const NEVER_FORWARDED: [&str; 10] = [
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
];

/// `header_filter`: the input as header lines `name: value` (the first byte picks a trusted
/// peer or not, and IPv4 or IPv6). After `filter_request` and `set_forwarding`, no header name
/// has `_`, none is `X-MCP-*`, `Authorization`, `Host` or hop-by-hop, and the forwarding
/// headers end with what the gateway set; from an untrusted peer they are exactly its own.
pub fn header_filter(data: &[u8]) {
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
        "192.0.2.7".parse().expect("an IPv4 address")
    } else {
        "2001:db8::7".parse().expect("an IPv6 address")
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
        assert!(!NEVER_FORWARDED.contains(&name), "{name}");
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

/// The environment `config_load` parses in.
pub fn config_env() -> Env {
    Env {
        vars: [("HOME".to_owned(), "/home/fuzz".to_owned())].into(),
        cwd: PathBuf::from("/fuzz"),
        exe_dir: Some(PathBuf::from("/opt/mcpd/bin")),
        uid: 1000,
    }
}

/// The binary resolver of `config_load`: names starting with `x` are not found.
pub fn config_resolver(binary: &str, _: &[PathBuf], _: &Env) -> Result<PathBuf, String> {
    if binary.starts_with('x') {
        Err("not found".to_owned())
    } else {
        Ok(Path::new("/opt/mcpd/bin").join(binary))
    }
}

/// `config_load`: the input read both as a daemon file and as a server file (against the
/// default daemon configuration). Either may fail, with located errors; neither may panic,
/// and every server that loads has a valid name.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = config_env();
    if let Err(errors) = config::parse_daemon_str(Path::new("/fuzz/mcpd.yaml"), text, &env) {
        assert!(!errors.is_empty());
        for error in &errors {
            assert!(!error.to_string().is_empty());
        }
    }
    let daemon = config::load_daemon_in(None, &env).expect("built-in defaults are valid");
    let file = Path::new("/fuzz/mcp/fuzz.yaml");
    match config::parse_server_file_str(file, text, &daemon, &env, &config_resolver) {
        Ok(servers) => {
            for server in &servers {
                assert!(valid_server_name(&server.name), "{}", server.name);
            }
        }
        Err(errors) => {
            for error in &errors {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}
