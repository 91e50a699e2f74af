//! The gateway's resource caps: how many client and upstream connections it may hold
//! (derived from the open-file limit unless configured), and the per-peer connection count
//! that refuses a client over its share.
//!
//! Descriptors are budgeted so the gateway can never take them all: a reserve (a quarter)
//! stays for the control socket, probes, log files and the servers' pipes, half of the rest
//! goes to client connections and half to upstream connections. A client over a cap is
//! answered a short 503 (written only if the socket takes it at once) and closed, so it
//! holds no descriptor. The listening socket queues [`LISTEN_BACKLOG`] connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::GatewayLimits;

/// Descriptors always left to the rest of the daemon, at the least.
const MIN_RESERVE: usize = 64;

/// The caps in force, every one resolved to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub connections: usize,
    pub connections_per_peer: usize,
    pub upstream: usize,
    pub upstream_per_server: usize,
}

impl Caps {
    /// Resolves `limits` against an open-file limit of `nofile` descriptors. Configured caps
    /// are taken as given; the others share what is left after the reserve (a quarter of the
    /// limit, at least [`MIN_RESERVE`]; each server takes about four: its pipes, log file and
    /// probe connection): half for clients, half for upstream connections. One peer may hold
    /// half the client connections, one server half the upstream ones.
    pub fn resolve(limits: &GatewayLimits, nofile: usize) -> Caps {
        let reserve = MIN_RESERVE.max(nofile / 4);
        let budget = nofile.saturating_sub(reserve).max(2);
        let connections = limits.max_connections.unwrap_or(budget / 2).max(1);
        let upstream = limits.max_upstream.unwrap_or(budget / 2).max(1);
        Caps {
            connections,
            connections_per_peer: limits
                .max_connections_per_peer
                .unwrap_or((connections / 2).max(1)),
            upstream,
            upstream_per_server: limits
                .max_upstream_per_server
                .unwrap_or((upstream / 2).max(1)),
        }
    }
}

/// Connections the kernel queues on the gateway's socket before a worker accepts them.
/// The standard library's 128 overflows when a few hundred clients connect at once, and a
/// connection whose SYN was dropped is retried only after a second (nginx listens with 511).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds the gateway's listening socket (`SO_REUSEADDR`, as `TcpListener::bind` does) with a
/// backlog of [`LISTEN_BACKLOG`].
pub fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`).
pub fn open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Counts client connections, in total and per peer address, across all gateway workers.
#[derive(Debug)]
pub struct ConnectionCounter {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_peer: usize,
    refusals: Mutex<RefusalLog>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    Peer,
}

/// One admitted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct Admitted {
    counter: Arc<ConnectionCounter>,
    peer: IpAddr,
}

impl ConnectionCounter {
    pub fn new(max_total: usize, max_per_peer: usize) -> Self {
        ConnectionCounter {
            total: AtomicUsize::new(0),
            per_peer: Mutex::default(),
            max_total,
            max_per_peer,
            refusals: Mutex::new(RefusalLog::default()),
        }
    }

    /// Takes a place for a connection from `peer`, or says which cap it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let mut per_peer = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_peer.entry(peer).or_default();
        if *count >= self.max_per_peer {
            drop(per_peer);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Peer);
        }
        *count += 1;
        Ok(Admitted {
            counter: Arc::clone(self),
            peer,
        })
    }

    /// Logs a refusal, at most one line per [`REFUSAL_LOG_INTERVAL`] (with how many it stood for).
    pub fn refused(&self, why: Refused, peer: IpAddr) {
        let mut log = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(suppressed) = log.record(Instant::now()) {
            let (cap, limit) = match why {
                Refused::Total => ("gateway.max_connections", self.max_total),
                Refused::Peer => ("gateway.max_connections_per_peer", self.max_per_peer),
            };
            tracing::warn!(%peer, cap, limit, suppressed,
                "refusing a gateway connection: too many connections");
        }
    }

    /// Connections held now.
    #[cfg(test)]
    pub fn current(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_peer = self
            .counter
            .per_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                per_peer.remove(&self.peer);
            }
        }
        drop(per_peer);
        self.counter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// At most one refusal line per this interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Rate-limits refusal lines.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// Returns `Some(lines suppressed since the last one)` when a line should go out now.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What a refused client gets, if its socket takes it without waiting.
pub const REFUSAL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
content-length: 33\r\n\r\n{\"error\":\"too many connections\"}\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_queues_a_burst_of_connections_nobody_accepts_yet() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Beyond std's backlog of 128: with it, the 130th connect would never complete while
        // nothing accepts (its SYNs are dropped) and this would fail at the timeout.
        let connected = tokio::task::spawn_blocking(move || {
            (0..300)
                .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(20)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap()
        .expect("every connection is queued");
        assert_eq!(connected.len(), 300);
        drop(listener);
    }

    #[test]
    fn caps_leave_a_reserve_and_split_the_rest() {
        let limits = GatewayLimits::default();
        let caps = Caps::resolve(&limits, 1024);
        assert_eq!(caps.connections, 384);
        assert_eq!(caps.upstream, 384);
        assert_eq!(caps.connections_per_peer, 192);
        assert_eq!(caps.upstream_per_server, 192);
        assert!(caps.connections + caps.upstream + MIN_RESERVE <= 1024);
        let big = Caps::resolve(&limits, 1 << 20);
        assert!(big.connections + big.upstream <= (1 << 20) - (1 << 17));
        // A tiny limit still admits someone.
        let tiny = Caps::resolve(&limits, 10);
        assert_eq!((tiny.connections, tiny.upstream), (1, 1));
    }

    #[test]
    fn configured_caps_are_taken_as_given() {
        let limits = GatewayLimits {
            max_connections: Some(10),
            max_connections_per_peer: Some(3),
            max_upstream: Some(7),
            max_upstream_per_server: Some(2),
            ..GatewayLimits::default()
        };
        let caps = Caps::resolve(&limits, 1024);
        assert_eq!(
            caps,
            Caps {
                connections: 10,
                connections_per_peer: 3,
                upstream: 7,
                upstream_per_server: 2
            }
        );
    }

    #[test]
    fn per_peer_and_total_caps_refuse_and_release() {
        let counter = Arc::new(ConnectionCounter::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = counter.admit(a).unwrap();
        let _a2 = counter.admit(a).unwrap();
        assert_eq!(counter.admit(a).unwrap_err(), Refused::Peer);
        let _b1 = counter.admit(b).unwrap();
        assert_eq!(counter.admit(b).unwrap_err(), Refused::Total);
        assert_eq!(counter.current(), 3);
        drop(a1);
        assert_eq!(counter.current(), 2);
        let _a3 = counter.admit(a).unwrap();
        assert_eq!(counter.per_peer.lock().unwrap()[&a], 2);
    }

    #[test]
    fn the_refusal_response_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.record(start), Some(0));
        for i in 1..=10 {
            assert_eq!(log.record(start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.record(start + REFUSAL_LOG_INTERVAL), Some(10));
    }
}
