//! One handler per request. `dispatch` is the only `match` over [`Request`]; each arm calls a
//! small function in the file of its concern.

mod audit;
mod follow;
mod inspect;
mod lifecycle;
mod logs;
mod mcp;
mod token;

use mcpd_protocol::{ErrorCode, ErrorReply, Request, Response};

use super::Peer;
use super::context::ControlContext;
use crate::supervisor::SupervisorError;

pub(super) use follow::Frames;

/// What a handler answers: one frame, or one frame followed by a stream of frames
/// (`logs --follow`, `audit --follow`) that lasts until the client leaves.
pub(super) enum Reply {
    One(Response),
    Follow { first: Response, rest: Frames },
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::One(response)
    }
}

/// A failed request: becomes a `Response::Error` frame.
#[derive(Debug)]
pub(super) struct HandlerError {
    pub code: ErrorCode,
    pub message: String,
}

impl HandlerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HandlerError {
            code,
            message: message.into(),
        }
    }

    pub fn unknown_server(name: &str) -> Self {
        HandlerError::new(
            ErrorCode::UnknownServer,
            format!("no server named {name:?}; see `mcpctl list`"),
        )
    }
}

impl From<SupervisorError> for HandlerError {
    fn from(error: SupervisorError) -> Self {
        let code = match &error {
            SupervisorError::UnknownServer(_) => ErrorCode::UnknownServer,
            SupervisorError::Disabled { .. } => ErrorCode::Unsupported,
            SupervisorError::ShuttingDown => ErrorCode::Busy,
            SupervisorError::Other(_) => ErrorCode::Internal,
        };
        HandlerError::new(code, error.to_string())
    }
}

pub(super) type HandlerResult = Result<Reply, HandlerError>;

/// Hands `request` to its handler and turns a failure into an error frame.
pub(super) async fn dispatch(ctx: &ControlContext, peer: &Peer, request: Request) -> Reply {
    if request.is_mutating() {
        // Mutating requests carry names, scopes and flags, never secrets.
        tracing::info!(
            request = request.name(),
            detail = ?request,
            uid = ?peer.uid,
            gid = ?peer.gid,
            pid = ?peer.pid,
            "control request"
        );
    } else {
        tracing::debug!(request = request.name(), pid = ?peer.pid, "control request");
    }
    let result = match request {
        Request::Hello(_) => Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            "Hello was already exchanged",
        )),
        Request::List(_) => inspect::list(ctx),
        Request::Status(r) => inspect::status(ctx, r),
        Request::Show(r) => inspect::show(ctx, r),
        Request::Tools(r) => inspect::tools(ctx, r),
        Request::ListPackages(_) => inspect::packages(ctx),
        Request::Call(r) => mcp::call(ctx, peer, r).await,
        Request::Test(r) => mcp::test(ctx, r).await,
        Request::Validate(r) => mcp::validate(ctx, r).await,
        Request::Logs(r) => logs::logs(ctx, r),
        Request::Start(r) => lifecycle::start(ctx, r).await,
        Request::Stop(r) => lifecycle::stop(ctx, r).await,
        Request::Restart(r) => lifecycle::restart(ctx, r).await,
        Request::Reload(r) => lifecycle::reload(ctx, r).await,
        Request::Token(r) => token::token(ctx, r).await,
        Request::Audit(r) => audit::audit(ctx, r).await,
    };
    result.unwrap_or_else(|e| {
        Reply::One(Response::Error(ErrorReply {
            code: e.code,
            message: e.message,
        }))
    })
}
