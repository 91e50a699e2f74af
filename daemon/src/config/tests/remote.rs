//! `url`, `tls` and `upstream_auth`: the remote servers they make and every bad value,
//! located.

use super::{expect_errors, fixture, show};
use crate::config::*;

/// A self-signed CA certificate, PEM.
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn url_tls_and_upstream_auth_make_a_remote_server() {
    let f = fixture();
    std::fs::write(f.path("mcp/ca.pem"), ca_pem()).unwrap();
    std::fs::write(f.path("mcp/remote.token"), "t0ken\n").unwrap();
    std::fs::write(f.path("mcp/key"), "k3y").unwrap();
    f.write(
        "mcp/remote.yaml",
        "
        mcp_servers:
          remote:
            url: https://mcp.example.com:8443/mcp
            tls: {ca_file: ca.pem}
            upstream_auth: {bearer_file: remote.token}
          keyed:
            url: http://127.0.0.1:9/api/v1/mcp/echo/mcp
            upstream_auth: {header: X-Api-Key, value_file: key}
            oauth: {required: true, scopes: [tools]}
        ",
    );
    let servers = f.servers();
    let remote = &servers["remote"];
    assert_eq!(remote.kind, ServerKind::Remote);
    let target = remote.remote.as_ref().unwrap();
    assert_eq!(target.url.host, "mcp.example.com");
    assert_eq!(target.url.port, 8443);
    assert_eq!(target.url.target, "/mcp");
    assert!(target.tls.is_some());
    assert_eq!(target.ca_file.as_ref().unwrap().0, f.path("mcp/ca.pem"));
    let credential = target.credential.as_ref().unwrap();
    assert_eq!(credential.header, "authorization");
    assert_eq!(credential.value, "Bearer t0ken");
    assert!(!format!("{remote:?}").contains("t0ken"));
    let keyed = servers["keyed"].remote.as_ref().unwrap();
    assert!(keyed.tls.is_none());
    assert_eq!(keyed.credential.as_ref().unwrap().header, "x-api-key");
    assert_eq!(keyed.credential.as_ref().unwrap().value, "k3y");
}

#[test]
fn every_bad_remote_setting_is_located() {
    let f = fixture();
    std::fs::write(f.path("mcp/two-lines"), "a\nb\n").unwrap();
    std::fs::write(f.path("mcp/escape"), "a\x1b[2Jb").unwrap();
    std::fs::write(f.path("mcp/not-pem"), "hello").unwrap();
    std::fs::write(f.path("mcp/ok"), "ok").unwrap();
    f.write(
        "mcp/bad.yaml",
        "
        mcp_servers:
          both:
            url: https://example.com/mcp
            binary: mcp-echo
          scheme:
            url: ftp://example.com/mcp
          userinfo:
            url: https://user:pw@example.com/mcp
          fragment:
            url: https://example.com/mcp#x
          plain-tls:
            url: http://example.com/mcp
            tls: {ca_file: ok}
          no-ca:
            url: https://example.com/mcp
            tls: {ca_file: missing.pem}
          bad-ca:
            url: https://example.com/mcp
            tls: {ca_file: not-pem}
          no-token:
            url: https://example.com/mcp
            upstream_auth: {bearer_file: missing.token}
          lines:
            url: https://example.com/mcp
            upstream_auth: {bearer_file: two-lines}
          escape:
            url: https://example.com/mcp
            upstream_auth: {header: X-Api-Key, value_file: escape}
          hop:
            url: https://example.com/mcp
            upstream_auth: {header: Connection, value_file: ok}
          host:
            url: https://example.com/mcp
            upstream_auth: {header: Host, value_file: ok}
          authz:
            url: https://example.com/mcp
            upstream_auth: {header: Authorization, value_file: ok}
          token:
            url: https://example.com/mcp
            upstream_auth: {header: \"X Api\", value_file: ok}
          double:
            url: https://example.com/mcp
            upstream_auth: {bearer_file: ok, header: X-Api-Key}
          lonely:
            url: https://example.com/mcp
            upstream_auth: {header: X-Api-Key}
          process:
            url: https://example.com/mcp
            port: 5100
            args: [x]
          local:
            binary: mcp-echo
            tls: {ca_file: ok}
        ",
    );
    let errors = f.errors();
    expect_errors(
        &errors,
        "mcp/bad.yaml",
        &[
            (4, "server \"both\" has url, which takes no binary"),
            (6, "url of server \"scheme\" has the scheme \"ftp\""),
            (8, "url of server \"userinfo\" carries user information"),
            (10, "url of server \"fragment\" has a fragment"),
            (13, "server \"plain-tls\" has tls but its url is http:"),
            (16, "of server \"no-ca\": No such file"),
            (19, "of server \"bad-ca\": holds no PEM certificate"),
            (22, "of server \"no-token\": No such file"),
            (25, "holds more than one line"),
            (28, "holds a control character"),
            (
                31,
                "\"Connection\" of server \"hop\" is a hop-by-hop header",
            ),
            (34, "\"Host\" of server \"host\" is the server's host"),
            (
                37,
                "\"Authorization\" of server \"authz\" is what bearer_file sets",
            ),
            (
                40,
                "\"X Api\" of server \"token\" is not a valid HTTP header name",
            ),
            (43, "has both bearer_file and header"),
            (46, "has header but no value_file"),
            (49, "server \"process\" has url, which takes no port"),
            (50, "server \"process\" has url, which takes no args"),
            (53, "`tls` applies to remote servers (url:) only"),
        ],
    );
    let shown = show(&errors);
    assert!(
        !shown.contains("a\x1b"),
        "a credential's bytes were quoted: {shown}"
    );
}
