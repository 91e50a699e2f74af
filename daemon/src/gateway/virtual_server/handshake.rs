//! The lifecycle answers of a virtual server: `initialize` (with the sealed session id) and
//! 2026-07-28 `server/discover`, and the capabilities both declare.

use std::time::SystemTime;

use bytes::Bytes;
use http::Response;
use http::header::HeaderValue;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Context, SESSION_VERSIONS, STATELESS_VERSION, rpc_result};
use crate::config::VirtualConfig;
use crate::gateway::response::Body;
use crate::virtuals::seal::{self, SessionFacts, SessionKey};

#[derive(serde::Deserialize)]
struct InitializeRequest {
    #[serde(default)]
    params: Option<InitializeParams>,
}

#[derive(serde::Deserialize)]
struct InitializeParams {
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
}

pub(super) fn server_info(config: &VirtualConfig) -> Value {
    json!({ "name": config.name, "version": env!("CARGO_PKG_VERSION") })
}

/// The capabilities: tools always; prompts and resources when a running member offers them
/// (their changes are told to listeners), and resource subscriptions when a running member
/// takes them.
pub(super) fn capabilities(context: &Context<'_>) -> Value {
    let catalog = context.catalog();
    let mut capabilities = json!({ "tools": { "listChanged": true } });
    if catalog.prompts_declared {
        capabilities["prompts"] = json!({ "listChanged": true });
    }
    if catalog.resources_declared {
        capabilities["resources"] = json!({ "listChanged": true });
        if catalog.subscribe_declared {
            capabilities["resources"]["subscribe"] = json!(true);
        }
    }
    capabilities
}

pub(super) fn initialize(
    context: &Context<'_>,
    key: Option<&SessionKey>,
    principal: &str,
    id: Option<&RawValue>,
    body: &Bytes,
) -> Response<Body> {
    let config = &context.config;
    let asked = serde_json::from_slice::<InitializeRequest>(body)
        .ok()
        .and_then(|r| r.params)
        .and_then(|p| p.protocol_version);
    let version = asked
        .filter(|v| SESSION_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| SESSION_VERSIONS[0].to_owned());
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(context),
        "serverInfo": server_info(config),
    });
    if !config.description.is_empty() {
        result["instructions"] = Value::String(config.description.clone());
    }
    let mut answer = rpc_result(id, result);
    if let Some(key) = key {
        let facts = SessionFacts {
            protocol_version: version,
            principal: principal.to_owned(),
            issued_at: seal::unix_secs(SystemTime::now()),
            nonce: rand::random(),
            capabilities: crate::stdio::Capabilities::of_initialize(
                initialize_params(body).as_deref(),
            )
            .bits(),
        };
        if let Ok(value) = HeaderValue::try_from(key.seal(&config.name, &facts)) {
            answer.headers_mut().insert("mcp-session-id", value);
        }
    }
    answer
}

/// The raw params of an `initialize` body.
pub(super) fn initialize_params(body: &[u8]) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Request {
        params: Option<Box<RawValue>>,
    }
    serde_json::from_slice::<Request>(body).ok()?.params
}

pub(super) fn discover(context: &Context<'_>) -> Value {
    let config = &context.config;
    let mut versions = vec![STATELESS_VERSION];
    versions.extend_from_slice(SESSION_VERSIONS);
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": capabilities(context),
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": { "io.modelcontextprotocol/serverInfo": server_info(config) },
    });
    if !config.description.is_empty() {
        result["instructions"] = Value::String(config.description.clone());
    }
    result
}
