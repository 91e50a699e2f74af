//! The tools a virtual server offers: each member's tool `t` of server `s` is exposed as
//! `s<separator>t` (or `t` with `prefix: never`), kept when it passes the `tools` filter.
//! An exposed name must match `^[a-zA-Z0-9_-]{1,64}$` (the common LLM rule, stricter than
//! SEP-986's `[A-Za-z0-9._-]{1,128}`). A name produced twice, or one that breaks the rule,
//! is never resolved silently: every source of it is left out and reported as a conflict.
//! Routing uses the map built here, never a split of the name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{PrefixMode, VirtualConfig};
use crate::directory::ToolInfo;

/// Longest exposed tool name.
pub const MAX_EXPOSED: usize = 64;

/// One exposed tool: which member serves it, under which name.
#[derive(Debug, Clone)]
pub struct ExposedTool {
    pub member: String,
    /// The member's own name of the tool.
    pub original: String,
    pub info: ToolInfo,
}

/// An exposed name (or URI) left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What was left out: a tool, a prompt, a resource or a resource template.
    pub kind: OfferKind,
    pub exposed: String,
    /// `(member, its own name or URI)` of every source.
    pub sources: Vec<(String, String)>,
    pub reason: ConflictReason,
}

/// What a virtual server offers of its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    Tool,
    Prompt,
    Resource,
    Template,
}

impl OfferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferKind::Tool => "tool",
            OfferKind::Prompt => "prompt",
            OfferKind::Resource => "resource",
            OfferKind::Template => "resource template",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    /// Two or more members produce the name.
    Collision,
    /// The name is longer than [`MAX_EXPOSED`] or holds a character outside `[A-Za-z0-9_-]`
    /// (for a URI: empty, over [`crate::virtuals::offered::MAX_URI`] bytes, or holding a
    /// control character).
    InvalidName,
}

impl Conflict {
    /// One line for `mcpctl status` and `mcpctl validate`.
    pub fn describe(&self, virtual_name: &str) -> String {
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|(member, tool)| {
                format!("{} \"{tool}\" of server \"{member}\"", self.kind.as_str())
            })
            .collect();
        let kind = self.kind.as_str();
        match (self.reason, self.kind) {
            (ConflictReason::Collision, OfferKind::Resource | OfferKind::Template) => format!(
                "virtual server {virtual_name}: {kind} \"{}\" is offered by servers {}; both are left out (a URI must come from one member: exclude one of them)",
                self.exposed,
                self.sources
                    .iter()
                    .map(|(member, _)| format!("\"{member}\""))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            (ConflictReason::InvalidName, OfferKind::Resource | OfferKind::Template) => format!(
                "virtual server {virtual_name}: {kind} \"{}\" of server \"{}\" is not a usable URI (empty, longer than {} bytes, or holding a control character); it is left out",
                self.exposed,
                self.sources
                    .first()
                    .map_or("", |(member, _)| member.as_str()),
                crate::virtuals::offered::MAX_URI
            ),
            (ConflictReason::Collision, _) => format!(
                "virtual server {virtual_name}: \"{}\" is produced by {}; both are left out (rename a tool, exclude a member or filter with `tools`)",
                self.exposed,
                sources.join(" and ")
            ),
            (ConflictReason::InvalidName, _) => format!(
                "virtual server {virtual_name}: exposed name \"{}\" of {} is not 1-{MAX_EXPOSED} characters of A-Z, a-z, 0-9, `_`, `-`; it is left out",
                self.exposed,
                sources.join(" and ")
            ),
        }
    }
}

/// The exposed tools of a virtual server, by exposed name, its prompts and resources
/// (`offered.rs`), and its conflicts.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tools: BTreeMap<String, ExposedTool>,
    /// Prompts by exposed name.
    pub prompts: BTreeMap<String, super::offered::Offered>,
    /// Resources by URI.
    pub resources: BTreeMap<String, super::offered::Offered>,
    /// Resource templates by URI template.
    pub templates: BTreeMap<String, super::offered::Offered>,
    pub conflicts: Vec<Conflict>,
    /// Some running member declared prompts (or resources): the virtual server declares them.
    pub prompts_declared: bool,
    pub resources_declared: bool,
    /// Some running member declared `resources.subscribe`.
    pub subscribe_declared: bool,
}

/// True for `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid_exposed_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EXPOSED
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The exposed name of `member`'s `tool`.
pub fn exposed_name(config: &VirtualConfig, member: &str, tool: &str) -> String {
    match config.prefix {
        PrefixMode::Always => format!("{member}{}{tool}", config.separator),
        PrefixMode::Never => tool.to_owned(),
    }
}

