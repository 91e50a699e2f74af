//! Fuzz target: the YAML loader, daemon file and server file, parsed and validated from text.
//!
//! The input is read both as a daemon file and as a server file (against the default daemon
//! configuration). Either may fail, with located errors; neither may panic.
//!
//! The checks are `mcpd::fuzzing::config_load`; the unit tests replay the corpus in
//! daemon/tests-data/fuzz/config_load/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::config_load(data));
