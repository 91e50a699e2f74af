//! Fuzz target: the request headers the gateway forwards (`gateway::headers`).
//!
//! The input is read as header lines `name: value` (the first byte picks a trusted peer or
//! not). After `filter_request` and `set_forwarding`, no header name has `_`, none is
//! `X-MCP-*`, `Authorization`, `Host` or hop-by-hop, and the forwarding headers end with
//! what the gateway set; from an untrusted peer they are exactly the gateway's. Replayed by
//! the gateway's unit tests from daemon/tests-data/fuzz/header_filter/.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcpd::gateway::headers::{Forwarding, filter_request, set_forwarding};

fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let trusted = first & 1 == 1;
    let mut headers = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let host = HeaderValue::from_static("localhost:8080");
    let peer = if first & 2 == 0 {
        "192.0.2.7".parse().unwrap()
    } else {
        "2001:db8::7".parse().unwrap()
    };
    filter_request(&mut headers, trusted);
    set_forwarding(
        &mut headers,
        &Forwarding {
            peer,
            host: Some(&host),
            proto: "https",
            trusted_peer: trusted,
        },
    );
    for name in headers.keys() {
        let name = name.as_str();
        assert!(!name.contains('_'), "{name}");
        assert!(!name.starts_with("x-mcp-"), "{name}");
        assert!(
            ![
                "authorization",
                "host",
                "connection",
                "keep-alive",
                "te",
                "transfer-encoding",
                "upgrade",
                "proxy-authorization",
                "proxy-connection",
                "trailer",
            ]
            .contains(&name),
            "{name}"
        );
    }
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes().to_vec());
    let ip = peer.to_string();
    assert!(get("x-forwarded-for").unwrap().ends_with(ip.as_bytes()));
    assert!(get("forwarded").unwrap().ends_with(b";host=\"localhost:8080\";proto=https"));
    assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(headers.get_all("forwarded").iter().count(), 1);
    if !trusted {
        assert_eq!(get("x-forwarded-for").unwrap(), ip.as_bytes());
        assert_eq!(get("x-forwarded-host").unwrap(), b"localhost:8080");
        assert_eq!(get("x-forwarded-proto").unwrap(), b"https");
        assert!(get("x-real-ip").is_none());
        for name in headers.keys() {
            let name = name.as_str();
            assert!(
                !name.starts_with("x-forwarded-")
                    || ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"].contains(&name),
                "{name}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| check(data));
