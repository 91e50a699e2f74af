//! Fuzz target: finding `access_token` in a query string (`gateway::query::has_access_token`).
//!
//! No panic; the answer does not depend on ASCII case, on other parameters before or after
//! it (with `&` or `;`), and a literal `access_token=` parameter is always found. The query
//! is also taken the way hyper hands it over (`http::Uri`). Replayed by the gateway's unit
//! tests from daemon/tests-data/fuzz/query_token/.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpd::gateway::query::has_access_token;

fn check(query: &str) {
    let found = has_access_token(query);
    assert_eq!(found, has_access_token(&query.to_ascii_uppercase()), "{query:?}");
    assert_eq!(found, has_access_token(&format!("a=1&{query}")), "{query:?}");
    assert_eq!(found, has_access_token(&format!("{query};b=2")), "{query:?}");
    assert!(has_access_token(&format!("{query}&access_token=x")), "{query:?}");
    assert!(has_access_token(&format!("{query};ACCESS%5FTOKEN")), "{query:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        check(query);
    }
    let mut target = b"/api/v1/mcp/x/mcp?".to_vec();
    target.extend_from_slice(data);
    if let Ok(uri) = http::Uri::try_from(target)
        && let Some(query) = uri.query()
    {
        check(query);
    }
});
