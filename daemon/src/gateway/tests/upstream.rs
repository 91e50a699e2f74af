//! Upstream connection reuse: keep-alive connections are reused, and connections the server
//! closed or asked to close are never used again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::support::*;
use crate::config::AuthConfig;
use crate::directory::ServerState;
use crate::gateway::GatewayOptions;

async fn gateway_to(port: u16) -> (TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), AuthConfig::default());
    let servers = vec![
        (
            server_config(&config, "echo", "/echo", no_oauth()),
            status(ServerState::Running, Some(port)),
        ),
        (
            server_config(&config, "accepted", "/accepted", no_oauth()),
            status(ServerState::Running, Some(port)),
        ),
    ];
    let gateway = Gateway::start(directory(servers), config, GatewayOptions::default()).await;
    (dir, gateway)
}

async fn post(gateway: &Gateway, payload: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::post(gateway.url("/api/v1/mcp/echo/mcp"))
        .header("content-type", "application/json")
        .body(body(payload.to_owned()))
        .unwrap();
    let (status, _, bytes) = send(&client(), request).await;
    (status, bytes.to_vec())
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port).await;
    for i in 0..20 {
        let (status, bytes) = post(&gateway, &format!("{{\"n\":{i}}}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json(&bytes)["body_len"], format!("{{\"n\":{i}}}").len());
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn responses_without_a_body_leave_the_connection_reusable() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port).await;
    for _ in 0..10 {
        let request = Request::post(gateway.url("/api/v1/mcp/accepted/mcp"))
            .body(body("{}"))
            .unwrap();
        let (status, _, bytes) = send(&client(), request).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(bytes.is_empty());
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_requests_each_get_a_connection_and_all_are_answered() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port).await;
    let gateway = Arc::new(gateway);
    for _round in 0..3 {
        let requests: Vec<_> = (0..16)
            .map(|i| {
                let gateway = gateway.clone();
                tokio::spawn(async move { post(&gateway, &format!("[{{\"n\":{i}}}]")).await })
            })
            .collect();
        for request in requests {
            let (status, _) = request.await.unwrap();
            assert_eq!(status, StatusCode::OK);
        }
    }
    let accepted = upstream.accepted.load(Ordering::SeqCst);
    assert!(
        (1..=16).contains(&accepted),
        "connections are reused across rounds: {accepted}"
    );
}

/// A server that answers one request per connection with a keep-alive response (no
/// `Connection: close`), then closes the connection, and reports each close on `closed`.
/// With `announce`, the response says `Connection: close` instead.
async fn one_shot_server(announce: bool) -> (u16, mpsc::UnboundedReceiver<()>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The gateway's request has a Content-Length body; read head and body.
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .map_or(0, |value| value.trim().parse::<usize>().unwrap());
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let connection = if announce {
                    "connection: close\r\n"
                } else {
                    ""
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{connection}content-length: 2\r\n\r\n{{}}"
                );
                let _ = stream.write_all(response.as_bytes()).await;
                drop(stream);
                let _ = tx.send(());
            });
        }
    });
    (port, rx, accepted)
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    let (port, mut closed, accepted) = one_shot_server(false).await;
    let (_dir, gateway) = gateway_to(port).await;
    for _ in 0..5 {
        let (status, bytes) = post(&gateway, "{}").await;
        assert_ok(status, &bytes);
        assert_eq!(bytes, b"{}");
        // The server has closed its end before the next request is sent.
        tokio::time::timeout(WAIT, closed.recv()).await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn connection_close_responses_are_not_pooled() {
    let (port, _closed, accepted) = one_shot_server(true).await;
    let (_dir, gateway) = gateway_to(port).await;
    for _ in 0..5 {
        let (status, bytes) = post(&gateway, "{}").await;
        assert_ok(status, &bytes);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}
