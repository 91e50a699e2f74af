//! Fuzz target: the gateway's routing of request paths.
//!
//! The input is parsed as a request target the way hyper does (`http::Uri`), and its path
//! routed. A route that names a server must name exactly one undecoded path segment between
//! the fixed prefix and `/mcp`; a name that could reach another path (`/`, `..` after
//! decoding) never passes the server-name rule, so it can only be answered 404. Replayed by
//! the gateway's unit tests from daemon/tests-data/fuzz/gateway_route/.

#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use mcpd::config::valid_server_name;
use mcpd::gateway::{Route, route};

fn check(path: &str) {
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

fuzz_target!(|data: &[u8]| {
    if let Ok(uri) = Uri::try_from(data) {
        check(uri.path());
    }
    if let Ok(path) = std::str::from_utf8(data) {
        check(path);
    }
});
