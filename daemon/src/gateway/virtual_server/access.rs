//! Who may list and call a virtual server's tools: the caller must pass the member's rules
//! and the virtual server's rules (`authz::decide_call` on each), and be admitted to the
//! member (a member with `oauth.required` takes only callers holding one of its scopes, or
//! `admin`; a caller without a token never reaches it through a virtual server).

use crate::authz::{self, Decision};
use crate::config::{OAuthConfig, VirtualConfig};
use crate::gateway::auth::Claims;

/// True when the member's admission rules let the caller in.
fn admitted(claims: Option<&Claims>, member: &OAuthConfig) -> bool {
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
    if !admitted(claims, member) {
        let mut allowing = vec![authz::ADMIN.to_owned()];
        allowing.extend(member.scopes.iter().filter(|s| *s != authz::ADMIN).cloned());
        return Decision::Deny { allowing };
    }
    let Some(claims) = claims else {
        return Decision::Allow;
    };
    match authz::decide_call(&claims.scopes, member, original) {
        Decision::Allow => authz::decide_call(&claims.scopes, &config.oauth, exposed),
        deny => deny,
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
