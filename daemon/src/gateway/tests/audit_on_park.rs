//! The gateway's worker threads write the audit log's batches themselves when they have
//! nothing else to do: through `serve_workers`, with an audit thread that would not write
//! within a day, every record still reaches the file.

use std::time::Duration;

use http::{Method, Request};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::audit::{AuditCounters, AuditLog, Options};
use crate::config::AuthConfig;
use crate::directory::ServerState;
use crate::gateway::{Authenticator, GatewayContext, GatewayOptions, serve_workers};

#[tokio::test]
async fn a_gateway_worker_about_to_sleep_writes_the_audit_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), AuthConfig::default());
    let upstream = Upstream::start().await;
    let server = server_config(&config, "echo", "/echo", no_oauth());
    let directory = directory(vec![(
        server,
        status(ServerState::Running, Some(upstream.port)),
    )]);
    let counters = AuditCounters::default();
    let audit = AuditLog::with_options(
        &config.logs,
        counters.clone(),
        Options {
            window: Duration::from_secs(24 * 3600),
            ..Options::default()
        },
    );
    let keys = Authenticator::load(&config.auth).unwrap();
    let ctx = GatewayContext::from_parts(directory, config, keys, GatewayOptions::default(), None)
        .with_audit(audit.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/mcp/echo/mcp",
        listener.local_addr().unwrap()
    );
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(serve_workers(listener, ctx, shutdown.clone(), 1));

    let calls = crate::audit::WORKER_BATCH;
    let client = client();
    for id in 0..calls {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body(call))
            .unwrap();
        let (status, _, answer) = send(&client, request).await;
        assert_ok(status, &answer);
    }
    let path = dir.path().join("logs/audit.log");
    let written = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // The worker parks once the last call's record is queued, and writes the batch then.
    let waited = tokio::time::timeout(WAIT, async {
        while written() < calls {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{} of {calls} records written", written());
    assert_eq!(
        (
            counters.batches_by_gateway.get(),
            counters.batches_by_thread.get()
        ),
        (1, 0),
        "one batch, written by the worker"
    );
    shutdown.cancel();
    tokio::time::timeout(WAIT, gateway)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
