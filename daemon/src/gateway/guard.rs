//! DNS-rebinding protection: which `Host` and `Origin` values the gateway answers.
//!
//! Host: `public_url`'s host, the configured listen address and the address actually bound,
//! localhost/127.0.0.1/[::1] on any port, and `gateway.allowed_hosts`. An entry written
//! without a port matches that host on any port.
//!
//! Origin: absent passes (not a browser); otherwise it must be listed in
//! `gateway.allowed_origins` (`*` allows any), or be `public_url`'s own origin.

use std::net::SocketAddr;

use crate::config::GatewayConfig;

/// Splits `host[:port]` (IPv6 in brackets) into host and port.
fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(end) => {
                let (host, rest) = value.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (value, None),
        };
    }
    match value.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    }
}

/// True when `value` (a Host header) matches `entry` (a configured host, port optional).
fn host_matches(entry: &str, value: &str) -> bool {
    let (entry_host, entry_port) = split_host_port(entry);
    let (host, port) = split_host_port(value);
    entry_host.eq_ignore_ascii_case(host) && (entry_port.is_none() || entry_port == port)
}

pub fn host_allowed(host: &str, gateway: &GatewayConfig, bound: SocketAddr) -> bool {
    let (name, _) = split_host_port(host);
    if ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|local| name.eq_ignore_ascii_case(local))
    {
        return true;
    }
    if let Ok(addr) = host.parse::<SocketAddr>()
        && (addr == gateway.listen || addr == bound)
    {
        return true;
    }
    host_matches(&gateway.public_host, host)
        || gateway
            .allowed_hosts
            .iter()
            .any(|entry| host_matches(entry, host))
}

/// `scheme://host[:port]` of a URL (its origin), without any path.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

pub fn origin_allowed(origin: &str, gateway: &GatewayConfig) -> bool {
    let origin = origin.trim_end_matches('/');
    origin.eq_ignore_ascii_case(origin_of(&gateway.public_url))
        || gateway.allowed_origins.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> GatewayConfig {
        GatewayConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            public_url: "https://mcp.example.com/base".into(),
            public_host: "mcp.example.com".into(),
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_hosts: vec!["gw.internal:9000".into(), "alias.example.com".into()],
            max_body: 1024,
            limits: Default::default(),
        }
    }

    #[test]
    fn hosts() {
        let gw = gateway();
        let bound: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:1234",
            "127.0.0.1:8080",
            "[::1]:9",
            "mcp.example.com",
            "mcp.example.com:443",
            "0.0.0.0:8080",
            "10.0.0.5:8080",
            "gw.internal:9000",
            "alias.example.com:81",
        ] {
            assert!(host_allowed(ok, &gw, bound), "{ok} should pass");
        }
        for bad in [
            "evil.com",
            "evil.com:8080",
            "localhost.evil.com",
            "127.0.0.2:8080",
            "10.0.0.5:8081",
            "gw.internal:9001",
            "gw.internal",
            "[::2]:80",
            "",
        ] {
            assert!(!host_allowed(bad, &gw, bound), "{bad} should fail");
        }
    }

    #[test]
    fn origins() {
        let gw = gateway();
        assert!(origin_allowed("https://app.example.com", &gw));
        assert!(origin_allowed("https://mcp.example.com", &gw));
        assert!(!origin_allowed("https://evil.com", &gw));
        assert!(!origin_allowed("null", &gw));
        assert!(!origin_allowed("http://app.example.com", &gw));
        let mut any = gateway();
        any.allowed_origins = vec!["*".into()];
        assert!(origin_allowed("https://evil.com", &any));
    }
}
