//! `logs`: a server's recent lines, then (with `follow`) every new line.

use mcpd_protocol::{LogsReply, LogsRequest, Response};

use super::{HandlerResult, Reply, follow};
use crate::control::context::ControlContext;
use crate::control::convert;

/// The most lines one `logs` reply carries.
const MAX_LINES: u32 = 100_000;

pub(super) fn logs(ctx: &ControlContext, request: LogsRequest) -> HandlerResult {
    // Subscribe before taking the backlog, so no line falls between the two (one may appear
    // in both).
    let follow = if request.follow {
        Some(ctx.supervisor.follow_logs(&request.name)?)
    } else {
        None
    };
    let lines = ctx
        .supervisor
        .logs(&request.name, request.lines.min(MAX_LINES) as usize)?;
    let first = Response::Logs(LogsReply {
        server: request.name,
        lines: lines.iter().map(convert::log_line).collect(),
    });
    Ok(match follow {
        Some(lines) => Reply::Follow {
            first,
            rest: follow::frames("logs", lines, |line| {
                Some(Response::LogLine(convert::log_line(&line)))
            }),
        },
        None => Reply::One(first),
    })
}
