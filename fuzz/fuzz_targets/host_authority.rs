//! Fuzz target: the gateway's `Host` grammar (`gateway::authority::parse`).
//!
//! Refusing is fine; panicking is not. What parses holds only characters of the authority
//! grammar (never `@`, `/`, `\`, whitespace or controls), has at most one port, and its host
//! is the same host as itself.
//!
//! The checks are `mcpd::fuzzing::host_authority`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/host_authority/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcpd::fuzzing::host_authority(data);
});
