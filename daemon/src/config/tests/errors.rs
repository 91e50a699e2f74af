//! Each error class: its message, file, line and column, and that every error is reported.

use std::os::unix::fs::PermissionsExt;

use super::{any_binary, expect_error, expect_errors, fixture, show};
use crate::config::*;

#[test]
fn yaml_syntax_error_names_the_line() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            args: [unclosed
        ",
    );
    let errors = f.errors();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert!(
        errors[0].message.starts_with("invalid YAML"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].line.is_some_and(|line| line >= 4),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_key_lists_the_valid_keys() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            enbled: false
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "unknown key \"enbled\" in server \"echo\"",
    );
    assert_eq!(error.column, Some(5));
    let hint = error.hint.as_deref().unwrap();
    assert!(
        hint.starts_with("valid keys: binary, package, port"),
        "{hint}"
    );
    assert!(
        hint.contains("enabled") && hint.contains("restart"),
        "{hint}"
    );
    assert_eq!(
        error.to_string().lines().next().unwrap(),
        format!(
            "{}:4:5: unknown key \"enbled\" in server \"echo\"",
            f.path("mcp/echo.yaml").display()
        )
    );
}

#[test]
fn unknown_keys_in_nested_blocks_and_the_daemon_file_are_found() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          listen: 127.0.0.1:8080
          max_bdy: 1MiB
        servics_dir: x
        ",
    );
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            restart: {policy: always, bakoff: 2s}
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_errors(
        &errors,
        "mcpd.yaml",
        &[
            (4, "unknown key \"max_bdy\" in gateway"),
            (5, "unknown key \"servics_dir\" at the top level"),
        ],
    );
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    std::fs::write(f.path("mcpd.yaml"), "services_dir: mcp\n").unwrap();
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "unknown key \"bakoff\" in server \"echo\" restart",
    );
    assert_eq!(error.column, Some(31));
}

#[test]
fn wrong_types_name_the_key_and_what_to_write() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: mcp-echo
            port: fifty
            enabled: maybe
            args: --verbose
        ",
    );
    let errors = f.errors();
    let port = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "invalid value for \"port\" in server \"echo\"",
    );
    assert!(
        port.message.contains("invalid type: string \"fifty\""),
        "{port}"
    );
    assert_eq!(port.column, Some(11));
    expect_errors(
        &errors,
        "mcp/echo.yaml",
        &[
            (5, "invalid value for \"enabled\""),
            (6, "invalid value for \"args\""),
        ],
    );
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn bad_durations_and_sizes_are_all_reported() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          max_body: 4 parsecs
        defaults:
          restart:
            backoff: 1x
          stop_timeout: soon
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    let size = expect_error(&errors, "mcpd.yaml", 3, "invalid size \"4 parsecs\"");
    assert!(size.hint.as_deref().unwrap().contains("4MiB"));
    let duration = expect_error(&errors, "mcpd.yaml", 6, "invalid duration \"1x\"");
    assert!(
        duration.message.contains("\"backoff\" in defaults.restart"),
        "{duration}"
    );
    expect_error(&errors, "mcpd.yaml", 7, "invalid duration \"soon\"");
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn invalid_server_names_are_refused() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          ok-name_1:
            binary: a
          Echo:
            binary: b
          -dash:
            binary: c
        ",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "mcp/echo.yaml",
        &[
            (4, "invalid server name \"Echo\""),
            (6, "invalid server name \"-dash\""),
        ],
    );
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    assert!(valid_server_name(&"a".repeat(63)));
    assert!(!valid_server_name(&"a".repeat(64)));
    assert!(!valid_server_name(""));
    assert!(!valid_server_name("_x"));
    assert!(valid_server_name("0x"));
}

#[test]
fn a_name_defined_twice_in_one_file_is_an_error() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
          echo:
            binary: b
        ",
    );
    let errors = f.errors();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(
        errors[0].message,
        "key \"echo\" appears twice in the mapping that starts here"
    );
    assert_eq!(
        (errors[0].line, errors[0].column),
        (Some(2), Some(3)),
        "{}",
        errors[0]
    );
}

