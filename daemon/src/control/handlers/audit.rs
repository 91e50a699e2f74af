//! `audit`: the newest records of the audit log that pass the filter, then (with `follow`)
//! each new one as it is made; and the record of an operator's `mcpctl call`.
//!
//! Calls over the socket are not subject to `oauth.tools`: whoever may open the socket (root
//! and the socket's group) already controls the daemon. They are recorded all the same, with
//! the caller's uid.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mcpd_protocol::{
    AuditDecision, AuditRecord, AuditReply, AuditRequest, ErrorCode, LogGap, Response,
};
use tokio::sync::broadcast;

use super::{HandlerError, HandlerResult, Reply, follow};
use crate::audit::{self, AuditFilter, AuditLog, read_backlog};
use crate::control::Peer;
use crate::control::context::ControlContext;
use crate::mcp_client::McpError;

/// The most records one `audit` reply carries.
const MAX_LINES: u32 = 100_000;
/// How long `audit` waits at most for records already made to reach the file before reading
/// it (the writer answers within its batch window unless the host is starved).
const FLUSH_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn audit(ctx: &ControlContext, request: AuditRequest) -> HandlerResult {
    let Some(log) = ctx.audit.clone() else {
        return Err(HandlerError::new(
            ErrorCode::Unsupported,
            "this daemon keeps no audit log",
        ));
    };
    let filter = AuditFilter {
        server: request.server,
        tool: request.tool,
        since_unix_ms: request.since_unix_ms,
    };
    // Subscribe before reading, so no record falls between the backlog and the stream.
    let live = request.follow.then(|| log.subscribe());
    // Records made before this request are in the file before it is read.
    log.flush(FLUSH_WAIT).await;
    let limit = request.lines.min(MAX_LINES) as usize;
    let records = {
        let dir = log.config().dir.clone();
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || read_backlog(&dir, &filter, limit))
            .await
            .map_err(|e| {
                HandlerError::new(
                    ErrorCode::Internal,
                    format!("reading the audit log failed: {e}"),
                )
            })?
    };
    let Some(mut live) = live else {
        return Ok(Response::Audit(AuditReply {
            records,
            dropped: log.dropped(),
        })
        .into());
    };
    let caught_up = caught_up(&mut live, &records, &filter);
    let first = Response::Audit(AuditReply {
        records,
        dropped: log.dropped(),
    });
    let rest = futures::stream::iter(caught_up).chain(follow::frames(
        "audit",
        live,
        move |line: Arc<str>| {
            passes(&filter, &line).then(|| Response::AuditRecord(line.to_string()))
        },
    ));
    Ok(Reply::Follow {
        first,
        rest: Box::pin(rest),
    })
}

/// The records made while the backlog was read: already queued for the follower, and
/// perhaps also in the file. Those in `backlog` are not sent twice.
fn caught_up(
    live: &mut broadcast::Receiver<Arc<str>>,
    backlog: &[String],
    filter: &AuditFilter,
) -> Vec<Response> {
    let seen: HashSet<&str> = backlog.iter().map(String::as_str).collect();
    let mut frames = Vec::new();
    loop {
        match live.try_recv() {
            Ok(line) => {
                if !seen.contains(&*line) && passes(filter, &line) {
                    frames.push(Response::AuditRecord(line.to_string()));
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                frames.push(Response::LogGap(LogGap { skipped }));
            }
            Err(_) => return frames,
        }
    }
}

fn passes(filter: &AuditFilter, line: &str) -> bool {
    serde_json::from_str::<AuditRecord>(line).is_ok_and(|record| filter.matches(&record))
}

/// The start of an operator's `mcpctl call`, for its audit record.
pub(super) struct CallStart {
    time: String,
    ts: u64,
    started: Instant,
}

impl CallStart {
    pub fn now() -> Self {
        let (time, ts) = audit::now();
        CallStart {
            time,
            ts,
            started: Instant::now(),
        }
    }
}

/// Records an operator's `mcpctl call` of `tool` on `server`: allowed (the socket is the
/// operator's), status 0, the JSON-RPC error code or `isError` of the outcome; neither for a
/// call that got no answer (connection refused, timeout).
pub(super) fn record_call(
    log: &AuditLog,
    peer: &Peer,
    call: (&str, Option<&str>, &str, Option<String>),
    start: CallStart,
    outcome: &Result<serde_json::Value, McpError>,
) {
    let (server, member, tool, arguments) = call;
    let (error_code, is_error) = match outcome {
        Ok(result) => (
            None,
            Some(
                result
                    .get("isError")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
            ),
        ),
        Err(error) => (error.rpc_code(), None),
    };
    log.record(&AuditRecord {
        time: start.time,
        ts: start.ts,
        server: server.to_owned(),
        member: member.map(str::to_owned),
        tool: tool.to_owned(),
        subject: None,
        client_id: None,
        scopes: Vec::new(),
        decision: AuditDecision::Allow,
        status: 0,
        error_code,
        is_error,
        duration_ms: start.started.elapsed().as_secs_f64() * 1000.0,
        request_id: None,
        caller: peer
            .uid
            .map_or_else(|| "uid:unknown".to_owned(), |uid| format!("uid:{uid}")),
        via: "mcpctl".to_owned(),
        arguments,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_queued_during_the_read_are_sent_unless_in_the_backlog() {
        let line = |server: &str, tool: &str| {
            format!(
                r#"{{"time":"t","ts":1,"server":"{server}","tool":"{tool}","subject":null,"client_id":null,"scopes":[],"decision":"allow","status":0,"duration_ms":1.0,"request_id":null,"caller":"uid:0","via":"mcpctl"}}"#
            )
        };
        let (sender, mut live) = broadcast::channel::<Arc<str>>(16);
        let backlog = vec![line("db", "old"), line("db", "both")];
        for (server, tool) in [("db", "both"), ("web", "other"), ("db", "new")] {
            sender.send(Arc::from(line(server, tool))).unwrap();
        }
        sender.send(Arc::from("not a record")).unwrap();
        let filter = AuditFilter {
            server: Some("db".into()),
            ..AuditFilter::default()
        };
        let frames = caught_up(&mut live, &backlog, &filter);
        assert_eq!(frames, [Response::AuditRecord(line("db", "new"))]);
        // Drained: what comes next is new.
        assert!(live.try_recv().is_err());
    }

    #[test]
    fn a_follower_that_lagged_during_the_read_is_told() {
        let (sender, mut live) = broadcast::channel::<Arc<str>>(2);
        for n in 0..5 {
            sender.send(Arc::from(format!("x{n}"))).unwrap();
        }
        let frames = caught_up(&mut live, &[], &AuditFilter::default());
        assert_eq!(frames, [Response::LogGap(LogGap { skipped: 3 })]);
    }
}
