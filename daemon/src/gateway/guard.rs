//! DNS-rebinding protection: which `Host` and `Origin` values the gateway answers.
//!
//! Host (already parsed by `authority`; a value that does not parse is refused with 400
//! before): `public_url`'s host, the configured listen address and the address actually
//! bound, localhost/127.0.0.1/[::1] on any port, and `gateway.allowed_hosts`. An entry
//! written without a port matches that host on any port.
//!
//! Origin: absent passes (not a browser); otherwise it must be listed in
//! `gateway.allowed_origins` (`*` allows any), or be one of the gateway's own origins:
//! `public_url`'s; `http://` with localhost or an address the gateway listens on (loopback
//! included when it is bound to a wildcard) on its port, which is a page the gateway serves
//! however the browser reached it; or an `allowed_hosts` host on its own port or the
//! gateway's. A local page on another port (`http://localhost:3000`), or on an address the
//! gateway does not listen on, is another program's and still needs listing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::Version;
use http::header::{HOST, HeaderMap};

use super::authority::{self, Authority, Host};
use crate::config::GatewayConfig;

/// The host a request names, before parsing: the request target's authority when it has one
/// (an absolute-form target in HTTP/1.1, RFC 9112 section 3.2.2; `:authority` in HTTP/2),
/// else the single `Host` header. Errors (answered 400) for two `Host` headers, a `Host`
/// that is not visible ASCII, an HTTP/2 `host` that differs from `:authority`, or no host.
pub fn request_host<'a>(
    version: Version,
    target_authority: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Result<&'a str, &'static str> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let header = header
        .map(|value| value.to_str().map_err(|_| "Host is not visible ASCII"))
        .transpose()?;
    match (target_authority, header) {
        (Some(authority), Some(header))
            if version == Version::HTTP_2 && !authority.eq_ignore_ascii_case(header) =>
        {
            Err("the host header differs from :authority")
        }
        (Some(authority), _) => Ok(authority),
        (None, Some(header)) => Ok(header),
        (None, None) => Err("a Host header is required"),
    }
}

/// True when `value` matches `entry` (a configured host, port optional). An entry that does
/// not follow the Host grammar matches nothing.
fn host_matches(entry: &str, value: &Authority<'_>) -> bool {
    authority::parse(entry).is_ok_and(|entry| {
        entry.host.same(&value.host) && (entry.port.is_none() || entry.port == value.port)
    })
}

/// True when `host` (already parsed by the Host grammar) is one the gateway answers.
pub fn host_allowed(host: &Authority<'_>, gateway: &GatewayConfig, bound: SocketAddr) -> bool {
    let local = match host.host {
        Host::Ip(ip) => ip == Ipv4Addr::LOCALHOST || ip == Ipv6Addr::LOCALHOST,
        Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Future(_) => false,
    };
    if local {
        return true;
    }
    if let (Host::Ip(ip), Some(port)) = (host.host, host.port) {
        let addr = SocketAddr::new(ip, port);
        if addr == gateway.listen || addr == bound {
            return true;
        }
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

pub fn origin_allowed(origin: &str, gateway: &GatewayConfig, bound: SocketAddr) -> bool {
    let origin = origin.trim_end_matches('/');
    origin.eq_ignore_ascii_case(origin_of(&gateway.public_url))
        || own_origin(origin, gateway, bound)
        || gateway.allowed_origins.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        })
}

/// True when a socket bound to `listening` receives connections to loopback or address `ip`
/// (0.0.0.0 takes IPv4 loopback, [::] both families).
fn listening_on(listening: IpAddr, ip: IpAddr) -> bool {
    match listening {
        IpAddr::V4(v4) if v4.is_unspecified() => ip == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) if v6.is_unspecified() => ip.is_loopback(),
        listening => listening == ip,
    }
}