#[test]
fn a_name_defined_in_two_files_fails_the_later_file() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers: {echo: {binary: a}}");
    f.write(
        "mcp/b.yaml",
        "
        mcp_servers:
          other:
            binary: b
          echo:
            binary: b
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/b.yaml",
        4,
        "server \"echo\" is already defined in",
    );
    assert!(error.message.ends_with("a.yaml"), "{error}");
    assert_eq!(errors.len(), 1);

    let daemon = f.daemon();
    let services = load_services_in(&daemon, None, &f.env, &any_binary);
    let names: Vec<_> = services.servers.keys().cloned().collect();
    assert_eq!(names, ["echo"], "b.yaml failed as a whole");
    assert_eq!(services.servers["echo"].binary_name, "a");
}

#[test]
fn explicit_ports_must_lie_in_the_range() {
    let f = fixture();
    f.write("mcpd.yaml", "services_dir: mcp\nport_range: 7000-7099\n");
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
            port: 7100
          fine:
            binary: a
            port: 7099
        ",
    );
    let errors = f.errors();
    let error = expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "port 7100 of server \"echo\" is outside port_range 7000-7099",
    );
    assert_eq!(error.column, Some(11));
    assert_eq!(errors.len(), 1);
}

#[test]
fn two_servers_on_one_port_are_refused_within_and_across_files() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers: {one: {binary: a, port: 5001}}");
    f.write(
        "mcp/b.yaml",
        "
        mcp_servers:
          two:
            binary: a
            port: 5002
          three:
            binary: a
            port: 5002
          four: {binary: a, port: 5001}
        ",
    );
    let errors = f.errors();
    let within = expect_error(
        &errors,
        "mcp/b.yaml",
        7,
        "port 5002 of server \"three\" is already used by server \"two\"",
    );
    assert_eq!(within.column, Some(11));
    let across = expect_error(
        &errors,
        "mcp/b.yaml",
        8,
        "port 5001 of server \"four\" is already used by server \"one\"",
    );
    assert_eq!(across.column, Some(27));
    assert_eq!(errors.len(), 2, "{}", show(&errors));
}

#[test]
fn a_binary_that_cannot_be_found_is_an_error_with_a_build_hint() {
    let f = fixture();
    let bin = f.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("present");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.join("not-executable"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        bin.join("not-executable"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    f.write("mcpd.yaml", "services_dir: mcp\nbin_dirs: [bin]\n");
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          found:
            binary: present
          missing:
            binary: mcp-nowhere
            package: mcp-nowhere
          absolute:
            binary: /nonexistent/mcp-echo
          plain:
            binary: ../bin/not-executable
        ",
    );
    let errors = load_in(Some(&f.daemon_file()), &f.env, &resolve_binary).unwrap_err();
    let missing = expect_error(
        &errors,
        "mcp/echo.yaml",
        5,
        "binary \"mcp-nowhere\" not found in bin_dirs",
    );
    assert_eq!(missing.column, Some(13));
    assert!(
        missing
            .hint
            .as_deref()
            .unwrap()
            .contains("cargo build --release -p mcp-nowhere")
    );
    expect_error(&errors, "mcp/echo.yaml", 8, "/nonexistent/mcp-echo");
    expect_error(
        &errors,
        "mcp/echo.yaml",
        10,
        "not-executable is not executable",
    );
    assert_eq!(errors.len(), 3, "{}", show(&errors));

    std::fs::write(
        f.path("mcp/echo.yaml"),
        "mcp_servers: {found: {binary: present}}\n",
    )
    .unwrap();
    let config = load_in(Some(&f.daemon_file()), &f.env, &resolve_binary).unwrap();
    assert_eq!(config.services.servers["found"].binary, exe);
}

#[test]
fn a_server_that_is_not_a_mapping_gets_one_error() {
    let f = fixture();
    f.write("mcp/echo.yaml", "mcp_servers:\n  echo: mcp-echo\n");
    let errors = f.errors();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].line, Some(2));
    assert!(
        errors[0]
            .message
            .contains("expected a mapping with keys binary"),
        "{}",
        errors[0]
    );
}

