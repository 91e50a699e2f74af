//! Virtual server entries: their keys, members resolved across files, and located errors.

use super::*;

fn located(errors: &[ConfigError], needle: &str) -> (usize, usize) {
    let error = errors
        .iter()
        .find(|e| e.message.contains(needle))
        .unwrap_or_else(|| panic!("no error with {needle:?} in {errors:#?}"));
    (error.line.unwrap(), error.column.unwrap())
}

#[test]
fn members_resolve_from_names_globs_and_exclude() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "
        mcp_servers:
          echo: {binary: mcp-echo}
          db-one: {binary: db}
          db-two: {binary: db}
          off: {binary: x, enabled: false}
        ",
    );
    f.write(
        "mcp/v.yaml",
        "
        mcp_servers:
          all:
            aggregate: [\"*\"]
            exclude: [db-two]
            tools: [\"echo_*\", \"!*_delete*\"]
            description: every tool
            oauth: {required: true, scopes: [user], tools: {\"echo_add\": [admin]}}
          dbs:
            aggregate: [\"db-*\", off]
            separator: \"__\"
          one:
            aggregate: [echo]
            prefix: never
        ",
    );
    let config = f.load().unwrap();
    let services = &config.services;
    assert_eq!(services.servers.len(), 4, "virtual servers are not servers");
    let all = &services.virtuals["all"];
    assert_eq!(all.members, ["db-one", "echo"]);
    assert!(all.exposes("echo_echo") && !all.exposes("echo_x_delete") && !all.exposes("db-one_q"));
    assert!(all.oauth.required);
    assert_eq!(all.oauth.tools.len(), 1);
    assert_eq!(all.endpoint, "http://localhost:8080/api/v1/mcp/all/mcp");
    let dbs = &services.virtuals["dbs"];
    assert_eq!(dbs.members, ["db-one", "db-two", "off"]);
    assert_eq!(dbs.separator, "__");
    assert_eq!(services.virtuals["one"].prefix, PrefixMode::Never);
}

#[test]
fn bad_entries_are_errors_at_their_position() {
    let f = fixture();
    f.write(
        "mcp/a.yaml",
        "mcp_servers:\n  echo: {binary: mcp-echo}\n  echo2: {binary: mcp-echo}\n",
    );
    f.write(
        "mcp/v.yaml",
        "
        mcp_servers:
          v1:
            aggregate: [echo, nope]
          v2:
            aggregate: [v1]
          v4:
            aggregate: [\"*\"]
            prefix: never
        ",
    );
    f.write(
        "mcp/x.yaml",
        "
        mcp_servers:
          v3:
            binary: mcp-echo
            aggregate: [echo]
          v5:
            aggregate: []
            separator: \"a.b\"
          v6:
            aggregate: [echo]
            port: 5000
        ",
    );
    f.write(
        "mcp/w.yaml",
        "mcp_servers:\n  plain:\n    binary: x\n    separator: _\n",
    );
    let errors = f.load().unwrap_err();
    assert_eq!(located(&errors, "unknown member server \"nope\""), (3, 23));
    assert_eq!(
        located(&errors, "\"v1\" is itself a virtual server"),
        (5, 17)
    );
    assert_eq!(
        located(&errors, "prefix: never needs exactly one member"),
        (8, 13)
    );
    assert_eq!(
        located(&errors, "`binary` cannot go with `aggregate`"),
        (3, 5)
    );
    assert_eq!(located(&errors, "aggregates no server"), (6, 16));
    assert_eq!(located(&errors, "invalid separator"), (7, 16));
    assert_eq!(
        located(&errors, "`port` cannot go with `aggregate`"),
        (10, 5)
    );
    assert_eq!(
        located(&errors, "`separator` is a key of virtual servers only"),
        (4, 5)
    );
}

#[test]
fn a_virtual_server_refuses_every_key_of_a_process() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers:\n  echo: {binary: mcp-echo}\n");
    f.write(
        "mcp/v.yaml",
        "mcp_servers:
  all:
    aggregate: [echo]
    limits: {memory: 64MiB}
    transport: stdio
    user: nobody
    sandbox: {private_tmp: true}
    health: {interval: 5s}
",
    );
    let errors = f.load().unwrap_err();
    for (key, line) in [
        ("limits", 4),
        ("transport", 5),
        ("user", 6),
        ("sandbox", 7),
        ("health", 8),
    ] {
        assert_eq!(
            located(&errors, &format!("`{key}` cannot go with `aggregate`")),
            (line, 5),
            "{errors:?}"
        );
    }
}

#[test]
fn a_virtual_server_and_a_server_may_not_share_a_name() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers:\n  echo: {binary: mcp-echo}\n");
    f.write("mcp/b.yaml", "mcp_servers:\n  echo: {aggregate: [\"*\"]}\n");
    let errors = f.load().unwrap_err();
    assert!(errors[0].message.contains("already defined"), "{errors:?}");
}

#[test]
fn max_calls_per_caller_is_bounded_and_located() {
    let f = fixture();
    f.write("mcp/a.yaml", "mcp_servers:\n  echo: {binary: mcp-echo}\n");
    f.write(
        "mcp/v.yaml",
        "mcp_servers:\n  v1:\n    aggregate: [echo]\n    max_calls_per_caller: 0\n  v2:\n    aggregate: [echo]\n    max_calls_per_caller: 1025\n",
    );
    let errors = f.load().unwrap_err();
    assert_eq!(
        located(&errors, "\"v1\": max_calls_per_caller 0 is out of range"),
        (4, 27)
    );
    assert_eq!(
        located(&errors, "\"v2\": max_calls_per_caller 1025 is out of range"),
        (7, 27)
    );
    f.write(
        "mcp/v.yaml",
        "mcp_servers:\n  v1:\n    aggregate: [echo]\n    max_calls_per_caller: 1024\n  v2:\n    aggregate: [echo]\n",
    );
    let services = f.load().unwrap();
    assert_eq!(services.services.virtuals["v1"].max_calls_per_caller, 1024);
    assert_eq!(services.services.virtuals["v2"].max_calls_per_caller, 16);
}
