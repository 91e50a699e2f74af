//! Fuzz target: the request headers the gateway forwards (`gateway::headers`).
//!
//! The input is read as header lines `name: value` (the first byte picks a trusted peer or
//! not). After `filter_request` and `set_forwarding`, no header name has `_`, none is
//! `X-MCP-*`, `Authorization`, `Host` or hop-by-hop, and the forwarding headers end with
//! what the gateway set; from an untrusted peer they are exactly the gateway's. Replayed by
//! the gateway's unit tests from daemon/tests-data/fuzz/header_filter/.
//!
//! The checks are `mcpd::fuzzing::header_filter`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/header_filter/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::header_filter(data));
