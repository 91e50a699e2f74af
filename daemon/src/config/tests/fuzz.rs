//! Replays the committed corpus of the `config_load` fuzz target (seeds and every input that
//! once crashed it, in daemon/tests-data/fuzz/config_load/) through the same functions and
//! checks, so CI guards against regressions without a nightly toolchain.

use std::path::{Path, PathBuf};

use super::super::*;

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

/// The same body as fuzz/fuzz_targets/config_load.rs.
fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = env();
    if let Err(errors) = parse_daemon_str(Path::new("/fuzz/mcpd.yaml"), text, &env) {
        assert!(!errors.is_empty());
        for error in &errors {
            assert!(!error.to_string().is_empty());
        }
    }
    let daemon = load_daemon_in(None, &env).expect("built-in defaults are valid");
    let file = Path::new("/fuzz/mcp/fuzz.yaml");
    match parse_server_file_str(file, text, &daemon, &env, &resolver) {
        Ok(servers) => {
            for server in &servers {
                assert!(valid_server_name(&server.name), "{}", server.name);
            }
        }
        Err(errors) => {
            for error in &errors {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

#[test]
fn replays_the_fuzz_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-data/fuzz/config_load");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        check(&std::fs::read(&path).expect("read"));
        count += 1;
    }
    assert!(count >= 5, "only {count} inputs in {}", dir.display());
}

#[test]
fn the_seeds_parse_as_intended() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-data/fuzz/config_load");
    let text = std::fs::read_to_string(dir.join("seed-full-daemon.yaml")).expect("read");
    let daemon = parse_daemon_str(Path::new("/fuzz/mcpd.yaml"), &text, &env()).expect("valid");
    assert_eq!(daemon.services_dir, PathBuf::from("/fuzz/mcp"));
    let text = std::fs::read_to_string(dir.join("seed-full-server.yaml")).expect("read");
    let errors = parse_server_file_str(
        Path::new("/fuzz/mcp/fuzz.yaml"),
        &text,
        &daemon,
        &env(),
        &resolver,
    )
    .expect_err("`enbled` and the missing binary are errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
}
