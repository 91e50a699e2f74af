//! Prompts and resources through a virtual server: `prompts/list`, `resources/list` and
//! `resources/templates/list` answered from the members' cached lists (the catalog, so a
//! slow member never delays them), each entry shown only to callers the member admits;
//! `prompts/get` routed to the member by exposed name (sent with its own name) and
//! `resources/read` by URI: the member that listed it, else the one whose template matches
//! (two members' templates matching is refused, never guessed). Both are authorized by
//! `authz` under the member's and the virtual server's rules, like any read of a server, and
//! forwarded by `call::send`. Like plain servers, they leave no audit record.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{Value, json};

use super::call::{self, Route};
use super::{
    Context, INVALID_PARAMS, MEMBER_UNAVAILABLE, RESOURCE_NOT_FOUND, access, rpc_error, rpc_result,
};
use crate::authz::Decision;
use crate::directory::ServerState;
use crate::envelope::Message;
use crate::gateway::inspect;
use crate::gateway::registry::resource_metadata_url;
use crate::gateway::response::Body;
use crate::virtuals::offered::{Offered, route_uri};

/// `prompts/list`, `resources/list` or `resources/templates/list`: every entry of a member
/// that admits the caller, whole (a virtual server does not page); empty while no running
/// member declares them.
pub(super) fn list(context: &Context<'_>, message: &Message<'_>) -> Response<Body> {
    let catalog = context.catalog();
    let (map, field) = match message.method.as_deref() {
        Some("prompts/list") => (&catalog.prompts, "prompts"),
        Some("resources/list") => (&catalog.resources, "resources"),
        _ => (&catalog.templates, "resourceTemplates"),
    };
    let declared = if field == "prompts" {
        catalog.prompts_declared
    } else {
        catalog.resources_declared
    };
    let all = context.shared.directory.all();
    let claims = context.claims.as_deref();
    // No running member declares them (nor does the virtual server): an empty list, as a
    // server of tools alone answers.
    let entries: Vec<Value> = map
        .iter()
        .filter(|_| declared)
        .filter(|(_, offered)| {
            all.get(&offered.member)
                .is_some_and(|entry| access::admitted(claims, &entry.config.load().oauth))
        })
        .map(|(key, offered)| {
            let mut body = offered.body.clone();
            if field == "prompts" {
                body.insert("name".into(), Value::String(key.clone()));
            }
            Value::Object(body)
        })
        .collect();
    let mut result = json!({ field: entries });
    if context.stateless {
        result["resultType"] = json!("complete");
        result["ttlMs"] = json!(0);
        result["cacheScope"] = json!("private");
    }
    rpc_result(message.id, result)
}

/// `prompts/get` of an exposed prompt name.
pub(super) async fn get_prompt(
    context: &Context<'_>,
    message: &Message<'_>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let id = message.id;
    let exposed = message.name.as_deref().unwrap_or_default();
    let catalog = context.catalog();
    let Some(prompt) = catalog.prompts.get(exposed) else {
        let directory = &context.shared.directory;
        if let Some((member, state)) =
            super::unavailable::member_down(directory, &context.config, exposed)
        {
            return rpc_error(
                id,
                MEMBER_UNAVAILABLE,
                &format!("member server \"{member}\" of virtual server {name} is {state}"),
            );
        }
        if let Some(conflict) = catalog
            .conflicts
            .iter()
            .find(|c| c.kind == crate::virtuals::OfferKind::Prompt && c.exposed == exposed)
        {
            return rpc_error(id, INVALID_PARAMS, &conflict.describe(name));
        }
        return rpc_error(
            id,
            INVALID_PARAMS,
            &format!("unknown prompt \"{exposed}\" on virtual server {name}"),
        );
    };
    forward(context, message, headers, body, prompt, "prompts/get", true).await
}

