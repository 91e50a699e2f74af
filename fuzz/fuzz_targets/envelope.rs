//! Fuzz target: the JSON-RPC envelope reader and the 2026-07-28 header check (`envelope`).
//!
//! The input is a POST body, optionally preceded by header lines `name: value` and a NUL
//! byte. Nothing panics; a body that is accepted reads the same as a `serde_json::Value`
//! reads it (method, tool name, uri, id, and so the authorization decision), every accepted
//! `tools/call` names a tool, a second `method` or `params.name` key always refuses the body,
//! and the headers pass exactly when they agree with the body.
//!
//! The checks are `mcpd::fuzzing::envelope`; the gateway's unit tests replay the corpus in
//! daemon/tests-data/fuzz/envelope/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcpd::fuzzing::envelope(data);
});
