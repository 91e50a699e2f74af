//! Who may list and call a virtual server's tools: the caller must pass the member's rules
//! and the virtual server's rules (`authz::decide_call` on each), and be admitted to the
//! member (a member with `oauth.required` takes only callers holding one of its scopes, or
//! `admin`; a caller without a token never reaches it through a virtual server).

use crate::authz::{self, Decision};
use crate::config::{OAuthConfig, VirtualConfig};
use crate::gateway::auth::Claims;

/// True when the member's admission rules let the caller in.
pub fn admitted(claims: Option<&Claims>, member: &OAuthConfig) -> bool {
    if !member.required {
        return true;
    }
    let Some(claims) = claims else {
        return false;
    };
    member.scopes.is_empty()
        || claims
            .scopes
            .iter()
            .any(|scope| scope == authz::ADMIN || member.scopes.contains(scope))
}

/// May the caller call `original` of a member (exposed as `exposed`)?
pub fn decide_call(
    claims: Option<&Claims>,
    config: &VirtualConfig,
    member: &OAuthConfig,
    exposed: &str,
    original: &str,
) -> Decision {
    under_both(claims, member, |scopes| {
        match authz::decide_call(scopes, member, original) {
            Decision::Allow => authz::decide_call(scopes, &config.oauth, exposed),
            deny => deny,
        }
    })
}

/// May the caller send `message` (a prompt or resource request) to a member? Admission to
/// the member, then the one decision of `authz` under the member's and the virtual server's
/// rules (which allow every method but `tools/call` to an admitted token).
pub fn decide_read(
    claims: Option<&Claims>,
    config: &VirtualConfig,
    member: &OAuthConfig,
    message: &crate::envelope::Message<'_>,
) -> Decision {
    under_both(claims, member, |scopes| {
        match authz::decide(scopes, member, message) {
            Decision::Allow => authz::decide(scopes, &config.oauth, message),
            deny => deny,
        }
    })
}

/// Admission to the member (else the scopes that would admit), then `decide` on the token's
/// scopes; a caller without a token (no `oauth.required`) is allowed.
fn under_both(
    claims: Option<&Claims>,
    member: &OAuthConfig,
    decide: impl FnOnce(&[String]) -> Decision,
) -> Decision {
    if !admitted(claims, member) {
        let mut allowing = vec![authz::ADMIN.to_owned()];
        allowing.extend(member.scopes.iter().filter(|s| *s != authz::ADMIN).cloned());
        return Decision::Deny { allowing };
    }
    match claims {
        Some(claims) => decide(&claims.scopes),
        None => Decision::Allow,
    }
}

/// Does the caller see the tool in `tools/list`? `admin` and `tools:read` see every tool of
/// the members that admit them; others see the tools they may call.
pub fn sees(
    claims: Option<&Claims>,
    config: &VirtualConfig,
    member: &OAuthConfig,
    exposed: &str,
    original: &str,
) -> bool {
    if !admitted(claims, member) {
        return false;
    }
    match claims {
        Some(claims) if authz::sees_whole_catalog(&claims.scopes) => true,
        _ => decide_call(claims, config, member, exposed, original).is_allowed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{ToolPattern, ToolRule};
    use crate::config::PrefixMode;

    fn oauth(required: bool, scopes: &[&str], rules: &[(&str, &[&str])]) -> OAuthConfig {
        OAuthConfig {
            required,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: "mcp".into(),
            client_id: None,
            tools: rules
                .iter()
                .map(|(pattern, scopes)| ToolRule {
                    pattern: ToolPattern::parse(pattern).unwrap(),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn virtual_server(oauth: OAuthConfig) -> VirtualConfig {
        VirtualConfig {
            name: "all".into(),
            file: "v.yaml".into(),
            endpoint: String::new(),
            enabled: true,
            display_in_web: true,
            description: String::new(),
            oauth,
            audit_arguments: false,
            aggregate: vec![],
            exclude: vec![],
            tools: vec![],
            separator: "_".into(),
            prefix: PrefixMode::Always,
            prefix_at: (None, None),
            members: vec!["m".into()],
            max_calls_per_caller: 16,
        }
    }

    fn claims(scopes: &[&str]) -> Claims {
        Claims {
            subject: Some("alice".into()),
            audiences: vec!["mcp".into()],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            client_id: None,
            expires_at: u64::MAX,
            subject_header: None,
            scopes_header: None,
            client_header: None,
            identity_head: bytes::Bytes::new(),
        }
    }

    #[test]
    fn a_caller_without_a_token_never_reaches_a_member_that_requires_one() {
        let open = virtual_server(oauth(false, &[], &[]));
        let guarded = oauth(true, &["user"], &[]);
        assert!(!sees(None, &open, &guarded, "m_echo", "echo"));
        assert_eq!(
            decide_call(None, &open, &guarded, "m_echo", "echo"),
            Decision::Deny {
                allowing: vec!["admin".into(), "user".into()]
            }
        );
        // A member without oauth is open to it.
        let plain = oauth(false, &[], &[]);
        assert!(sees(None, &open, &plain, "m_echo", "echo"));
    }

    #[test]
    fn both_rule_sets_decide() {
        let config = virtual_server(oauth(true, &["user"], &[("m_add", &["admin"])]));
        let member = oauth(true, &["user"], &[("sleep", &["admin"])]);
        let user = claims(&["user"]);
        let allowed = |exposed, original| {
            decide_call(Some(&user), &config, &member, exposed, original).is_allowed()
        };
        assert!(allowed("m_echo", "echo"));
        assert!(!allowed("m_add", "add"), "the virtual server's rule");
        assert!(!allowed("m_sleep", "sleep"), "the member's rule");
        let admin = claims(&["admin"]);
        assert!(decide_call(Some(&admin), &config, &member, "m_add", "add").is_allowed());
        // tools:read sees the catalog of members that admit it, and no other.
        let reader = claims(&["tools:read"]);
        assert!(!sees(Some(&reader), &config, &member, "m_echo", "echo"));
        let open_member = oauth(false, &[], &[]);
        assert!(sees(Some(&reader), &config, &open_member, "m_add", "add"));
    }
}
