//! Fuzz target: the gateway's routing of request paths.
//!
//! The input is parsed as a request target the way hyper does (`http::Uri`), and its path
//! routed. A route that names a server must name exactly one undecoded path segment between
//! the fixed prefix and `/mcp`; a name that could reach another path (`/`, `..` after
//! decoding) never passes the server-name rule, so it can only be answered 404. The check is
//! shared with the gateway's unit tests, which replay daemon/tests-data/fuzz/gateway_route/.

#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use mcpd::config::valid_server_name;
use mcpd::gateway::{Route, route};

include!("../../daemon/src/gateway/tests/fuzz_route_check.rs");

fuzz_target!(|data: &[u8]| {
    if let Ok(uri) = Uri::try_from(data) {
        check_route(uri.path());
    }
    if let Ok(path) = std::str::from_utf8(data) {
        check_route(path);
    }
});
