//! Fuzz target: the Server-Sent Events splitter the gateway filters and audits answers with.
//!
//! The input is an event stream (the first byte picks the size of the pieces it arrives
//! in). Whole or in pieces it splits into the same events, which with the rest make up the
//! input; rewriting an event's data keeps its other fields and gives one complete event.
//!
//! The checks are `mcpd::fuzzing::sse_split`; the gateway's unit tests replay the corpus in
//! daemon/tests-data/fuzz/sse_split/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::sse_split(data));
