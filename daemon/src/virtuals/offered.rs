//! The prompts and resources a virtual server offers: each member's prompt `p` of server `s`
//! is exposed as `s<separator>p` (or `p` with `prefix: never`), under the same name rule as
//! tools; resources and resource templates keep their URIs. A name or URI two members
//! produce, or one that breaks the rules, is left out with every source reported, like a
//! tool. Routing uses the maps built here; a URI no resource lists is matched against the
//! templates ([`template_matches`]), and more than one member's template matching it is
//! refused, never guessed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::catalog::{
    Catalog, Conflict, ConflictReason, OfferKind, exposed_name, valid_exposed_name,
};
use crate::config::VirtualConfig;
use crate::offers::{OfferEntry, Offers};

/// Longest URI (or URI template) offered.
pub const MAX_URI: usize = 2048;
/// Most literal and expression parts of a template that is matched (a longer one matches
/// nothing).
const MAX_PARTS: usize = 32;

/// One prompt, resource or template a virtual server offers.
#[derive(Debug, Clone)]
pub struct Offered {
    pub member: String,
    /// The member's own name (a prompt's) or URI.
    pub original: String,
    /// What the member said of it.
    pub body: Map<String, Value>,
}

/// True for a URI (or template) a virtual server passes on: 1 to [`MAX_URI`] bytes, no
/// control character.
pub fn usable_uri(uri: &str) -> bool {
    !uri.is_empty() && uri.len() <= MAX_URI && !uri.chars().any(char::is_control)
}

/// Adds the members' prompts, resources and templates to `catalog`.
pub fn add<'a>(
    catalog: &mut Catalog,
    config: &VirtualConfig,
    members: impl IntoIterator<Item = (&'a str, &'a Offers)>,
) {
    let mut prompts: BTreeMap<String, Vec<Offered>> = BTreeMap::new();
    let mut resources: BTreeMap<String, Vec<Offered>> = BTreeMap::new();
    let mut templates: BTreeMap<String, Vec<Offered>> = BTreeMap::new();
    let offered = |member: &str, entry: &OfferEntry| Offered {
        member: member.to_owned(),
        original: entry.key.clone(),
        body: entry.body.clone(),
    };
    for (member, offers) in members {
        catalog.prompts_declared |= offers.prompts_declared;
        catalog.resources_declared |= offers.resources_declared;
        catalog.subscribe_declared |= offers.resources_declared && offers.subscribe;
        for entry in &offers.prompts {
            let exposed = exposed_name(config, member, &entry.key);
            prompts
                .entry(exposed)
                .or_default()
                .push(offered(member, entry));
        }
        for entry in &offers.resources {
            resources
                .entry(entry.key.clone())
                .or_default()
                .push(offered(member, entry));
        }
        for entry in &offers.templates {
            templates
                .entry(entry.key.clone())
                .or_default()
                .push(offered(member, entry));
        }
    }
    settle(catalog, OfferKind::Prompt, prompts, valid_exposed_name);
    settle(catalog, OfferKind::Resource, resources, usable_uri);
    settle(catalog, OfferKind::Template, templates, usable_uri);
}

/// Keeps each key with one valid source; reports the others.
fn settle(
    catalog: &mut Catalog,
    kind: OfferKind,
    sources: BTreeMap<String, Vec<Offered>>,
    valid: fn(&str) -> bool,
) {
    for (key, mut found) in sources {
        let reason = if found.len() > 1 {
            ConflictReason::Collision
        } else if !valid(&key) {
            ConflictReason::InvalidName
        } else {
            let Some(one) = found.pop() else { continue };
            let map = match kind {
                OfferKind::Prompt => &mut catalog.prompts,
                OfferKind::Resource => &mut catalog.resources,
                OfferKind::Template | OfferKind::Tool => &mut catalog.templates,
            };
            map.insert(key, one);
            continue;
        };
        catalog.conflicts.push(Conflict {
            kind,
            exposed: key,
            sources: found
                .into_iter()
                .map(|offered| (offered.member, offered.original))
                .collect(),
            reason,
        });
    }
}

