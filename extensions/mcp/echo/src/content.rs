//! Prompts and resources, off by default (the tools never change): configured by
//! `MCP_ECHO_PROMPTS`, `MCP_ECHO_RESOURCES` and `MCP_ECHO_TEMPLATES` (comma-separated names,
//! URIs and URI templates), for tests of clients and gateways that aggregate them. Every
//! answer says which server gave it (`MCP_ECHO_LABEL`, default `mcp-echo`). A server with
//! none of them declares neither capability.

use rmcp::ErrorData;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, Prompt, PromptArgument, PromptMessage, ReadResourceRequestParams,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role,
};

/// What the server offers besides its tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct Content {
    pub label: &'static str,
    pub prompts: &'static [String],
    pub resources: &'static [String],
    pub templates: &'static [String],
}

impl Content {
    pub fn has_prompts(&self) -> bool {
        !self.prompts.is_empty()
    }

    pub fn has_resources(&self) -> bool {
        !self.resources.is_empty() || !self.templates.is_empty()
    }

    pub fn list_prompts(&self) -> ListPromptsResult {
        ListPromptsResult::with_all_items(
            self.prompts
                .iter()
                .map(|name| {
                    Prompt::new(
                        name.clone(),
                        Some(format!("Greets someone ({})", self.label)),
                        Some(vec![PromptArgument::new("who")]),
                    )
                })
                .collect(),
        )
    }

    pub fn get_prompt(
        &self,
        request: &GetPromptRequestParams,
    ) -> Result<GetPromptResult, ErrorData> {
        if !self.prompts.contains(&request.name) {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {:?}", request.name),
                None,
            ));
        }
        let who = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("who"))
            .and_then(|w| w.as_str())
            .unwrap_or("world");
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("{} from {}: hello {who}", request.name, self.label),
        )]))
    }

    pub fn list_resources(&self) -> ListResourcesResult {
        ListResourcesResult::with_all_items(
            self.resources
                .iter()
                .map(|uri| Resource::new(uri.clone(), uri.clone()).with_mime_type("text/plain"))
                .collect(),
        )
    }

    pub fn list_templates(&self) -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(
            self.templates
                .iter()
                .map(|template| ResourceTemplate::new(template.clone(), template.clone()))
                .collect(),
        )
    }

    /// A listed resource, or any URI (a template's expansion: not checked here).
    pub fn read(
        &self,
        request: &ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ErrorData> {
        if !self.resources.contains(&request.uri) && self.templates.is_empty() {
            return Err(ErrorData::resource_not_found(
                format!("no resource {:?}", request.uri),
                None,
            ));
        }
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            format!("{} read by {}", request.uri, self.label),
            request.uri.clone(),
        )]))
    }
}
