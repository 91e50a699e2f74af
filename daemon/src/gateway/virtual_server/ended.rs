//! A caller's session ended (DELETE): each member session opened for it is ended at its member
//! too, so the member frees it now rather than when it expires, as a client of the member would.

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Either, Limited};

use super::Context;
use super::call::{MAX_REFUSAL, member_request};
use super::links::MemberSession;
use crate::directory::ServerState;
use crate::gateway::proxy;

/// Sends DELETE with each member session's id to its member, all at once, each within the
/// member's health timeout. A member that restarted since (its sessions died with the old
/// process) or is no longer configured is skipped; a failure is logged, never the caller's.
pub(super) async fn end_member_sessions(
    context: &Context<'_>,
    headers: &HeaderMap,
    sessions: Vec<MemberSession>,
) {
    let ends = sessions
        .into_iter()
        .map(|session| end_member_session(context, headers, session));
    futures::future::join_all(ends).await;
}

async fn end_member_session(context: &Context<'_>, headers: &HeaderMap, session: MemberSession) {
    let name = context.config.name.as_str();
    let member = session.member.as_str();
    let Some(entry) = context.shared.directory.get(member) else {
        return;
    };
    let status = entry.status.load_full();
    if status.state != ServerState::Running || status.started_at != session.started_at {
        return;
    }
    let member_config = entry.config.load_full();
    let remote = member_config.remote.as_deref();
    let Some(port) = status.port.or(member_config.port).or(remote.map(|_| 0)) else {
        return;
    };
    let mut request = member_request(headers, &session.link, "", "", Bytes::new());
    *request.method_mut() = Method::DELETE;
    let out = request.headers_mut();
    out.remove(http::header::CONTENT_TYPE);
    out.remove(http::header::ACCEPT);
    let upstream = context.member_upstream(&member_config, &entry, port);
    let sent = async {
        let answer = proxy::forward(context.pool, upstream, request).await;
        let status = answer.status();
        if let Either::Right(body) = answer.into_body() {
            // Read to the end so the connection goes back to the pool.
            let _ = Limited::new(body, MAX_REFUSAL).collect().await;
        }
        status
    };
    match tokio::time::timeout(member_config.health.timeout, sent).await {
        // 404: the member had already forgotten it; 405: it does not let clients end sessions.
        Ok(status) if status.is_success() || status.as_u16() == 404 || status.as_u16() == 405 => {
            tracing::debug!(server = name, member, %status, "member session ended");
        }
        Ok(status) => {
            tracing::info!(server = name, member, %status, "member refused to end a session");
        }
        Err(_) => {
            tracing::info!(
                server = name,
                member,
                "member did not answer the end of a session in time"
            );
        }
    }
}
