//! `mcpd schema daemon|server`: the binary prints the committed schemas (the files the
//! package installs), and an unknown kind is a usage error.

use std::path::PathBuf;
use std::process::Command;

use mcpd_tests::bin;

#[test]
fn mcpd_schema_prints_the_installed_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../daemon/schema");
    for (kind, file) in [
        ("daemon", "mcpd.schema.json"),
        ("server", "server.schema.json"),
    ] {
        let output = Command::new(bin("mcpd"))
            .args(["schema", kind])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let committed = std::fs::read(dir.join(file)).unwrap();
        assert!(
            output.stdout == committed,
            "mcpd schema {kind} differs from daemon/schema/{file}"
        );
        let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
    let output = Command::new(bin("mcpd"))
        .args(["schema", "other"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
