//! Who may do what on a server: the one pure decision function of the gateway, `mcpctl tools
//! --as-scopes` and `mcpctl call`. Given a token's scopes, a server's `oauth` settings and a
//! message, it allows, or names every scope that would allow.
//!
//! Admission to the server (audience, client, one of `oauth.scopes`) is checked before, in
//! `gateway::auth`. Here, for an admitted token:
//! - `admin`: everything.
//! - Any method but `tools/call`: allowed (initialize, lists, reads, ping, ...).
//! - `tools/call` of a tool that matches a per-tool rule (`oauth.tools`, first match wins):
//!   allowed with `admin` or one of the rule's scopes.
//! - `tools/call` of a tool no rule matches: allowed unless the token's only standing on the
//!   server is `tools:read` (read-only); `tools:write` and any other scope the server lists
//!   may call.
//!
//! Tool annotations (`readOnlyHint`) come from the server and never enter the decision.

mod pattern;
#[cfg(test)]
mod tests;

pub use pattern::{MAX_PATTERN, ToolPattern};

use crate::config::OAuthConfig;
use crate::envelope::Message;

/// Every method and tool of every server.
pub const ADMIN: &str = "admin";
/// Lists and reads; calls no tool unless a rule names it.
pub const TOOLS_READ: &str = "tools:read";
/// Calls tools.
pub const TOOLS_WRITE: &str = "tools:write";

/// One per-tool rule: tools matching `pattern` may be called with `admin` or one of `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    pub pattern: ToolPattern,
    pub scopes: Vec<String>,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; any one of these scopes would have allowed it.
    Deny {
        allowing: Vec<String>,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

fn holds(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|scope| scope == wanted)
}

/// The rule that governs `tool`, if any.
pub fn rule_for<'r>(oauth: &'r OAuthConfig, tool: &str) -> Option<&'r ToolRule> {
    oauth.tools.iter().find(|rule| rule.pattern.matches(tool))
}

/// May a token with `scopes` call `tool` on a server with these `oauth` settings?
pub fn decide_call(scopes: &[String], oauth: &OAuthConfig, tool: &str) -> Decision {
    if holds(scopes, ADMIN) {
        return Decision::Allow;
    }
    if let Some(rule) = rule_for(oauth, tool) {
        if rule.scopes.iter().any(|scope| holds(scopes, scope)) {
            return Decision::Allow;
        }
        let mut allowing = vec![ADMIN.to_owned()];
        allowing.extend(rule.scopes.iter().filter(|s| *s != ADMIN).cloned());
        return Decision::Deny { allowing };
    }
    if calls_by_default(scopes, oauth) {
        return Decision::Allow;
    }
    let mut allowing = vec![ADMIN.to_owned(), TOOLS_WRITE.to_owned()];
    allowing.extend(
        oauth
            .scopes
            .iter()
            .filter(|s| !matches!(s.as_str(), ADMIN | TOOLS_READ | TOOLS_WRITE))
            .cloned(),
    );
    Decision::Deny { allowing }
}

/// The built-in meaning for a tool no rule names: `tools:write`, or any scope that admits the
/// token other than `tools:read`, may call. A server that lists no scopes admits any token,
/// so a token there may call unless all it holds is `tools:read`.
fn calls_by_default(scopes: &[String], oauth: &OAuthConfig) -> bool {
    if holds(scopes, TOOLS_WRITE) {
        return true;
    }
    if oauth.scopes.is_empty() {
        return !scopes.iter().all(|scope| scope == TOOLS_READ) || scopes.is_empty();
    }
    scopes
        .iter()
        .any(|scope| scope != TOOLS_READ && oauth.scopes.contains(scope))
}

/// The decision for one message: only `tools/call` is decided per tool.
pub fn decide(scopes: &[String], oauth: &OAuthConfig, message: &Message<'_>) -> Decision {
    match (message.is_tool_call(), message.name.as_deref()) {
        (true, Some(tool)) => decide_call(scopes, oauth, tool),
        // A call without a name never reaches here (the envelope refuses it); refuse anyway.
        (true, None) => Decision::Deny {
            allowing: vec![ADMIN.to_owned()],
        },
        (false, _) => Decision::Allow,
    }
}

/// A token with `admin` or `tools:read` sees every tool in `tools/list`; others see only the
/// tools they may call.
pub fn sees_whole_catalog(scopes: &[String]) -> bool {
    holds(scopes, ADMIN) || holds(scopes, TOOLS_READ)
}

/// True when `tools/list` answers for these scopes need filtering at all: some tool may be
/// refused to them. Decided without the list, so most requests skip reading the answer.
pub fn list_needs_filter(scopes: &[String], oauth: &OAuthConfig) -> bool {
    if sees_whole_catalog(scopes) {
        return false;
    }
    let rules_allow_all = oauth
        .tools
        .iter()
        .all(|rule| rule.scopes.iter().any(|scope| holds(scopes, scope)));
    !(rules_allow_all && calls_by_default(scopes, oauth))
}

/// Rules that can never apply because an earlier one matches every tool they match, as
/// warnings for `mcpd check` and `mcpctl validate`.
pub fn shadowed_rules(server: &str, oauth: &OAuthConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, rule) in oauth.tools.iter().enumerate() {
        if let Some(earlier) = oauth.tools[..index]
            .iter()
            .find(|earlier| earlier.pattern.covers(&rule.pattern))
        {
            warnings.push(format!(
                "server {server}: oauth.tools rule \"{}\" never applies: the earlier rule \"{}\" already matches every tool it matches (first match wins)",
                rule.pattern, earlier.pattern
            ));
        }
    }
    warnings
}