/// True for `http://HOST:PORT` where the gateway answers `HOST` for itself and `PORT` is
/// where it listens, or an `allowed_hosts` entry names that host with that port (an entry
/// without a port: with the gateway's).
fn own_origin(origin: &str, gateway: &GatewayConfig, bound: SocketAddr) -> bool {
    let Some(rest) = origin
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &origin[7..])
    else {
        return false;
    };
    let Ok(parsed) = authority::parse(rest) else {
        return false;
    };
    let port = parsed.port.unwrap_or(80);
    let ours = port == bound.port() || port == gateway.listen.port();
    let local = match parsed.host {
        // Only an address the gateway itself listens on: with the gateway on 127.0.0.1:8080,
        // a page from [::1]:8080 is another program's.
        Host::Ip(ip) => [bound.ip(), gateway.listen.ip()]
            .into_iter()
            .any(|listening| listening_on(listening, ip)),
        Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Future(_) => false,
    };
    (local && ours)
        || gateway.allowed_hosts.iter().any(|entry| {
            authority::parse(entry).is_ok_and(|entry| {
                entry.host.same(&parsed.host)
                    && match entry.port {
                        Some(port) => parsed.port == Some(port),
                        None => ours,
                    }
            })
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
            trusted_proxies: Vec::new(),
            max_body: 1024,
            limits: Default::default(),
            web: true,
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
            let host = authority::parse(ok).unwrap();
            assert!(host_allowed(&host, &gw, bound), "{ok} should pass");
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
            "127.0.0.2",
            "[::ffff:127.0.0.1]",
            "%6cocalhost",
            "localhost.",
        ] {
            let host = authority::parse(bad).unwrap();
            assert!(!host_allowed(&host, &gw, bound), "{bad} should fail");
        }
    }

    #[test]
    fn the_host_a_request_names() {
        let headers = |hosts: &[&str]| {
            let mut map = HeaderMap::new();
            for host in hosts {
                map.append(HOST, host.parse().unwrap());
            }
            map
        };
        let h1 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        assert_eq!(request_host(h1, None, &headers(&["a:1"])), Ok("a:1"));
        assert!(request_host(h1, None, &headers(&["a", "a"])).is_err());
        assert!(request_host(h1, None, &headers(&["localhost", "evil.com"])).is_err());
        assert!(request_host(h1, None, &headers(&[])).is_err());
        assert!(request_host(h1, Some("x"), &headers(&["a", "b"])).is_err());
        // Absolute form: the target's authority is the host, whatever Host says.
        assert_eq!(
            request_host(h1, Some("evil.com"), &headers(&["localhost"])),
            Ok("evil.com")
        );
        assert_eq!(
            request_host(h2, Some("Local:1"), &headers(&["local:1"])),
            Ok("Local:1")
        );
        assert_eq!(
            request_host(h2, Some("local:1"), &headers(&[])),
            Ok("local:1")
        );
        assert!(request_host(h2, Some("localhost"), &headers(&["evil.com"])).is_err());
        let mut binary = HeaderMap::new();
        binary.insert(HOST, http::HeaderValue::from_bytes(b"l\xf6cal").unwrap());
        assert!(request_host(h1, None, &binary).is_err());
    }

    #[test]
    fn origins() {
        let gw = gateway();
        let bound: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let allowed = |origin: &str| origin_allowed(origin, &gw, bound);
        assert!(allowed("https://app.example.com"));
        assert!(allowed("https://mcp.example.com"));
        assert!(!allowed("https://evil.com"));
        assert!(!allowed("null"));
        assert!(!allowed("http://app.example.com"));
        let mut any = gateway();
        any.allowed_origins = vec!["*".into()];
        assert!(origin_allowed("https://evil.com", &any, bound));
    }

    #[test]
    fn a_socket_listens_on_its_address_and_what_a_wildcard_takes() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(listening_on(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(!listening_on(ip("127.0.0.1"), ip("::1")));
        assert!(listening_on(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(!listening_on(ip("0.0.0.0"), ip("::1")));
        assert!(listening_on(ip("::"), ip("::1")));
        assert!(listening_on(ip("::"), ip("127.0.0.1")));
        assert!(!listening_on(ip("10.0.0.5"), ip("127.0.0.1")));
    }

    #[test]
    fn the_gateways_own_origins_pass() {
        let gw = gateway();
        let bound: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        // A page served by the gateway itself, however the browser reached it.
        for own in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "HTTP://LOCALHOST:8080/",
            "http://10.0.0.5:8080",
            "http://gw.internal:9000",
            "http://alias.example.com:8080",
        ] {
            assert!(origin_allowed(own, &gw, bound), "{own} should pass");
        }
        // Another local page, another port, another scheme, or not a Host at all.
        for other in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://127.0.0.1:8080",
            "http://127.0.0.2:8080",
            "http://[::1]:8080",
            "http://10.0.0.5:8081",
            "http://alias.example.com",
            "http://alias.example.com:81",
            "http://gw.internal:9001",
            "http://localhost:8080@evil.com",
            "http://localhost:8080.evil.com",
            "http://evil.com:8080",
            "http://",
            "file://",
        ] {
            assert!(
                !origin_allowed(other, &gw, bound),
                "{other} should not pass"
            );
        }
    }
}