/// Builds the catalog from `(member, its tools)` in any order.
pub fn build<'a>(
    config: &VirtualConfig,
    members: impl IntoIterator<Item = (&'a str, Arc<[ToolInfo]>)>,
) -> Catalog {
    let mut sources: BTreeMap<String, Vec<ExposedTool>> = BTreeMap::new();
    for (member, tools) in members {
        for tool in tools.iter() {
            let exposed = exposed_name(config, member, &tool.name);
            if !config.exposes(&exposed) {
                continue;
            }
            sources.entry(exposed).or_default().push(ExposedTool {
                member: member.to_owned(),
                original: tool.name.clone(),
                info: tool.clone(),
            });
        }
    }
    let mut catalog = Catalog::default();
    for (exposed, mut found) in sources {
        let reason = if found.len() > 1 {
            Some(ConflictReason::Collision)
        } else if !valid_exposed_name(&exposed) {
            Some(ConflictReason::InvalidName)
        } else {
            None
        };
        match reason {
            None => {
                if let Some(tool) = found.pop() {
                    catalog.tools.insert(exposed, tool);
                }
            }
            Some(reason) => catalog.conflicts.push(Conflict {
                kind: OfferKind::Tool,
                exposed,
                sources: found
                    .into_iter()
                    .map(|tool| (tool.member, tool.original))
                    .collect(),
                reason,
            }),
        }
    }
    catalog
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A virtual server `all` with no members, filter or rules.
    pub(crate) fn config() -> crate::config::VirtualConfig {
        super::tests::virtual_config(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ToolPattern;
    use crate::config::{OAuthConfig, ToolFilter};

    pub(super) fn virtual_config(tools: &[&str]) -> VirtualConfig {
        VirtualConfig {
            name: "all".into(),
            file: "x.yaml".into(),
            endpoint: String::new(),
            enabled: true,
            display_in_web: true,
            description: String::new(),
            oauth: OAuthConfig {
                required: false,
                scopes: vec![],
                audience: "mcp".into(),
                client_id: None,
                tools: vec![],
            },
            audit_arguments: false,
            aggregate: vec![],
            exclude: vec![],
            tools: tools
                .iter()
                .map(|t| match t.strip_prefix('!') {
                    Some(body) => ToolFilter {
                        pattern: ToolPattern::parse(body).unwrap(),
                        negated: true,
                    },
                    None => ToolFilter {
                        pattern: ToolPattern::parse(t).unwrap(),
                        negated: false,
                    },
                })
                .collect(),
            separator: "_".into(),
            prefix: PrefixMode::Always,
            prefix_at: (None, None),
            members: vec![],
            max_calls_per_caller: 16,
        }
    }

    fn tools(names: &[&str]) -> Arc<[ToolInfo]> {
        names
            .iter()
            .map(|name| ToolInfo::new(name, &serde_json::json!({"type": "object"})))
            .collect()
    }

    #[test]
    fn prefixes_filters_and_reports_collisions_with_both_sources() {
        let config = virtual_config(&["*", "!*_delete*"]);
        let catalog = build(
            &config,
            [
                ("a", tools(&["b_echo", "add", "x_delete_all"])),
                ("a_b", tools(&["echo"])),
                ("c", tools(&["bad.name", &"n".repeat(70)])),
            ],
        );
        let names: Vec<&str> = catalog.tools.keys().map(String::as_str).collect();
        assert_eq!(names, ["a_add"]);
        let collision = &catalog.conflicts[0];
        assert_eq!(collision.exposed, "a_b_echo");
        assert_eq!(collision.reason, ConflictReason::Collision);
        assert_eq!(
            collision.sources,
            [("a".into(), "b_echo".into()), ("a_b".into(), "echo".into())]
        );
        let text = collision.describe("all");
        assert!(text.contains("\"b_echo\" of server \"a\"") && text.contains("server \"a_b\""));
        assert_eq!(catalog.conflicts.len(), 3);
        assert!(
            catalog.conflicts[1..]
                .iter()
                .all(|c| c.reason == ConflictReason::InvalidName)
        );
    }

    #[test]
    fn never_prefix_keeps_names() {
        let mut config = virtual_config(&[]);
        config.prefix = PrefixMode::Never;
        let catalog = build(&config, [("echo", tools(&["echo", "add"]))]);
        assert_eq!(catalog.tools["echo"].member, "echo");
        assert_eq!(catalog.tools["add"].original, "add");
    }

    #[test]
    fn exposed_name_rule() {
        assert!(valid_exposed_name("a-b_C9"));
        assert!(valid_exposed_name(&"a".repeat(64)));
        for bad in ["", "a.b", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_exposed_name(bad), "{bad}");
        }
    }
}
