//! `ask`, a tool that asks the client's model (`sampling/createMessage`) and returns its
//! answer: for tests of requests a server sends back to its client through a proxy. Offered
//! only with `MCP_ECHO_ASK=1`. A 2026-07-28 request is asked with an `input_required` result
//! instead (sampling requests on a stream are gone from that version).

// Sampling is what this tool exists to exercise; 2026-07-28 deprecates it (SEP-2577).
#![allow(deprecated)]

use rmcp::handler::server::tool::InputResponses;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, InputRequest, InputRequests, InputRequiredResult, ProtocolVersion,
    SamplingMessage,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, schemars, tool, tool_router};
use serde::Deserialize;

use crate::server::Echo;

/// The key of the sampling request in a 2026-07-28 `input_required` result.
const INPUT_KEY: &str = "llm";

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
        InputResponses(responses): InputResponses,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 16);
        let stateless = ctx
            .protocol_version()
            .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
        let answer = if stateless {
            // 2026-07-28: ask with an `input_required` result, answered by the client's retry.
            match responses.and_then(|mut responses| responses.remove(INPUT_KEY)) {
                Some(answer) => answer,
                None => {
                    let mut requests = InputRequests::new();
                    requests.insert(
                        INPUT_KEY.to_owned(),
                        InputRequest::CreateMessage(CreateMessageRequest::new(params)),
                    );
                    return Ok(InputRequiredResult::new(Some(requests), None).into());
                }
            }
        } else {
            let answer = ctx.peer.create_message(params).await.map_err(|err| {
                ErrorData::internal_error(format!("sampling failed: {err}"), None)
            })?;
            serde_json::to_value(&answer)
                .map_err(|err| ErrorData::internal_error(err.to_string(), None))?
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(answer.to_string())]).into())
    }
}
