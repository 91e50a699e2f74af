//! The control socket: accepts `mcpctl` connections and hands each request to its handler.
//!
//! Binding ([`ControlListener::bind`]) is separate from serving ([`serve`]) so the daemon can
//! bind before it announces readiness. Each connection starts with the `Hello` handshake, then
//! carries any number of request/response frames; `logs --follow` turns it into a stream.
//! A client that is silent, slow, malformed or gone only ever ends its own connection.

mod connection;
mod context;
mod convert;
mod handlers;
mod listener;
mod private_dir;

use std::sync::Arc;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use context::{ConfigReloader, ControlContext, ControlLimits, ReloadOutcome, Reloader};
pub use listener::{BindError, ControlListener};

/// The credentials of a connected client, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}

impl Peer {
    fn of(stream: &Stream) -> Peer {
        match stream.peer_creds() {
            Ok(creds) => Peer {
                uid: creds.euid(),
                gid: creds.egid(),
                pid: creds.pid(),
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the control client's credentials");
                Peer::default()
            }
        }
    }
}

/// Serves the control socket until `shutdown` is cancelled, then stops accepting, removes the
/// socket file, ends open connections and waits (at most `limits.drain_timeout`) for them.
pub async fn serve(listener: ControlListener, ctx: ControlContext, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    tracing::info!(path = %listener.path().display(), "control socket listening");
    let mut accept_errors = crate::accept::AcceptErrors::new("control socket");
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Usually EMFILE: pause briefly instead of spinning, but stay responsive to shutdown.
                if accept_errors.failed(&e, std::time::Instant::now()) {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(crate::accept::PAUSE) => {}
                    }
                }
                continue;
            }
        };
        let permit = slots.clone().try_acquire_owned();
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            match permit {
                Ok(_permit) => {
                    tokio::select! {
                        () = connection::handle(stream, &ctx) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(_) => connection::refuse_busy(stream, &ctx).await,
            }
        });
    }
    let path = listener.path().to_owned();
    drop(listener);
    tracker.close();
    if tokio::time::timeout(ctx.limits.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("control connections still open after the drain timeout");
    }
    tracing::info!(path = %path.display(), "control socket closed");
}

#[cfg(test)]
mod tests;
