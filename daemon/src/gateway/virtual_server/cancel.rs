//! A client's `notifications/cancelled` passed on to the member running the call it names
//! (request ids are the client's own, and a member session serves one client session).

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Either, Limited};
use serde_json::Value;

use super::Context;
use super::call::{MAX_REFUSAL, member_request};
use crate::gateway::proxy;

/// Passes a client's `notifications/cancelled` on to the member running the call it names
/// (request ids are the client's own: a member session serves one client session). Anything
/// else about it is ignored, as the protocol says of cancellations.
pub(super) async fn cancel(context: &Context<'_>, headers: &HeaderMap, body: Bytes) {
    #[derive(serde::Deserialize)]
    struct Cancelled {
        params: CancelledParams,
    }
    #[derive(serde::Deserialize)]
    struct CancelledParams {
        #[serde(rename = "requestId")]
        request_id: Value,
    }
    let Ok(cancelled) = serde_json::from_slice::<Cancelled>(&body) else {
        return;
    };
    let request_id = cancelled.params.request_id.to_string();
    let links = &context.shared.virtuals.links;
    let Some((entry, link)) = links.take_call(context.session, &request_id) else {
        return;
    };
    let member_config = entry.config.load_full();
    let remote = member_config.remote.as_deref();
    let Some(port) = entry
        .status
        .load()
        .port
        .or(member_config.port)
        .or(remote.map(|_| 0))
    else {
        return;
    };
    let mut request = member_request(headers, &link, "notifications/cancelled", "", body);
    request.headers_mut().remove("mcp-name");
    let upstream = context.member_upstream(&member_config, &entry, port);
    let answer = proxy::forward(context.pool, upstream, request).await;
    if let Either::Right(body) = answer.into_body() {
        // Read to the end so the connection goes back to the pool.
        let _ = Limited::new(body, MAX_REFUSAL).collect().await;
    }
}
