// The body of the `config_load` fuzz target (fuzz/fuzz_targets/config_load.rs) and of its
// corpus replay in the unit tests (config/tests/fuzz.rs), included by both. The includer
// brings `Path`, `PathBuf`, `Env`, `parse_daemon_str`, `load_daemon_in`,
// `parse_server_file_str` and `valid_server_name` into scope.

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

/// Parses `data` as a daemon file and as a server file: either may fail, with located
/// errors; neither may panic.
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
