//! `mcpctl connect CLIENT [SERVER]`: each server's endpoint and OAuth settings from the
//! daemon, tokens minted on request, and the client's setup from `mcpd_protocol::connect`.

use std::time::Duration;

use mcpd_protocol::connect::{self, ClientKind, Target};
use mcpd_protocol::{Request, Response, ShowRequest, StatusRequest, TokenRequest};

use super::{CommandResult, Outcome, Output, pretty_json};
use crate::client::{Client, unexpected};

pub(super) async fn connect(
    client: &mut Client,
    out: &mut Output<'_>,
    kind: ClientKind,
    server: Option<String>,
    token_scopes: &[String],
    ttl: Duration,
) -> CommandResult {
    let names = match server {
        Some(name) => vec![name],
        None => {
            let reply = match client
                .request(&Request::Status(StatusRequest { name: None }))
                .await?
            {
                Response::Status(reply) => reply,
                other => return Err(unexpected(other).into()),
            };
            reply
                .servers
                .into_iter()
                .filter(|server| server.enabled)
                .map(|server| server.name)
                .collect()
        }
    };
    let mut targets = Vec::with_capacity(names.len());
    for name in names {
        let shown = match client.request(&Request::Show(ShowRequest { name })).await? {
            Response::Show(reply) => reply,
            other => return Err(unexpected(other).into()),
        };
        let token = if shown.oauth_required && !token_scopes.is_empty() {
            let request = Request::Token(TokenRequest {
                scopes: token_scopes.to_vec(),
                audience: Some(shown.oauth_audience.clone()),
                ttl_secs: ttl.as_secs(),
                subject: None,
            });
            match client.request(&request).await? {
                Response::Token(reply) => Some(reply.token),
                other => return Err(unexpected(other).into()),
            }
        } else {
            None
        };
        targets.push(Target {
            name: shown.status.name,
            url: shown.endpoint,
            oauth_required: shown.oauth_required,
            scopes: shown.oauth_scopes,
            audience: Some(shown.oauth_audience),
            token,
        });
    }
    let setup = connect::setup(kind, &targets);
    if out.json {
        let mut text = pretty_json(&setup.document)?;
        text.push('\n');
        out.out.write_all(text.as_bytes())?;
    } else {
        out.text(&connect::render_text(&setup))?;
    }
    Ok(Outcome::Success)
}
