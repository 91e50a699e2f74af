//! `transport`, `sessions`, `max_sessions` and `idle_timeout`: the kinds they make and every
//! misplaced or bad value, located.

use std::time::Duration;

use super::{expect_errors, fixture, show};
use crate::config::*;

#[test]
fn transport_and_sessions_make_the_server_kind() {
    let f = fixture();
    f.write(
        "mcp/kinds.yaml",
        "
        mcp_servers:
          web:
            binary: mcp-echo
          plain:
            binary: mcp-echo
            transport: stdio
          each:
            binary: mcp-echo
            transport: stdio
            sessions: per-client
            max_sessions: 4
            idle_timeout: 90s
          defaults:
            binary: mcp-echo
            transport: stdio
            sessions: per-client
        ",
    );
    let config = f
        .load()
        .unwrap_or_else(|errors| panic!("{}", show(&errors)));
    let kind = |name: &str| config.services.servers[name].kind;
    assert_eq!(kind("web"), ServerKind::Http);
    assert_eq!(kind("plain"), ServerKind::Stdio(StdioSessions::Shared));
    assert_eq!(
        kind("each"),
        ServerKind::Stdio(StdioSessions::PerClient {
            max_sessions: 4,
            idle_timeout: Duration::from_secs(90)
        })
    );
    assert_eq!(
        kind("defaults"),
        ServerKind::Stdio(StdioSessions::PerClient {
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT
        })
    );
    assert!(kind("web").uses_port() && !kind("plain").uses_port());
    assert!(kind("each").same_runner(kind("defaults")));
    assert!(!kind("each").same_runner(kind("plain")));
}

#[test]
fn misplaced_and_bad_kind_keys_are_errors_at_their_lines() {
    let f = fixture();
    f.write(
        "mcp/bad.yaml",
        "
        mcp_servers:
          a:
            binary: mcp-echo
            sessions: per-client
            idle_timeout: 1m
          b:
            binary: mcp-echo
            transport: stdio
            port: 5005
            path: /x
            max_sessions: 3
          c:
            binary: mcp-echo
            transport: stdio
            sessions: per-client
            max_sessions: 0
            idle_timeout: 0s
          d:
            binary: mcp-echo
            transport: websocket
          e:
            binary: mcp-echo
            transport: stdio
            sessions: some
        ",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "mcp/bad.yaml",
        &[
            (
                4,
                "sessions of server \"a\" applies to transport: stdio only",
            ),
            (
                5,
                "idle_timeout of server \"a\" applies to transport: stdio only",
            ),
            (9, "server \"b\" has transport: stdio, which takes no port"),
            (10, "server \"b\" has transport: stdio, which takes no path"),
            (
                11,
                "max_sessions of server \"b\" applies to sessions: per-client only",
            ),
            (16, "max_sessions of server \"c\" is 0"),
            (17, "idle_timeout must be longer than zero in server \"c\""),
            (20, "invalid value for \"transport\" in server \"d\""),
            (24, "invalid value for \"sessions\" in server \"e\""),
        ],
    );
}
