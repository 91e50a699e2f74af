//! Abuse the gateway's own timeouts must stop: a head dribbled a byte at a time (slowloris)
//! and a connection that never sends anything. Run in-process with a short header timeout;
//! tests/abuse.rs covers the rest against the real binary.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{Gateway, daemon_config, directory};
use crate::config::AuthConfig;
use crate::gateway::GatewayOptions;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

async fn gateway() -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = daemon_config(dir.path(), AuthConfig::default());
    config.gateway.limits.header_timeout = HEADER_TIMEOUT;
    let gateway = Gateway::start(directory(Vec::new()), config, GatewayOptions::default()).await;
    (dir, gateway)
}

#[tokio::test]
async fn a_dribbled_head_is_cut_off_at_the_header_timeout() {
    let (_dir, gateway) = gateway().await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    // One byte every 50 ms: the whole head would take about 4 s.
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await
        {
            // EOF, a reset, or a 408 before the close: the gateway gave up on the head.
            closed = true;
            assert!(
                !String::from_utf8_lossy(&buf[..read.unwrap_or(0)]).contains(" 200 "),
                "a dribbled head was answered"
            );
            break;
        }
    }
    // At 50 ms or more per byte the head takes over 4 s, eight header timeouts: cut off
    // before its end is the condition, whatever the machine's load.
    assert!(
        closed,
        "the head was accepted after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let (_dir, gateway) = gateway().await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // Closed by the gateway (EOF) is the condition; 10 s is only the budget of the wait.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a connection that sends nothing stays open after {:?}",
        started.elapsed()
    );
}
