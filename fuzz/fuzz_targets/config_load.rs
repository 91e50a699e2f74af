//! Fuzz target: the YAML loader, daemon file and server file, parsed and validated from text.
//!
//! The input is read both as a daemon file and as a server file (against the default daemon
//! configuration). Either may fail, with located errors; neither may panic. The body is
//! shared with the daemon's unit tests, which replay daemon/tests-data/fuzz/config_load/.

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use mcpd::config::{
    Env, load_daemon_in, parse_daemon_str, parse_server_file_str, valid_server_name,
};

include!("../../daemon/src/config/tests/fuzz_check.rs");

fuzz_target!(|data: &[u8]| check(data));
