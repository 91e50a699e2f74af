//! Fuzz target: the gateway's `Host` grammar (`gateway::authority::parse`).
//!
//! Refusing is fine; panicking is not. What parses holds only characters of the authority
//! grammar (never `@`, `/`, `\`, whitespace or controls), has at most one port, and its host
//! is the same host as itself. Replayed by the gateway's unit tests from
//! daemon/tests-data/fuzz/host_authority/.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpd::gateway::authority::{self, Host};

fn check(value: &str) {
    let Ok(parsed) = authority::parse(value) else {
        return;
    };
    assert!(
        value.bytes().all(|b| b.is_ascii_alphanumeric()
            || b"-._~%!$&'()*+,;=:[]".contains(&b)),
        "{value:?}"
    );
    assert!(parsed.host.same(&parsed.host), "{value:?}");
    match parsed.host {
        Host::Name(name) => {
            assert!(value.starts_with(name) && !name.is_empty(), "{value:?}");
            assert!(!name.contains([':', '[', ']']), "{value:?}");
        }
        Host::Ip(_) | Host::Future(_) => {}
    }
    let colons_outside = value.rsplit(']').next().unwrap_or(value).matches(':').count();
    assert!(colons_outside <= 1, "{value:?}");
    assert_eq!(parsed.port.is_some(), colons_outside == 1, "{value:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = std::str::from_utf8(data) {
        check(value);
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data)
        && let Ok(value) = value.to_str()
    {
        check(value);
    }
});
