//! Which client request headers reach a server, and the identity and forwarding headers the
//! gateway sets in their place. Pure, so it can be fuzzed.
//!
//! Always removed from a client's request before it is forwarded:
//! - hop-by-hop headers and those named in `Connection` (RFC 9110 section 7.6.1);
//! - every header whose name contains `_` (nginx's `underscores_in_headers off`): CGI and
//!   WSGI servers read `X_MCP_Subject` and `X-MCP-Subject` alike as `HTTP_X_MCP_SUBJECT`;
//! - `Authorization`, `Host`, and every `X-MCP-*` header: the gateway's own identity headers
//!   (`X-MCP-Subject`, `X-MCP-Scopes`, `X-MCP-Client-Id`) come from a verified token only.
//!
//! Forwarding headers: unless the peer is in `gateway.trusted_proxies`, the client's
//! `Forwarded`, `X-Real-IP` and every `X-Forwarded-*` are removed, and the gateway sets
//! `X-Forwarded-For` (the peer), `X-Forwarded-Host` (the checked host), `X-Forwarded-Proto`
//! (`public_url`'s scheme) and `Forwarded` (RFC 7239, the same three). From a trusted peer
//! they are kept: the peer is appended to `X-Forwarded-For` and one element to `Forwarded`,
//! and `X-Forwarded-Host`/`-Proto` are set only when the peer did not send them.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_MCP_SUBJECT: HeaderName = HeaderName::from_static("x-mcp-subject");
pub static X_MCP_SCOPES: HeaderName = HeaderName::from_static("x-mcp-scopes");
pub static X_MCP_CLIENT_ID: HeaderName = HeaderName::from_static("x-mcp-client-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers (besides those `Connection` names), `Connection` first.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
///
/// One pass over the names present finds which of them are hop-by-hop; only those are
/// removed (a head usually has none, or only `Transfer-Encoding`), rather than a lookup
/// per hop-by-hop name on every request and response.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| *hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(*name);
        }
    }
}

/// True for the forwarding headers a client may only send through a trusted proxy.
fn is_forwarding(name: &str) -> bool {
    name == header::FORWARDED.as_str()
        || name == X_REAL_IP.as_str()
        || name.starts_with("x-forwarded-")
}

/// Removes what a client may not send on: see the module documentation. The forwarding
/// headers stay only when `trusted_peer`.
pub fn filter_request(headers: &mut HeaderMap, trusted_peer: bool) {
    remove_hop_by_hop(headers);
    let refused: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.contains('_')
                || name.starts_with("x-mcp-")
                || (!trusted_peer && is_forwarding(name))
        })
        .cloned()
        .collect();
    for name in refused {
        headers.remove(name);
    }
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
}

/// What the gateway knows about where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub peer: IpAddr,
    /// The host the client asked for, as checked (absent on routes without the check).
    pub host: Option<&'a HeaderValue>,
    /// `http` or `https`: what the client used to reach the gateway.
    pub proto: &'static str,
    /// The peer is in `gateway.trusted_proxies`: its forwarding headers are kept.
    pub trusted_peer: bool,
}

/// Sets `name` to `existing, ours` (or `ours` alone): the values of every `name` header
/// already there (when `keep`) and the pieces of `ours`, joined with `, `. The value is built
/// in one buffer of its exact size and handed to the header as it is (one allocation).
fn append(headers: &mut HeaderMap, name: &HeaderName, ours: &[&[u8]], keep: bool) {
    let existing = || headers.get_all(name).iter().filter(move |_| keep);
    // Joined as a list: `, ` between values, none before the first non-empty one.
    let joined_len = existing().fold(0, |len, value| {
        len + if len > 0 { 2 } else { 0 } + value.len()
    });
    let separator: &[u8] = if joined_len > 0 { b", " } else { b"" };
    let len = joined_len + separator.len() + ours.iter().map(|piece| piece.len()).sum::<usize>();
    let mut value = Vec::with_capacity(len);
    for present in existing() {
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(present.as_bytes());
    }
    value.extend_from_slice(separator);
    for piece in ours {
        value.extend_from_slice(piece);
    }
    // `len == capacity`: the buffer becomes the value's bytes without a copy.
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(name, value);
    }
}

/// `ip` written into `buf`, without an allocation.
fn write_ip<'a>(ip: &IpAddr, buf: &'a mut [u8; 48]) -> &'a [u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IPv6 address is at most 45 characters.
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    &buf[..len]
}

