//! The JSON-RPC results the probe reads, as far as it needs them.

use serde::Deserialize;

use crate::directory::ToolInfo;

#[derive(Deserialize)]
pub(super) struct Discover {
    #[serde(rename = "supportedVersions", default)]
    pub(super) supported_versions: Vec<String>,
    #[serde(default)]
    pub(super) capabilities: Capabilities,
}

#[derive(Deserialize)]
pub(super) struct Initialized {
    #[serde(rename = "protocolVersion")]
    pub(super) protocol_version: String,
    #[serde(default)]
    pub(super) capabilities: Capabilities,
}

/// The capabilities the probe cares about besides tools: whether prompts and resources are
/// worth listing. A capability is declared by an object; anything else reads as not declared.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Capabilities {
    #[serde(default)]
    prompts: serde_json::Value,
    #[serde(default)]
    resources: serde_json::Value,
}

impl Capabilities {
    pub(super) fn prompts(&self) -> bool {
        self.prompts.is_object()
    }

    pub(super) fn resources(&self) -> bool {
        self.resources.is_object()
    }

    pub(super) fn subscribe(&self) -> bool {
        self.resources
            .get("subscribe")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    }
}

/// One page of `prompts/list`, `resources/list` or `resources/templates/list`.
#[derive(Deserialize)]
pub(super) struct OffersPage {
    #[serde(default)]
    pub(super) prompts: Vec<serde_json::Value>,
    #[serde(default)]
    pub(super) resources: Vec<serde_json::Value>,
    #[serde(rename = "resourceTemplates", default)]
    pub(super) templates: Vec<serde_json::Value>,
    #[serde(rename = "nextCursor", default)]
    pub(super) next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ToolsPage {
    pub(super) tools: Vec<ToolWire>,
    #[serde(rename = "nextCursor", default)]
    pub(super) next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ToolWire {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "inputSchema", default)]
    input_schema: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl ToolWire {
    pub(super) fn into_info(self) -> ToolInfo {
        ToolInfo {
            name: self.name,
            description: self.description,
            input_schema: serde_json::Value::Object(self.input_schema),
            extra: self.extra,
        }
    }
}

/// The tools of a `tools/list` result (one page), as the probe reads them; an entry that is
/// not a tool (no name) is skipped. Shared with the stdio runner's probe.
pub(crate) fn tools_of(result: &str) -> Vec<ToolInfo> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        tools: Vec<serde_json::Value>,
    }
    let Ok(page) = serde_json::from_str::<Page>(result) else {
        return Vec::new();
    };
    page.tools
        .into_iter()
        .filter_map(|tool| serde_json::from_value::<ToolWire>(tool).ok())
        .map(ToolWire::into_info)
        .collect()
}
