//! Fuzz target: the gateway's routing of request paths.
//!
//! The input is parsed as a request target the way hyper does (`http::Uri`), and its path
//! routed. A route that names a server must name exactly one undecoded path segment between
//! the fixed prefix and `/mcp`; a name that could reach another path (`/`, `..` after
//! decoding) never passes the server-name rule, so it can only be answered 404. Replayed by
//! the gateway's unit tests from daemon/tests-data/fuzz/gateway_route/.
//!
//! The checks are `mcpd::fuzzing::gateway_route`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/gateway_route/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::gateway_route(data));