/// The member whose resource is `uri`, or whose template matches it. `Err` names the members
/// whose templates all match (ambiguous); `Ok(None)`: nothing offers it.
pub fn route_uri<'c>(catalog: &'c Catalog, uri: &str) -> Result<Option<&'c Offered>, Vec<String>> {
    if let Some(resource) = catalog.resources.get(uri) {
        return Ok(Some(resource));
    }
    let matching: Vec<&Offered> = catalog
        .templates
        .iter()
        .filter(|(template, _)| template_matches(template, uri))
        .map(|(_, offered)| offered)
        .collect();
    let first = matching.first().copied();
    if matching
        .iter()
        .any(|m| Some(&m.member) != first.map(|f| &f.member))
    {
        let mut members: Vec<String> = matching.iter().map(|m| m.member.clone()).collect();
        members.sort();
        members.dedup();
        return Err(members);
    }
    Ok(first)
}

/// Does `uri` match the RFC 6570 template? Literal text must match exactly; an expression
/// `{...}` matches any run of characters (at least one), except `/`, `?` and `#` for simple
/// expressions, while reserved (`{+x}`) and fragment (`{#x}`) expansions match anything.
/// Linear in the URI per part of the template (at most [`MAX_PARTS`] parts) (the set of reachable positions is carried
/// from part to part, never a backtracking search); URIs over [`MAX_URI`] match nothing.
pub fn template_matches(template: &str, uri: &str) -> bool {
    if uri.len() > MAX_URI {
        return false;
    }
    let Some(parts) = parse_template(template).filter(|parts| parts.len() <= MAX_PARTS) else {
        return false;
    };
    let bytes = uri.as_bytes();
    // reachable[i]: the parts so far can match exactly uri[..i].
    let mut reachable = vec![false; bytes.len() + 1];
    reachable[0] = true;
    for part in parts {
        let mut next = vec![false; bytes.len() + 1];
        match part {
            Part::Literal(text) => {
                for (at, _) in reachable.iter().enumerate().filter(|(_, r)| **r) {
                    if bytes[at..].starts_with(text.as_bytes()) {
                        next[at + text.len()] = true;
                    }
                }
            }
            Part::Expression(reserved) => {
                // Sweep: a run started at a reachable position goes on while characters are
                // allowed; every end after at least one character is reachable.
                let mut open = false;
                for at in 0..bytes.len() {
                    open |= reachable[at];
                    let allowed = reserved || !matches!(bytes[at], b'/' | b'?' | b'#');
                    open &= allowed;
                    if open {
                        next[at + 1] = true;
                    }
                }
            }
        }
        if !next.iter().any(|r| *r) {
            return false;
        }
        reachable = next;
    }
    reachable[bytes.len()]
}

#[derive(Debug, PartialEq)]
enum Part<'t> {
    Literal(&'t str),
    /// An expression; `true` when it may hold `/`, `?` and `#`.
    Expression(bool),
}

