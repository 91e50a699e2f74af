//! Each HTTP/1.1 client connection keeps the upstream connection it used last: a burst of
//! calls on open client connections connects nothing, and a held connection yields at a cap
//! and when its client connection hands itself to hyper.

use std::sync::atomic::Ordering;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpStream;

use super::support::*;
use crate::config::{AuthConfig, DaemonConfig};
use crate::directory::ServerState;
use crate::gateway::GatewayOptions;

async fn gateway_to(port: u16, tune: impl FnOnce(&mut DaemonConfig)) -> (TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = daemon_config(dir.path(), AuthConfig::default());
    tune(&mut config);
    let servers = vec![(
        server_config(&config, "echo", "/echo", no_oauth()),
        status(ServerState::Running, Some(port)),
    )];
    let gateway = Gateway::start(directory(servers), config, GatewayOptions::default()).await;
    (dir, gateway)
}

/// One client connection of its own, kept open while the sender lives.
async fn connection(gateway: &Gateway) -> SendRequest<TestBody> {
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A POST on `sender`'s connection, framed as `chunked` when asked (which the gateway hands to
/// hyper); its status once the whole answer is read.
async fn call(sender: &mut SendRequest<TestBody>, host: &str, chunked: bool) -> StatusCode {
    let payload = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let body = if chunked {
        // No length known up front: hyper's client sends it chunked.
        let frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(
            hyper::body::Frame::data(bytes::Bytes::from_static(payload.as_bytes())),
        )]);
        http_body_util::StreamBody::new(frames).boxed()
    } else {
        body(payload)
    };
    let request = Request::post("/api/v1/mcp/echo/mcp")
        .header("host", host)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    sender.ready().await.unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("the gateway answers in time")
        .unwrap();
    let status = response.status();
    tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the answer ends in time")
        .unwrap();
    status
}

#[tokio::test]
async fn a_burst_on_open_client_connections_connects_nothing() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port, |_| {}).await;
    let host = gateway.addr.to_string();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connection(&gateway).await);
    }
    // One at a time: a list shared by all would have served the eight with one connection.
    for client in &mut clients {
        assert_eq!(call(client, &host, false).await, StatusCode::OK);
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        8,
        "each client connection opened and kept its own upstream connection"
    );
    // All at once, twice: every call finds its client connection's upstream connection open.
    for _round in 0..2 {
        let calls = clients.iter_mut().map(|client| call(client, &host, false));
        for status in futures::future::join_all(calls).await {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        8,
        "the bursts opened no upstream connection"
    );
}

#[tokio::test]
async fn at_the_servers_cap_a_held_connection_serves_another_client() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port, |config| {
        config.gateway.limits.max_upstream_per_server = Some(2);
    })
    .await;
    let host = gateway.addr.to_string();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connection(&gateway).await);
    }
    // The first two hold the server's two places; the third takes one of theirs rather
    // than waiting for a place (or closing every idle connection to make one).
    for _round in 0..2 {
        for client in &mut clients {
            assert_eq!(call(client, &host, false).await, StatusCode::OK);
        }
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_connection_handed_to_hyper_lets_its_upstream_connection_go() {
    let upstream = Upstream::start().await;
    let (_dir, gateway) = gateway_to(upstream.port, |_| {}).await;
    let host = gateway.addr.to_string();
    let mut first = connection(&gateway).await;
    assert_eq!(call(&mut first, &host, false).await, StatusCode::OK);
    // A chunked body is hyper's to serve, and hyper's requests share the pool: the
    // connection the first request used is free for them and for every other client.
    assert_eq!(call(&mut first, &host, true).await, StatusCode::OK);
    let mut second = connection(&gateway).await;
    assert_eq!(call(&mut second, &host, false).await, StatusCode::OK);
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}
