//! Replays the committed corpus of the `config_load` fuzz target (seeds and every input that
//! once crashed it, in daemon/tests-data/fuzz/config_load/) through the same functions and
//! checks, so CI guards against regressions without a nightly toolchain.

use std::path::{Path, PathBuf};

use super::super::*;

include!("fuzz_check.rs");

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
