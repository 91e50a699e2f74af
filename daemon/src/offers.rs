//! What a server offers besides tools, as its probe last listed them: prompts, resources and
//! resource templates, and the capabilities it declared for them. Kept in the directory
//! beside the tools; read by virtual servers, which offer the union of their members'.
//!
//! Each entry is kept as the server wrote it (an object), with the key it is routed by taken
//! out: a prompt's `name`, a resource's `uri`, a template's `uriTemplate`.

use serde_json::{Map, Value};

/// Most entries of one kind kept per server; a longer list is refused whole (the last good
/// one is kept).
pub const MAX_ENTRIES: usize = 10_000;

/// One prompt, resource or template.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferEntry {
    /// The prompt's name, the resource's URI or the template's URI template.
    pub key: String,
    /// Everything the server said of it (the key included).
    pub body: Map<String, Value>,
}

/// The prompts and resources of one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offers {
    /// The server declared the `prompts` capability.
    pub prompts_declared: bool,
    /// The server declared the `resources` capability.
    pub resources_declared: bool,
    /// It declared `resources.subscribe: true`.
    pub subscribe: bool,
    pub prompts: Vec<OfferEntry>,
    pub resources: Vec<OfferEntry>,
    pub templates: Vec<OfferEntry>,
}

impl Offers {
    /// True when the server declared neither capability (nothing to list).
    pub fn declares_nothing(&self) -> bool {
        !self.prompts_declared && !self.resources_declared
    }
}

/// The entries of one page (`items` is the array under `prompts`, `resources` or
/// `resourceTemplates`): objects with a string `key_field`; anything else is skipped.
pub fn entries_of(items: Vec<Value>, key_field: &str) -> Vec<OfferEntry> {
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Object(body) => {
                let key = body.get(key_field)?.as_str()?.to_owned();
                Some(OfferEntry { key, body })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_without_a_string_key_are_skipped() {
        let items = vec![
            json!({"name": "a", "description": "x"}),
            json!({"name": 3}),
            json!("not an object"),
            json!({"title": "no name"}),
        ];
        let entries = entries_of(items, "name");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].body["description"], "x");
    }
}
