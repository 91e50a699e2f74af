//! The JSON-RPC results the probe reads, as far as it needs them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

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

/// One tool of a list: `name` and `description` read, `inputSchema` (an object; `{}` when
/// missing) and the other fields kept as the JSON text the server sent.
pub(super) struct ToolWire(ToolInfo);

impl<'de> Deserialize<'de> for ToolWire {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = BTreeMap::<String, Box<RawValue>>::deserialize(deserializer)?;
        let name = fields
            .remove("name")
            .ok_or_else(|| D::Error::missing_field("name"))?;
        let name: String = serde_json::from_str(name.get()).map_err(D::Error::custom)?;
        let description = match fields.remove("description") {
            Some(raw) => {
                serde_json::from_str::<Option<String>>(raw.get()).map_err(D::Error::custom)?
            }
            None => None,
        };
        let input_schema = match fields.remove("inputSchema") {
            Some(raw) if raw.get().trim_start().starts_with('{') => raw,
            Some(_) => return Err(D::Error::custom("inputSchema is not an object")),
            None => RawValue::from_string("{}".to_owned()).map_err(D::Error::custom)?,
        };
        let extra = match fields.is_empty() {
            true => None,
            false => Some(serde_json::value::to_raw_value(&fields).map_err(D::Error::custom)?),
        };
        Ok(ToolWire(ToolInfo {
            name,
            description,
            input_schema,
            extra,
        }))
    }
}

impl ToolWire {
    pub(super) fn into_info(self) -> ToolInfo {
        self.0
    }
}

/// The tools of a `tools/list` result (one page), as the probe reads them; an entry that is
/// not a tool (no name) is skipped. Shared with the stdio runner's probe.
pub(crate) fn tools_of(result: &str) -> Vec<ToolInfo> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        tools: Vec<Box<RawValue>>,
    }
    let Ok(page) = serde_json::from_str::<Page>(result) else {
        return Vec::new();
    };
    page.tools
        .into_iter()
        .filter_map(|tool| serde_json::from_str::<ToolWire>(tool.get()).ok())
        .map(ToolWire::into_info)
        .collect()
}
