//! Fuzz target: the YAML loader, daemon file and server file, parsed and validated from text.
//!
//! The input is read both as a daemon file and as a server file (against the default daemon
//! configuration). Either may fail, with located errors; neither may panic. Replayed by the
//! daemon's unit tests from daemon/tests-data/fuzz/config_load/.

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use mcpd::config::{self, Env};

fn env() -> Env {
    Env {
        vars: [("HOME".to_owned(), "/home/fuzz".to_owned())].into(),
        cwd: PathBuf::from("/fuzz"),
        exe_dir: Some(PathBuf::from("/opt/mcpd/bin")),
        uid: 1000,
    }
}

fn resolver(binary: &str, _: &[PathBuf], _: &Env) -> Result<PathBuf, String> {
    if binary.starts_with('x') {
        Err("not found".to_owned())
    } else {
        Ok(Path::new("/opt/mcpd/bin").join(binary))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = env();
    let file = Path::new("/fuzz/mcpd.yaml");
    if let Err(errors) = config::parse_daemon_str(file, text, &env) {
        assert!(!errors.is_empty());
        for error in &errors {
            assert!(!error.to_string().is_empty());
        }
    }
    let daemon = config::load_daemon_in(None, &env).expect("built-in defaults are valid");
    let file = Path::new("/fuzz/mcp/fuzz.yaml");
    match config::parse_server_file_str(file, text, &daemon, &env, &resolver) {
        Ok(servers) => {
            for server in &servers {
                assert!(config::valid_server_name(&server.name), "{}", server.name);
            }
        }
        Err(errors) => {
            for error in &errors {
                assert!(!error.to_string().is_empty());
            }
        }
    }
});