#[test]
fn empty_files_and_files_without_servers_are_errors() {
    let f = fixture();
    f.write("mcp/empty.yaml", "# nothing yet\n");
    f.write("mcp/other.yaml", "servers:\n  echo: {binary: a}\n");
    f.write("mcp/none.yaml", "mcp_servers:\n");
    let errors = f.errors();
    let empty = errors
        .iter()
        .find(|e| e.file.ends_with("empty.yaml"))
        .expect("empty.yaml error");
    assert_eq!(empty.message, "the file is empty");
    assert_eq!(empty.line, None);
    expect_error(
        &errors,
        "mcp/other.yaml",
        1,
        "unknown key \"servers\" at the top level",
    );
    let missing = errors
        .iter()
        .find(|e| e.message.contains("no `mcp_servers` key"))
        .expect("missing key");
    assert!(missing.file.ends_with("other.yaml"));
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn port_ranges_must_be_ordered_and_inside_the_tcp_range() {
    for (range, message) in [
        ("5999-5000", "start is above end"),
        ("0-100", "0 is outside 1-65535"),
        ("5000-65536", "65536 is outside 1-65535"),
        ("5000", "expected START-END"),
    ] {
        let f = fixture();
        f.write(
            "mcpd.yaml",
            &format!("services_dir: mcp\n\nport_range: {range}\n"),
        );
        let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
        let error = expect_error(&errors, "mcpd.yaml", 3, message);
        assert!(
            error.message.contains("invalid value for \"port_range\""),
            "{error}"
        );
    }
}

#[test]
fn semantic_rules_of_restart_health_and_paths() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "
        mcp_servers:
          echo:
            binary: a
            path: mcp
            restart:
              backoff: 10s
              max_backoff: 5s
              burst: 0
            health:
              timeout: 0s
              failures: 0
            stop_timeout: 0ms
        ",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "mcp/echo.yaml",
        &[
            (4, "path \"mcp\" of server \"echo\" does not start with /"),
            (7, "max_backoff (5s) is below backoff (10s)"),
            (
                8,
                "burst must be at least 1, not 0 in server \"echo\" restart",
            ),
            (
                10,
                "timeout must be longer than zero in server \"echo\" health",
            ),
            (11, "failures must be at least 1"),
            (
                12,
                "stop_timeout must be longer than zero in server \"echo\"",
            ),
        ],
    );
    assert_eq!(errors.len(), 6, "{}", show(&errors));
}

#[test]
fn a_backoff_above_the_default_max_backoff_is_caught() {
    let f = fixture();
    f.write(
        "mcp/echo.yaml",
        "mcp_servers:\n  echo:\n    binary: a\n    restart: {backoff: 2m}\n",
    );
    let errors = f.errors();
    expect_error(
        &errors,
        "mcp/echo.yaml",
        4,
        "max_backoff (1m) is below backoff (2m)",
    );
}

#[test]
fn daemon_scalars_are_checked() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          listen: localhost:8080
          public_url: ftp://example.com
        control:
          mode: \"0999\"
        logs:
          keep: 0
          rotation: weekly
        auth:
          keys:
            - {public_key_file: k.pem, algorithm: HS256}
            - {public_key_file: k.pem}
            - {hs256_secret_file: s, jwks_file: j}
            - {jwks_file: j, algorithm: RS256}
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_errors(
        &errors,
        "mcpd.yaml",
        &[
            (3, "invalid listen address \"localhost:8080\""),
            (4, "the scheme must be http or https"),
            (6, "invalid mode \"0999\""),
            (8, "keep must be at least 1"),
            (9, "unknown variant `weekly`"),
            (13, "public_key_file without algorithm in auth.keys[1]"),
            (14, "a key with more than one file in auth.keys[2]"),
            (15, "algorithm only applies to public_key_file"),
        ],
    );
    let hs = expect_error(&errors, "mcpd.yaml", 12, "invalid algorithm \"HS256\"");
    assert!(hs.hint.as_deref().unwrap().contains("hs256_secret_file"));
    assert_eq!(errors.len(), 9, "{}", show(&errors));
}

#[test]
fn logs_audit_is_a_located_boolean() {
    let f = fixture();
    f.write("mcpd.yaml", "services_dir: mcp\nlogs:\n  audit: false\n");
    assert!(!f.daemon().logs.audit);
    f.write(
        "mcpd.yaml",
        "services_dir: mcp\nlogs:\n  audit: sometimes\n",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert!(errors[0].file.ends_with("mcpd.yaml"), "{}", errors[0]);
    assert_eq!(errors[0].line, Some(3), "{}", errors[0]);
    assert!(errors[0].column.is_some(), "{}", errors[0]);
}

#[test]
fn a_missing_services_dir_is_an_error() {
    let f = fixture();
    f.write("mcpd.yaml", "services_dir: nowhere\n");
    let errors = f.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .starts_with("cannot read the services directory"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].file, f.path("nowhere"));
}

