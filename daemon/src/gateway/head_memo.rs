//! Per-worker memo of the header values and request target the proxy writes into every
//! forwarded request head, so the common case reuses them instead of building them again.
//!
//! Each value is a pure function of its key: `X-Forwarded-For` and `Forwarded` of the peer,
//! the checked host and the scheme (for a peer that is not a trusted proxy, whose own
//! forwarding headers are gone by then); `Host: 127.0.0.1:<port>` of the port; the origin-form
//! target of the server's path. A hit hands out a clone of what a miss built the same way
//! (a reference count, no allocation, no formatting), and a miss replaces the entry, so the
//! answer is always what building it afresh would give (`tests` compares both, key by key).
//!
//! The memo is thread-local: a gateway worker is one thread, so it needs no lock, and a value
//! never crosses workers. It holds one forwarding entry, one target and a few ports: a few
//! hundred bytes per worker. Keys hold copies, never a client's header value, which shares
//! hyper's read buffer and would keep that buffer from being reused.

use std::cell::RefCell;
use std::net::IpAddr;

use http::Uri;
use http::header::{self, HeaderMap, HeaderValue};

use super::headers::{self, Forwarding, X_FORWARDED_FOR};

/// Ports remembered per worker (direct-mapped by the port's low bits).
const PORT_SLOTS: usize = 16;

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new(Memo::new()) };
}

struct ForwardingEntry {
    peer: IpAddr,
    host: Option<Box<[u8]>>,
    proto: &'static str,
    forwarded_for: HeaderValue,
    forwarded: HeaderValue,
}

struct Memo {
    forwarding: Option<ForwardingEntry>,
    hosts: [Option<(u16, HeaderValue)>; PORT_SLOTS],
    target: Option<(Box<str>, Uri)>,
}

impl Memo {
    const fn new() -> Self {
        Memo {
            forwarding: None,
            hosts: [const { None }; PORT_SLOTS],
            target: None,
        }
    }
}

impl ForwardingEntry {
    fn matches(&self, forwarding: &Forwarding<'_>) -> bool {
        self.peer == forwarding.peer
            && self.proto == forwarding.proto
            && self.host.as_deref() == forwarding.host.map(HeaderValue::as_bytes)
    }
}

/// [`headers::set_forwarding`], with the values for a peer that is not a trusted proxy taken
/// from the memo when the peer, host and scheme are those of the last request.
pub fn set_forwarding(headers: &mut HeaderMap, forwarding: &Forwarding<'_>) {
    if forwarding.trusted_peer {
        // A trusted proxy's own forwarding headers are kept and appended to: not memoized.
        headers::set_forwarding(headers, forwarding);
        return;
    }
    let hit = MEMO.with_borrow(|memo| {
        let entry = memo.forwarding.as_ref()?;
        entry
            .matches(forwarding)
            .then(|| (entry.forwarded_for.clone(), entry.forwarded.clone()))
    });
    if let Some((forwarded_for, forwarded)) = hit {
        headers.insert(&X_FORWARDED_FOR, forwarded_for);
        headers.insert(header::FORWARDED, forwarded);
        if let Some(host) = forwarding.host {
            headers.insert(&headers::X_FORWARDED_HOST, host.clone());
        }
        headers.insert(
            &headers::X_FORWARDED_PROTO,
            HeaderValue::from_static(forwarding.proto),
        );
        return;
    }
    headers::set_forwarding(headers, forwarding);
    let (Some(forwarded_for), Some(forwarded)) = (
        headers.get(&X_FORWARDED_FOR).cloned(),
        headers.get(header::FORWARDED).cloned(),
    ) else {
        return;
    };
    let entry = ForwardingEntry {
        peer: forwarding.peer,
        host: forwarding.host.map(|host| host.as_bytes().into()),
        proto: forwarding.proto,
        forwarded_for,
        forwarded,
    };
    MEMO.with_borrow_mut(|memo| memo.forwarding = Some(entry));
}

/// `Host: 127.0.0.1:<port>`, the host of a request to a local server.
pub fn upstream_host(port: u16) -> Option<HeaderValue> {
    let slot = usize::from(port) % PORT_SLOTS;
    let hit = MEMO.with_borrow(|memo| match &memo.hosts[slot] {
        Some((memo_port, value)) if *memo_port == port => Some(value.clone()),
        _ => None,
    });
    if hit.is_some() {
        return hit;
    }
    let value = HeaderValue::from_bytes(super::proxy::upstream_host(port, &mut [0; 16])).ok()?;
    MEMO.with_borrow_mut(|memo| memo.hosts[slot] = Some((port, value.clone())));
    Some(value)
}

/// The origin-form target `path` (no query) as a URI.
pub fn target(path: &str) -> Result<Uri, http::uri::InvalidUri> {
    let hit = MEMO.with_borrow(|memo| match &memo.target {
        Some((memo_path, uri)) if **memo_path == *path => Some(uri.clone()),
        _ => None,
    });
    if let Some(uri) = hit {
        return Ok(uri);
    }
    let uri = Uri::try_from(path)?;
    MEMO.with_borrow_mut(|memo| memo.target = Some((path.into(), uri.clone())));
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(forwarding: &Forwarding<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers::set_forwarding(&mut headers, forwarding);
        headers
    }

    fn memoized(forwarding: &Forwarding<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        set_forwarding(&mut headers, forwarding);
        headers
    }

    #[test]
    fn memoized_forwarding_headers_are_those_built_afresh() {
        let hosts = [
            None,
            Some(HeaderValue::from_static("localhost:8080")),
            Some(HeaderValue::from_static("mcp.example.com")),
        ];
        let peers: [IpAddr; 3] = [
            "127.0.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "::ffff:192.0.2.7".parse().unwrap(),
        ];
        // Every key after every other (misses), then each twice in a row (hits).
        for round in 0..2 {
            for peer in peers {
                for host in &hosts {
                    for proto in ["http", "https"] {
                        for trusted_peer in [false, true] {
                            let forwarding = Forwarding {
                                peer,
                                host: host.as_ref(),
                                proto,
                                trusted_peer,
                            };
                            for _ in 0..=round {
                                assert_eq!(
                                    memoized(&forwarding),
                                    plain(&forwarding),
                                    "{peer} {host:?} {proto} trusted={trusted_peer}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_trusted_proxys_headers_are_appended_to_not_replaced_by_the_memo() {
        let host = HeaderValue::from_static("localhost");
        let untrusted = Forwarding {
            peer: "10.0.0.1".parse().unwrap(),
            host: Some(&host),
            proto: "http",
            trusted_peer: false,
        };
        memoized(&untrusted);
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        set_forwarding(
            &mut headers,
            &Forwarding {
                trusted_peer: true,
                ..untrusted
            },
        );
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.1, 10.0.0.1");
    }

    #[test]
    fn hosts_and_targets_are_those_built_afresh() {
        for port in [1, 17, 5000, 5016, 5000, 65_535, 17] {
            assert_eq!(
                upstream_host(port).unwrap(),
                format!("127.0.0.1:{port}").as_str()
            );
        }
        for path in ["/mcp", "/other", "/mcp", "/a/b?", "/mcp"] {
            assert_eq!(target(path).unwrap(), Uri::try_from(path).unwrap());
        }
        assert!(target("/bad path").is_err());
    }
}