/// Sets the forwarding headers for a request already through `filter_request`.
pub fn set_forwarding(headers: &mut HeaderMap, forwarding: &Forwarding<'_>) {
    let keep = forwarding.trusted_peer;
    let peer = forwarding.peer.to_canonical();
    let mut buf = [0u8; 48];
    let ip = write_ip(&peer, &mut buf);
    append(headers, &X_FORWARDED_FOR, &[ip], keep);

    // RFC 7239: an IPv6 address is bracketed and quoted; the host is quoted (it may hold a
    // colon). A checked host holds no `"` or `\`, so quoting needs no escapes.
    let (open, close): (&[u8], &[u8]) = match peer {
        IpAddr::V4(_) => (b"for=", b""),
        IpAddr::V6(_) => (b"for=\"[", b"]\""),
    };
    let host = forwarding
        .host
        .filter(|host| !host.as_bytes().iter().any(|b| matches!(b, b'"' | b'\\')));
    let (host_open, host, host_close): (&[u8], &[u8], &[u8]) = match host {
        Some(host) => (b";host=\"", host.as_bytes(), b"\""),
        None => (b"", b"", b""),
    };
    let element = [
        open,
        ip,
        close,
        host_open,
        host,
        host_close,
        b";proto=",
        forwarding.proto.as_bytes(),
    ];
    append(headers, &header::FORWARDED, &element, keep);

    if !(keep && headers.contains_key(&X_FORWARDED_HOST))
        && let Some(host) = forwarding.host
    {
        headers.insert(&X_FORWARDED_HOST, host.clone());
    }
    if !(keep && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            &X_FORWARDED_PROTO,
            HeaderValue::from_static(forwarding.proto),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn hostile() -> HeaderMap {
        map(&[
            ("X_MCP_Subject", "admin"),
            ("X_MCP_Scopes", "admin"),
            ("x-mcp-subject", "admin"),
            ("X-MCP-Scopes", "admin"),
            ("x-mcp-client-id", "trusted-app"),
            ("x-mcp-anything", "1"),
            ("Authorization", "Bearer abc"),
            ("Host", "evil.com"),
            ("X_Forwarded_For", "10.9.9.9"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Host", "evil.com"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Prefix", "/admin"),
            ("Forwarded", "for=10.0.0.1;host=evil.com"),
            ("X-Real-IP", "10.0.0.1"),
            ("Connection", "x-keep-me-not"),
            ("x-keep-me-not", "1"),
            ("Mcp-Session-Id", "s1"),
            ("Content-Type", "application/json"),
        ])
    }

    #[test]
    fn every_hop_by_hop_header_is_removed_alone_or_with_the_others() {
        let hop = [
            ("Connection", "close, X-Named"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic abc"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "x-t"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
        ];
        let kept = [("content-type", "application/json"), ("x-other", "1")];
        for one in &hop {
            let mut headers = map(&[*one, kept[0], kept[1]]);
            remove_hop_by_hop(&mut headers);
            assert_eq!(headers, map(&kept), "{one:?}");
        }
        let mut all: Vec<(&str, &str)> = hop.to_vec();
        all.extend_from_slice(&kept);
        all.push(("X-Named", "named by Connection"));
        let mut headers = map(&all);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers, map(&kept));
        let mut untouched = map(&kept);
        remove_hop_by_hop(&mut untouched);
        assert_eq!(untouched, map(&kept));
    }

    #[test]
    fn an_untrusted_client_keeps_only_its_own_headers() {
        let mut headers = hostile();
        filter_request(&mut headers, false);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "mcp-session-id"]);
        let host = HeaderValue::from_static("localhost:8080");
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "127.0.0.1".parse().unwrap(),
                host: Some(&host),
                proto: "http",
                trusted_peer: false,
            },
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "localhost:8080");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(
            headers["forwarded"],
            "for=127.0.0.1;host=\"localhost:8080\";proto=http"
        );
        assert!(!headers.contains_key("x-real-ip"));
        assert_eq!(headers.get_all("forwarded").iter().count(), 1);
    }

    #[test]
    fn a_trusted_proxy_keeps_its_forwarding_headers_but_never_identities() {
        let mut headers = hostile();
        headers.append("forwarded", "for=10.0.0.2".parse().unwrap());
        filter_request(&mut headers, true);
        for gone in [
            "x_mcp_subject",
            "x-mcp-subject",
            "x-mcp-scopes",
            "x-mcp-client-id",
            "x-mcp-anything",
            "x_forwarded_for",
            "authorization",
            "host",
            "x-keep-me-not",
        ] {
            assert!(!headers.contains_key(gone), "{gone}");
        }
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "::ffff:192.0.2.7".parse().unwrap(),
                host: None,
                proto: "http",
                trusted_peer: true,
            },
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(headers["x-forwarded-host"], "evil.com");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-real-ip"], "10.0.0.1");
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1;host=evil.com, for=10.0.0.2, for=192.0.2.7;proto=http"
        );
    }

    #[test]
    fn an_ipv6_peer_is_quoted_in_forwarded() {
        let mut headers = HeaderMap::new();
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "2001:db8::1".parse().unwrap(),
                host: None,
                proto: "https",
                trusted_peer: false,
            },
        );
        assert_eq!(headers["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(headers["x-forwarded-for"], "2001:db8::1");
        assert!(!headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("mcp-session-id", "abc"),
        ]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["mcp-session-id"], "abc");
    }
}
