//! `ask`, a tool that asks the client's model (`sampling/createMessage`) and returns its
//! answer: for tests of requests a server sends back to its client through a proxy. Offered
//! only with `MCP_ECHO_ASK=1`.

// Sampling is what this tool exists to exercise; 2026-07-28 deprecates it (SEP-2577).
#![allow(deprecated)]

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CreateMessageRequestParams, SamplingMessage};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, schemars, tool, tool_router};
use serde::Deserialize;

use crate::server::Echo;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AskArgs {
    /// What to ask the client's model.
    pub prompt: String,
}

#[tool_router(router = ask_router, vis = "pub(crate)")]
impl Echo {
    #[tool(description = "Asks the client's model (sampling) and returns what it answered")]
    async fn ask(
        &self,
        Parameters(AskArgs { prompt }): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 16);
        let answer =
            ctx.peer.create_message(params).await.map_err(|err| {
                ErrorData::internal_error(format!("sampling failed: {err}"), None)
            })?;
        serde_json::to_string(&answer)
            .map_err(|err| ErrorData::internal_error(err.to_string(), None))
    }
}