/// `resources/read` of a URI.
pub(super) async fn read(
    context: &Context<'_>,
    message: &Message<'_>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let id = message.id;
    let Some(uri) = message.uri.as_deref() else {
        return rpc_error(id, INVALID_PARAMS, "resources/read needs params.uri");
    };
    let catalog = context.catalog();
    match route_uri(&catalog, uri) {
        Ok(Some(resource)) => {
            forward(
                context,
                message,
                headers,
                body,
                resource,
                "resources/read",
                false,
            )
            .await
        }
        Err(members) => rpc_error(
            id,
            INVALID_PARAMS,
            &format!(
                "virtual server {name}: the URI matches resource templates of servers {}; it is not read (exclude one of them, or read it at the member's own endpoint)",
                members
                    .iter()
                    .map(|m| format!("\"{m}\""))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ),
        Ok(None) if let Some(resource) = sole_member_resource(context, uri) => {
            forward(
                context,
                message,
                headers,
                body,
                &resource,
                "resources/read",
                false,
            )
            .await
        }
        Ok(None) => {
            if let Some(conflict) = catalog
                .conflicts
                .iter()
                .find(|c| c.kind == crate::virtuals::OfferKind::Resource && c.exposed == uri)
            {
                return rpc_error(id, INVALID_PARAMS, &conflict.describe(name));
            }
            if let Some((member, state)) = down_member_listing(context, uri) {
                return rpc_error(
                    id,
                    MEMBER_UNAVAILABLE,
                    &format!("member server \"{member}\" of virtual server {name} is {state}"),
                );
            }
            let answer = json!({
                "jsonrpc": "2.0",
                "id": super::id_value(id),
                "error": {
                    "code": RESOURCE_NOT_FOUND,
                    "message": format!("no member of virtual server {name} offers this resource"),
                    "data": { "uri": uri },
                },
            });
            super::json_answer(&answer)
        }
    }
}

/// A URI no member lists, in a virtual server of one member: that member's to answer. A
/// single-member virtual server publishes one server under a second name, and servers may
/// serve (and take subscriptions to) URIs they do not list; with two members or more, an
/// unlisted URI has no owner and is refused.
pub(super) fn sole_member_resource(context: &Context<'_>, uri: &str) -> Option<Offered> {
    match context.config.members.as_slice() {
        [only] => Some(Offered {
            member: only.clone(),
            original: uri.to_owned(),
            body: serde_json::Map::new(),
        }),
        _ => None,
    }
}

/// A member not running whose last list had `uri`, to say so.
fn down_member_listing(context: &Context<'_>, uri: &str) -> Option<(String, ServerState)> {
    let all = context.shared.directory.all();
    context.config.members.iter().find_map(|member| {
        let status = all.get(member)?.status.load();
        (status.state != ServerState::Running
            && status.offers.resources.iter().any(|r| r.key == uri))
        .then(|| (member.clone(), status.state))
    })
}

/// Authorizes and sends the request to the member that offers the prompt or resource.
async fn forward(
    context: &Context<'_>,
    message: &Message<'_>,
    headers: &HeaderMap,
    body: &Bytes,
    offered: &Offered,
    method: &'static str,
    rename: bool,
) -> Response<Body> {
    let name = context.config.name.as_str();
    let started = Instant::now();
    let Some(entry) = context.shared.directory.get(&offered.member) else {
        return rpc_error(
            message.id,
            MEMBER_UNAVAILABLE,
            &format!(
                "member server \"{}\" of virtual server {name} is not configured",
                offered.member
            ),
        );
    };
    let member_config = entry.config.load_full();
    let claims = context.claims.as_deref();
    if let Decision::Deny { allowing } =
        access::decide_read(claims, &context.config, &member_config.oauth, message)
    {
        let metadata = resource_metadata_url(&context.live.config.gateway.public_url, name);
        return inspect::insufficient_scope(name, &[(message, allowing)], metadata);
    }
    let route = Route {
        method,
        member: &offered.member,
        target: &offered.original,
        rename,
        audit: false,
    };
    call::send(
        context,
        message,
        headers,
        body,
        &entry,
        &member_config,
        &route,
        started,
    )
    .await
}
