//! The decision table: every built-in scope x method class x per-tool rule.

use super::*;
use crate::config::test_builder::{no_oauth, oauth};
use crate::envelope;

fn scopes(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

fn with_rules(server_scopes: &[&str], rules: &[(&str, &[&str])]) -> OAuthConfig {
    let mut config = oauth(server_scopes);
    config.tools = rules
        .iter()
        .map(|(pattern, scopes)| ToolRule {
            pattern: ToolPattern::parse(pattern).unwrap(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
        .collect();
    config
}

/// The issue's example policy.
fn example() -> OAuthConfig {
    with_rules(
        &["user", "tools:read", "tools:write"],
        &[
            ("delete_*", &["admin"]),
            ("search", &["tools:read", "user"]),
            ("*", &["tools:write", "user"]),
        ],
    )
}

#[test]
fn built_in_meanings_without_rules() {
    let server = oauth(&["user", "tools:read", "tools:write"]);
    let table: &[(&str, bool)] = &[
        ("admin", true),
        ("tools:read", false),
        ("tools:write", true),
        ("user", true),
        ("tools:read user", true),
        ("tools:read tools:write", true),
        // Admitted by nothing here, so never asked in practice; still not a caller.
        ("", false),
        ("other", false),
    ];
    for (held, expected) in table {
        assert_eq!(
            decide_call(&scopes(held), &server, "anything").is_allowed(),
            *expected,
            "scopes {held:?}"
        );
    }
    // The challenge names every scope that would do.
    assert_eq!(
        decide_call(&scopes("tools:read"), &server, "x"),
        Decision::Deny {
            allowing: scopes("admin tools:write user")
        }
    );
}

#[test]
fn a_server_listing_no_scopes() {
    let server = oauth(&[]);
    for (held, expected) in [
        ("", true),
        ("anything", true),
        ("tools:read", false),
        ("tools:read anything", true),
        ("tools:write", true),
    ] {
        assert_eq!(
            decide_call(&scopes(held), &server, "t").is_allowed(),
            expected,
            "{held:?}"
        );
    }
    // No OAuth at all is decided before (no token, no decision); the function itself still
    // answers for a token with no scopes.
    assert!(decide_call(&[], &no_oauth(), "t").is_allowed());
}

#[test]
fn per_tool_rules_first_match_wins() {
    let policy = example();
    let table: &[(&str, &str, bool)] = &[
        ("admin", "delete_db", true),
        ("user", "delete_db", false),
        ("tools:write", "delete_db", false),
        ("tools:read", "delete_db", false),
        ("tools:read", "search", true),
        ("user", "search", true),
        ("tools:write", "search", false),
        ("tools:read", "echo", false),
        ("user", "echo", true),
        ("tools:write", "echo", true),
        ("admin", "echo", true),
        ("", "echo", false),
    ];
    for (held, tool, expected) in table {
        assert_eq!(
            decide_call(&scopes(held), &policy, tool).is_allowed(),
            *expected,
            "{held:?} calling {tool}"
        );
    }
    assert_eq!(
        decide_call(&scopes("user"), &policy, "delete_db"),
        Decision::Deny {
            allowing: scopes("admin")
        }
    );
    assert_eq!(
        decide_call(&scopes("tools:write"), &policy, "search"),
        Decision::Deny {
            allowing: scopes("admin tools:read user")
        }
    );
}

#[test]
fn a_tool_no_rule_matches_follows_the_built_in_meanings() {
    let policy = with_rules(&["user", "tools:read"], &[("delete_*", &["admin"])]);
    assert!(decide_call(&scopes("user"), &policy, "echo").is_allowed());
    assert!(!decide_call(&scopes("tools:read"), &policy, "echo").is_allowed());
    assert!(!decide_call(&scopes("user"), &policy, "delete_x").is_allowed());
}

#[test]
fn methods_other_than_tools_call_are_allowed_once_admitted() {
    let policy = example();
    for body in [
        r#"{"id":1,"method":"tools/list"}"#,
        r#"{"id":1,"method":"initialize","params":{}}"#,
        r#"{"id":1,"method":"resources/read","params":{"uri":"x"}}"#,
        r#"{"id":1,"method":"prompts/get","params":{"name":"delete_db"}}"#,
        r#"{"id":1,"method":"completion/complete"}"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"{"id":1,"method":"server/discover"}"#,
        r#"{"method":"notifications/initialized"}"#,
        r#"{"id":1,"result":{}}"#,
    ] {
        let envelope = envelope::parse(body.as_bytes()).unwrap();
        assert!(
            decide(&scopes("tools:read"), &policy, &envelope.messages[0]).is_allowed(),
            "{body}"
        );
    }
    let call =
        envelope::parse(br#"{"id":1,"method":"tools/call","params":{"name":"del\u0065te_db"}}"#)
            .unwrap();
    assert!(!decide(&scopes("user"), &policy, &call.messages[0]).is_allowed());
    assert!(decide(&scopes("admin"), &policy, &call.messages[0]).is_allowed());
}

#[test]
fn who_sees_what_in_lists() {
    let policy = example();
    assert!(!list_needs_filter(&scopes("admin"), &policy));
    assert!(!list_needs_filter(&scopes("tools:read"), &policy));
    assert!(list_needs_filter(&scopes("user"), &policy));
    assert!(list_needs_filter(&scopes("tools:write"), &policy));
    let open = oauth(&["user", "tools:write"]);
    assert!(!list_needs_filter(&scopes("user"), &open));
    let readers = oauth(&["tools:read", "x"]);
    assert!(list_needs_filter(
        &scopes("x tools:write"),
        &with_rules(&["x"], &[("a", &["y"])])
    ));
    assert!(!list_needs_filter(&scopes("tools:read"), &readers));
}

#[test]
fn shadowed_rules_are_reported() {
    let policy = with_rules(
        &["user"],
        &[
            ("*", &["user"]),
            ("delete_*", &["admin"]),
            ("search", &["user"]),
        ],
    );
    let warnings = shadowed_rules("db", &policy);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("\"delete_*\" never applies"));
    assert!(shadowed_rules("db", &example()).is_empty());
}
