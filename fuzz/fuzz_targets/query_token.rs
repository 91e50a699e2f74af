//! Fuzz target: finding `access_token` in a query string (`gateway::query::has_access_token`).
//!
//! No panic; the answer does not depend on ASCII case, on other parameters before or after
//! it (with `&` or `;`), and a literal `access_token=` parameter is always found. The query
//! is also taken the way hyper hands it over (`http::Uri`).
//!
//! The checks are `mcpd::fuzzing::query_token`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/query_token/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcpd::fuzzing::query_token(data);
});
