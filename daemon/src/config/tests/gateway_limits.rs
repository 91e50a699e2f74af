//! `gateway.*` timeouts and caps: parsed, defaulted, and zero refused with the key's line.

use std::time::Duration;

use super::{expect_error, fixture};
use crate::config::*;

#[test]
fn gateway_limits_are_parsed_and_default_when_absent() {
    let f = fixture();
    let defaults = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap();
    assert_eq!(defaults.gateway.limits, GatewayLimits::default());
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          header_timeout: 2s
          idle_timeout: 30s
          body_idle_timeout: 1m
          max_connections: 500
          max_connections_per_peer: 50
          max_streams: 16
          max_upstream: 400
          max_upstream_per_server: 40
          upstream_wait: 250ms
        ",
    );
    let daemon = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap();
    assert_eq!(
        daemon.gateway.limits,
        GatewayLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: Some(500),
            max_connections_per_peer: Some(50),
            max_streams: 16,
            max_upstream: Some(400),
            max_upstream_per_server: Some(40),
            upstream_wait: Duration::from_millis(250),
        }
    );
}

#[test]
fn zero_timeouts_and_caps_are_refused() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          header_timeout: 0s
          max_connections: 0
        ",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_error(&errors, "mcpd.yaml", 3, "must be longer than zero");
    f.write(
        "mcpd.yaml",
        "services_dir: mcp\ngateway: {max_streams: 0}\n",
    );
    let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
    expect_error(&errors, "mcpd.yaml", 2, "expected a nonzero");
}

#[test]
fn allowed_hosts_follow_the_host_grammar() {
    let f = fixture();
    f.write(
        "mcpd.yaml",
        "
        services_dir: mcp
        gateway:
          allowed_hosts: [mcp.example.com, \"10.0.0.5:8080\", \"[::1]:9000\"]
        ",
    );
    let daemon = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap();
    assert_eq!(
        daemon.gateway.allowed_hosts,
        ["mcp.example.com", "10.0.0.5:8080", "[::1]:9000"]
    );
    // Entries that could never match a request's Host: refused with their line, not ignored.
    for entry in [
        "http://x",
        "localhost:1@evil.com",
        "a b",
        "host:",
        "host:99999",
    ] {
        f.write(
            "mcpd.yaml",
            &format!(
                "
        services_dir: mcp
        gateway:
          allowed_hosts: [{entry:?}]
        "
            ),
        );
        let errors = load_daemon_in(Some(&f.daemon_file()), &f.env).unwrap_err();
        expect_error(&errors, "mcpd.yaml", 3, "invalid allowed_hosts entry");
    }
}
