//! The `Host` grammar: parses a `Host` header, an `:authority` or the authority of an
//! absolute-form request target as `uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986
//! section 3.2.2), and nothing else. Pure, so it can be fuzzed.
//!
//! - `uri-host` is an IP-literal in brackets (an IPv6 address, or `v<hex>.<chars>`), or a
//!   reg-name: unreserved characters, sub-delims and `%XX` escapes only. An IPv4 address is
//!   a reg-name that also parses as one. An empty host is refused.
//! - `port` is one or more ASCII digits, at most 65535. `host:` (an empty port) is refused.
//! - No userinfo (`user@host`), no path, no spaces, no second colon outside brackets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host part of a parsed authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// An IPv4 address, or an IPv6 address written in brackets.
    Ip(IpAddr),
    /// A reg-name (a DNS name, usually), as written: compare it case-insensitively.
    Name(&'a str),
    /// An `IPvFuture` literal, brackets excluded.
    Future(&'a str),
}

impl Host<'_> {
    /// Same host: equal addresses, or names equal ignoring ASCII case.
    pub fn same(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Ip(a), Host::Ip(b)) => a == b,
            (Host::Name(a), Host::Name(b)) | (Host::Future(a), Host::Future(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => false,
        }
    }
}

/// A `Host` value that follows the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    pub host: Host<'a>,
    pub port: Option<u16>,
}

/// Why a value is not `uri-host [ ":" port ]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("the host is empty")]
    Empty,
    #[error("the host has a character a host name cannot have")]
    BadHostChar,
    #[error("the bracketed address is not an IPv6 address")]
    BadIpLiteral,
    #[error("the port is not a number from 0 to 65535")]
    BadPort,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `*( unreserved / pct-encoded / sub-delims )`, not empty.
fn is_reg_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte == b'%' {
            let escape = bytes.get(at + 1..at + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            at += 3;
        } else if is_unreserved(byte) || is_sub_delim(byte) {
            at += 1;
        } else {
            return false;
        }
    }
    !bytes.is_empty()
}

/// `"v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn is_ip_future(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, tail)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|byte| byte.is_ascii_hexdigit())
        && !tail.is_empty()
        && tail
            .bytes()
            .all(|byte| is_unreserved(byte) || is_sub_delim(byte) || byte == b':')
}

fn parse_port(text: &str) -> Result<u16, AuthorityError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(AuthorityError::BadPort);
    }
    // Leading zeros are digits too: "08080" is port 8080.
    let digits = text.trim_start_matches('0');
    if digits.len() > 5 {
        return Err(AuthorityError::BadPort);
    }
    if digits.is_empty() {
        return Ok(0);
    }
    digits.parse().map_err(|_| AuthorityError::BadPort)
}

/// Parses `uri-host [ ":" port ]`; anything else is an error.
pub fn parse(value: &str) -> Result<Authority<'_>, AuthorityError> {
    if value.is_empty() {
        return Err(AuthorityError::Empty);
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(AuthorityError::BadIpLiteral)?;
        let host = if let Ok(ip) = literal.parse::<Ipv6Addr>() {
            Host::Ip(IpAddr::V6(ip))
        } else if is_ip_future(literal) {
            Host::Future(literal)
        } else {
            return Err(AuthorityError::BadIpLiteral);
        };
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(AuthorityError::BadHostChar)?),
        };
        (host, port)
    } else {
        let (name, port) = match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        };
        if name.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if !is_reg_name(name) {
            return Err(AuthorityError::BadHostChar);
        }
        let host = match name.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(name),
        };
        (host, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok(Authority { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_hosts_parse() {
        let name = |host, port| Authority {
            host: Host::Name(host),
            port,
        };
        assert_eq!(parse("localhost"), Ok(name("localhost", None)));
        assert_eq!(parse("LocalHost:8080"), Ok(name("LocalHost", Some(8080))));
        assert_eq!(
            parse("mcp.example.com:443"),
            Ok(name("mcp.example.com", Some(443)))
        );
        assert_eq!(parse("a%2Db:1"), Ok(name("a%2Db", Some(1))));
        assert_eq!(parse("localhost:08080"), Ok(name("localhost", Some(8080))));
        assert_eq!(parse("x:0"), Ok(name("x", Some(0))));
        assert_eq!(parse("x:65535"), Ok(name("x", Some(65535))));
        assert_eq!(
            parse("127.0.0.1:8080"),
            Ok(Authority {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port: Some(8080)
            })
        );
        assert_eq!(
            parse("[::1]:9"),
            Ok(Authority {
                host: Host::Ip("::1".parse().unwrap()),
                port: Some(9)
            })
        );
        assert_eq!(
            parse("[::FFFF:127.0.0.1]"),
            Ok(Authority {
                host: Host::Ip("::ffff:127.0.0.1".parse().unwrap()),
                port: None
            })
        );
        assert_eq!(
            parse("[v1.fe80::a+en1]:80"),
            Ok(Authority {
                host: Host::Future("v1.fe80::a+en1"),
                port: Some(80)
            })
        );
        // An IPv4-like reg-name that is no IPv4 address stays a name.
        assert_eq!(parse("127.1"), Ok(name("127.1", None)));
    }

    #[test]
    fn hostile_hosts_are_refused() {
        for bad in [
            "",
            ":8080",
            "localhost:",
            "localhost:1@evil.com",
            "user@localhost",
            "localhost:evil.com",
            "localhost:8080 evil",
            "localhost evil",
            " localhost",
            "localhost ",
            "127.0.0.1:8080:evil.com",
            "localhost:8080:8080",
            "localhost:65536",
            "localhost:99999999999999999999",
            "localhost:+80",
            "localhost:-1",
            "localhost:0x50",
            "localhost/evil",
            "localhost\\evil",
            "localhost?x",
            "localhost#x",
            "local\thost",
            "localhost\r\nX-Evil: 1",
            "local\"host",
            "local<host>",
            "evil.com%",
            "evil.com%4",
            "evil.com%zz",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:80:80",
            "[::1]]",
            "[localhost]",
            "[127.0.0.1]",
            "[fe80::1%25eth0]",
            "[]",
            "[v1]",
            "[v.x]",
            "[vg.x]",
            "::1",
            "::1:8080",
            "localhost\u{0}",
            "l\u{f6}calhost",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn hosts_compare_case_insensitively_and_by_address() {
        let a = parse("LOCALHOST").unwrap().host;
        let b = parse("localhost:1").unwrap().host;
        assert!(a.same(&b));
        let v6 = parse("[0:0::1]").unwrap().host;
        assert!(v6.same(&parse("[::1]").unwrap().host));
        assert!(!v6.same(&parse("127.0.0.1").unwrap().host));
        assert!(!a.same(&parse("127.0.0.1").unwrap().host));
    }
}