fn parse_template(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}')?;
                let body = &rest[1..end];
                parts.push(Part::Expression(
                    body.starts_with('+') || body.starts_with('#'),
                ));
                rest = &rest[end + 1..];
            }
            Some(at) => {
                parts.push(Part::Literal(&rest[..at]));
                rest = &rest[at..];
            }
            None => {
                parts.push(Part::Literal(rest));
                rest = "";
            }
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(key: &str, field: &str) -> OfferEntry {
        let Value::Object(body) = json!({ field: key }) else {
            unreachable!()
        };
        OfferEntry {
            key: key.to_owned(),
            body,
        }
    }

    fn offers(prompts: &[&str], resources: &[&str], templates: &[&str]) -> Offers {
        Offers {
            prompts_declared: !prompts.is_empty(),
            resources_declared: !resources.is_empty() || !templates.is_empty(),
            subscribe: false,
            prompts: prompts.iter().map(|p| entry(p, "name")).collect(),
            resources: resources.iter().map(|r| entry(r, "uri")).collect(),
            templates: templates.iter().map(|t| entry(t, "uriTemplate")).collect(),
        }
    }

    #[test]
    fn prompts_are_prefixed_and_uris_kept_with_conflicts_named() {
        let config = super::super::catalog::tests_support::config();
        let a = offers(
            &["greet", "x.y"],
            &["file:///a", "mem://shared", "bad\u{1b}[2J"],
            &["file:///a/{name}", "db://{table}"],
        );
        let b = offers(&["greet"], &["mem://shared"], &["db://{table}"]);
        let mut catalog = Catalog::default();
        add(&mut catalog, &config, [("a", &a), ("b", &b)]);
        assert!(catalog.prompts_declared && catalog.resources_declared);
        let prompts: Vec<&str> = catalog.prompts.keys().map(String::as_str).collect();
        assert_eq!(prompts, ["a_greet", "b_greet"]);
        assert_eq!(catalog.prompts["b_greet"].original, "greet");
        assert_eq!(
            catalog.resources.keys().collect::<Vec<_>>(),
            ["file:///a"],
            "the shared URI and the one with a control character are left out"
        );
        assert_eq!(
            catalog.templates.keys().collect::<Vec<_>>(),
            ["file:///a/{name}"]
        );
        let described: Vec<String> = catalog
            .conflicts
            .iter()
            .map(|c| c.describe("all"))
            .collect();
        assert_eq!(described.len(), 4, "{described:#?}");
        assert!(
            described
                .iter()
                .any(|d| d.contains("prompt \"x.y\" of server \"a\""))
        );
        assert!(described.iter().any(|d| {
            d.contains("resource \"mem://shared\" is offered by servers \"a\" and \"b\"")
        }));
        assert!(
            described
                .iter()
                .any(|d| d.contains("resource template \"db://{table}\""))
        );
    }

    #[test]
    fn uris_route_to_the_resource_then_to_one_template() {
        let config = super::super::catalog::tests_support::config();
        let a = offers(
            &[],
            &["file:///a/readme"],
            &["file:///a/{name}", "any://{+path}"],
        );
        let b = offers(&[], &[], &["file:///{dir}/{name}", "any://x{rest}"]);
        let mut catalog = Catalog::default();
        add(&mut catalog, &config, [("a", &a), ("b", &b)]);
        let member = |uri| route_uri(&catalog, uri).map(|o| o.map(|o| o.member.clone()));
        assert_eq!(member("file:///a/readme"), Ok(Some("a".into())));
        assert_eq!(member("file:///c/notes"), Ok(Some("b".into())));
        assert_eq!(member("file:///a/notes"), Err(vec!["a".into(), "b".into()]));
        assert_eq!(
            member("file:///a/b/c"),
            Ok(None),
            "a simple expression holds no /"
        );
        assert_eq!(member("any://y/z"), Ok(Some("a".into())));
        assert_eq!(member("nothing://"), Ok(None));
    }

    #[test]
    fn template_matching() {
        assert!(template_matches("a://{x}", "a://1"));
        assert!(!template_matches("a://{x}", "a://"));
        assert!(template_matches("a://{x}/b/{y}", "a://1/b/2"));
        assert!(!template_matches("a://{x}/b/{y}", "a://1/c/2"));
        assert!(template_matches("a://{+x}", "a://1/2/3"));
        assert!(!template_matches("a://{x", "a://1"));
        assert!(template_matches("plain", "plain"));
        assert!(template_matches("{a}".repeat(20).as_str(), &"x".repeat(40)));
        // Linear per part: many expressions over a long URI stay quick.
        assert!(!template_matches(&"{+a}".repeat(200), &"y".repeat(150)));
        assert!(!template_matches("{+a}{+b}{+c}z", &"y".repeat(2000)));
        assert!(!template_matches("{+a}", &"y".repeat(MAX_URI + 1)));
    }
}
