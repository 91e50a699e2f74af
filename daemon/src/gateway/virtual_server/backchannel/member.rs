//! How mcpd reaches the member of a call again: to answer its requests (an error, or a
//! caller's answer forwarded under the member's id) in the call's member session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Either, Limited};
use serde_json::Value;

use super::super::call::{MAX_REFUSAL, member_request};
use super::super::{Context, accepted, passed_on};
use super::NOT_RELAYED;
use crate::config::ServerConfig;
use crate::directory::ServerEntry;
use crate::gateway::auth::Claims;
use crate::gateway::proxy::{self, Upstream};
use crate::gateway::response::{self, Body};
use crate::gateway::upstream::Pool;
use crate::probe_client::Link;

/// How to reach the member of a call again, to answer its requests.
#[derive(Debug)]
pub(in super::super) struct MemberRoute {
    /// The member's config (its name, path, remote target) when the call was made.
    pub member: Arc<ServerConfig>,
    pub port: u16,
    pub link: Link,
    pub entry: Arc<ServerEntry>,
    pub pool: Arc<Pool>,
    pub peer: SocketAddr,
    pub host: Option<HeaderValue>,
    pub trusted_peer: bool,
    pub max_body: u64,
    pub header_timeout: Duration,
    pub retry_after_secs: u64,
    pub claims: Option<Arc<Claims>>,
    pub headers: HeaderMap,
}

impl MemberRoute {
    /// POSTs one JSON-RPC message (an answer) to the member in the call's member session;
    /// the member's HTTP status.
    pub(super) async fn send(&self, message: &Value) -> StatusCode {
        let body = Bytes::from(message.to_string());
        let mut request = member_request(&self.headers, &self.link, "", "", body);
        request.headers_mut().remove("mcp-name");
        request.headers_mut().remove("mcp-method");
        let answer = self.forward(request).await;
        let status = answer.status();
        if let Either::Right(body) = answer.into_body() {
            // Read to the end so the connection goes back to the pool.
            let _ = Limited::new(body, MAX_REFUSAL).collect().await;
        }
        status
    }

    /// Sends `request` to the member over the pool; its answer, streaming.
    pub(in super::super) async fn forward(
        &self,
        request: http::Request<crate::gateway::proxy::ForwardBody>,
    ) -> Response<Body> {
        let upstream = Upstream {
            server: &self.member.name,
            port: self.port,
            path: &self.member.path,
            peer: self.peer,
            host: self.host.clone(),
            trusted_peer: self.trusted_peer,
            proto: "http",
            max_body: self.max_body,
            header_timeout: self.header_timeout,
            retry_after_secs: self.retry_after_secs,
            claims: self.claims.as_deref(),
            check_now: &self.entry.check_now,
            remote: self.member.remote.as_deref(),
        };
        proxy::forward(&self.pool, upstream, request).await
    }

    /// Answers the member's request `id` with a JSON-RPC error.
    pub(super) async fn refuse(&self, id: &Value, message: &str) {
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": NOT_RELAYED, "message": message },
        });
        let status = self.send(&error).await;
        if !status.is_success() {
            tracing::debug!(member = %self.member.name, %status, "the member did not take mcpd's answer to its request");
        }
    }
}

#[cfg(test)]
impl MemberRoute {
    /// A route to a member `m` on port 1 that is never used.
    pub fn for_tests(link: Link) -> Self {
        use crate::config::test_builder::{daemon_config, server_config};
        use crate::directory::{ServerState, ServerStatus};
        let config = server_config(&daemon_config(std::path::Path::new("/tmp")), "m");
        let second = Duration::from_secs(1);
        MemberRoute {
            member: Arc::new(config.clone()),
            port: 1,
            link,
            entry: Arc::new(ServerEntry::new(
                config,
                ServerStatus::new(ServerState::Running),
            )),
            pool: Arc::new(Pool::new(
                second,
                second,
                second,
                Arc::new(crate::gateway::upstream::Caps::new(1, 1, second)),
            )),
            peer: "127.0.0.1:1".parse().expect("an address"),
            host: None,
            trusted_peer: false,
            max_body: 1 << 20,
            header_timeout: second,
            retry_after_secs: 1,
            claims: None,
            headers: HeaderMap::new(),
        }
    }
}

/// The route to the member of the call being forwarded.
pub(in super::super) fn route(
    context: &Context<'_>,
    headers: &HeaderMap,
    entry: &Arc<ServerEntry>,
    member: &Arc<ServerConfig>,
    port: u16,
    link: Link,
) -> MemberRoute {
    let gateway = &context.live.config.gateway;
    MemberRoute {
        member: member.clone(),
        port,
        link,
        entry: entry.clone(),
        pool: context.pool.clone(),
        peer: context.peer,
        host: context.host.clone(),
        trusted_peer: gateway.trusts(context.peer.ip()),
        max_body: gateway.max_body,
        header_timeout: context.shared.options.upstream_header_timeout,
        retry_after_secs: context.shared.options.retry_after_secs,
        claims: context.claims.clone(),
        headers: passed_on(headers),
    }
}

/// A caller's POST of a JSON-RPC response: the answer to a relayed request, forwarded to the
/// member; refused (400) when no request of its session waits under that id.
pub(in super::super) async fn answer(
    context: &Context<'_>,
    has_session: bool,
    body: &[u8],
) -> Response<Body> {
    let name = context.config.name.as_str();
    let refuse = |why: &str| {
        tracing::info!(
            server = name,
            reason = why,
            "refused a client's answer to a request it was not sent"
        );
        response::error(StatusCode::BAD_REQUEST, why, Some(name))
    };
    let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
        return refuse("the answer is not a JSON object");
    };
    let Some(id) = message["id"].as_u64() else {
        return refuse("no request of a member is waiting for an answer with this id");
    };
    let relays = &context.shared.virtuals.relays;
    let relayed = {
        let mut waiting = relays.lock();
        match waiting.get(&id) {
            None => return refuse("no request of a member is waiting for an answer with this id"),
            Some(relayed) if !has_session || relayed.session != context.session => {
                return refuse("this request of a member was sent to another session");
            }
            Some(_) => waiting.remove(&id).expect("found above"),
        }
    };
    message["id"] = relayed.member_id;
    let status = relayed.member.send(&message).await;
    if status.is_success() {
        accepted()
    } else {
        response::error(
            StatusCode::BAD_GATEWAY,
            &format!(
                "member server \"{}\" refused the answer ({})",
                relayed.member.member.name,
                status.as_u16()
            ),
            Some(name),
        )
    }
}
