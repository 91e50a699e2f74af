//! Fuzz target: an `Authorization` header value through the gateway's bearer-token path:
//! header value -> bearer token -> JWT verification against an HS256 key set.
//!
//! Refusing is fine; panicking is not, and a second look at the same token (served from the
//! verified-token cache when it passed) must give the same answer.
//!
//! The checks are `mcpd::fuzzing::auth_header`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/auth_header/ through the same function.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpd::gateway::Authenticator;

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(mcpd::fuzzing::hs256_authenticator)
}

fuzz_target!(|data: &[u8]| {
    mcpd::fuzzing::auth_header(authenticator(), data);
});