#[test]
fn errors_of_many_files_and_servers_are_reported_together() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "mcp_servers:\n  one: {binary: a, port: 1}\n  two: {binary: a, prt: 5002}\n",
    );
    f.write(
        "mcp/b.yaml",
        "mcp_servers:\n  three: {}\n  four: {binary: a, health: {interval: never}}\n",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "mcp/a.yaml",
        &[(2, "port 1 of server \"one\""), (3, "unknown key \"prt\"")],
    );
    expect_errors(
        &errors,
        "mcp/b.yaml",
        &[
            (2, "server \"three\" has no binary"),
            (3, "invalid duration \"never\""),
        ],
    );
    assert_eq!(errors.len(), 4, "{}", show(&errors));
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"fd00::/8\", \"::1\"]
        ",
    );
    let daemon = load_daemon_in(Some(&f.daemon_file()), &f.env).expect("valid");
    let gateway = &daemon.gateway;
    for trusted in ["10.1.2.3", "192.0.2.7", "fd12::1", "::1", "::ffff:10.9.9.9"] {
        assert!(gateway.trusts(trusted.parse().unwrap()), "{trusted}");
    }
    for untrusted in ["11.0.0.1", "192.0.2.8", "fe80::1", "127.0.0.1", "::2"] {
        assert!(!gateway.trusts(untrusted.parse().unwrap()), "{untrusted}");
    }
    for bad in [
        "10.0.0.1/8",
        "10.0.0.0/33",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "localhost",
        "10.0.0.0/8/8",
        "::/129",
        "",
    ] {
        f.write(
            "mcpd.yaml",
            &format!("services_dir: mcp\ngateway:\n  trusted_proxies: [\"{bad}\"]\n"),
        );
        let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
        assert!(
            errors[0].line == Some(3) && errors[0].message.contains(bad),
            "{bad:?}: {errors:?}"
        );
    }
    let none = IpNet::parse("0.0.0.0/0").unwrap();
    assert!(none.contains("203.0.113.1".parse().unwrap()));
    assert!(!none.contains("2001:db8::1".parse().unwrap()));
}

#[test]
fn per_tool_rules_keep_their_order_and_bad_ones_point_at_the_line() {
    let f = fixture();
    f.write(
        "mcp/db.yaml",
        r#"
        mcp_servers:
          db:
            binary: mcp-echo
            oauth:
              required: true
              scopes: [user, tools:read]
              tools:
                "delete_*": [admin]
                "search": [tools:read, user]
                "*": [user]
            audit: {arguments: true}
        "#,
    );
    let servers = f.servers();
    let db = &servers["db"];
    let patterns: Vec<&str> = db.oauth.tools.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["delete_*", "search", "*"]);
    assert_eq!(db.oauth.tools[1].scopes, ["tools:read", "user"]);
    assert!(db.audit_arguments);

    for (rules, message) in [
        (r#""del ete": [admin]"#, "tool pattern \"del ete\""),
        (r#""a[b]": [admin]"#, "tool pattern \"a[b]\""),
        (r#""x": []"#, "lists no scopes"),
        (r#""x": ["bad scope"]"#, "is not a valid OAuth scope"),
        (r#""x": admin"#, "invalid value for \"tools\""),
    ] {
        f.write(
            "mcp/db.yaml",
            &format!(
                "
        mcp_servers:
          db:
            binary: mcp-echo
            oauth:
              tools:
                {rules}
        "
            ),
        );
        let errors = f.errors();
        assert_eq!(errors.len(), 1, "{rules}: {}", show(&errors));
        assert!(
            errors[0].message.contains(message),
            "{rules}: {}",
            errors[0]
        );
        assert!(
            errors[0].line.is_some_and(|line| (5..=7).contains(&line)),
            "{rules}: {}",
            errors[0]
        );
    }
}

#[test]
fn scopes_that_would_break_a_challenge_and_the_audit_name_are_refused() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        r#"
        mcp_servers:
          a:
            binary: mcp-echo
            oauth: {required: true, scopes: ["x\" y"]}
          audit:
            binary: mcp-echo
        "#,
    );
    let errors = f.errors();
    assert_eq!(errors.len(), 2, "{}", show(&errors));
    assert!(
        show(&errors).contains("is not a valid OAuth scope"),
        "{}",
        show(&errors)
    );
    assert!(
        show(&errors).contains("\"audit\" is reserved"),
        "{}",
        show(&errors)
    );
}
