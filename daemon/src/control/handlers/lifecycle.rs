//! Requests that change what runs: `start`, `stop`, `restart`, `reload`.

use mcpd_protocol::{
    ActionOutcome, ActionsReply, ErrorCode, ReloadReply, ReloadRequest, Response, RestartRequest,
    RestartTarget, StartRequest, StopRequest,
};

use super::{HandlerError, HandlerResult};
use crate::control::context::ControlContext;
use crate::control::convert;
use crate::directory::ServerState;
use crate::supervisor::SupervisorError;

/// One server's outcome; an unknown name fails the whole request instead.
fn outcome(
    server: &str,
    result: Result<(), SupervisorError>,
) -> Result<ActionOutcome, HandlerError> {
    match result {
        Ok(()) => Ok(ActionOutcome {
            server: server.to_owned(),
            ok: true,
            error: None,
        }),
        Err(SupervisorError::UnknownServer(name)) => Err(HandlerError::unknown_server(&name)),
        Err(e) => Ok(ActionOutcome {
            server: server.to_owned(),
            ok: false,
            error: Some(e.to_string()),
        }),
    }
}

fn actions(action: &str, outcomes: Vec<ActionOutcome>) -> HandlerResult {
    Ok(Response::Actions(ActionsReply {
        action: action.to_owned(),
        outcomes,
    })
    .into())
}

pub(super) async fn start(ctx: &ControlContext, request: StartRequest) -> HandlerResult {
    let result = ctx.supervisor.start_server(&request.name).await;
    actions("start", vec![outcome(&request.name, result)?])
}

pub(super) async fn stop(ctx: &ControlContext, request: StopRequest) -> HandlerResult {
    let result = ctx.supervisor.stop_server(&request.name).await;
    actions("stop", vec![outcome(&request.name, result)?])
}

pub(super) async fn restart(ctx: &ControlContext, request: RestartRequest) -> HandlerResult {
    let names: Vec<String> = match request.target {
        RestartTarget::One(name) => vec![name],
        RestartTarget::All => ctx
            .supervisor
            .directory()
            .all()
            .iter()
            .filter(|(_, entry)| entry.status.load().state != ServerState::Disabled)
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let restarts = names.iter().map(|name| ctx.supervisor.restart_server(name));
    let results = futures::future::join_all(restarts).await;
    let outcomes = names
        .iter()
        .zip(results)
        .map(|(name, result)| outcome(name, result))
        .collect::<Result<Vec<_>, _>>()?;
    actions("restart", outcomes)
}

pub(super) async fn reload(ctx: &ControlContext, request: ReloadRequest) -> HandlerResult {
    let outcome = ctx
        .reloader
        .reload(request.dry_run)
        .await
        .map_err(|message| {
            HandlerError::new(ErrorCode::Internal, format!("reload failed: {message}"))
        })?;
    Ok(Response::Reload(ReloadReply {
        dry_run: request.dry_run,
        changes: convert::plan(&outcome.plan),
        config_errors: outcome
            .config_errors
            .iter()
            .map(convert::config_error)
            .collect(),
    })
    .into())
}
