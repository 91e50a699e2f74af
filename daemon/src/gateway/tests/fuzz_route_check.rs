// The body of the `gateway_route` fuzz target (fuzz/fuzz_targets/gateway_route.rs) and of
// its corpus replay in the unit tests (gateway/tests/fuzz.rs), included by both. The includer
// brings `route`, `Route` and `valid_server_name` into scope.

/// Routes `path`: a route that names a server names exactly one undecoded path segment
/// between the fixed prefix and `/mcp`, and a name that could reach another path never
/// passes the server-name rule.
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
