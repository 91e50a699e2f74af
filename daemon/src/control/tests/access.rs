//! `tools --as-scopes` over a real socket: per tool, whether a token with those scopes may
//! call it through the gateway, the deciding rule, and the scopes that would allow it.

use super::*;
use crate::authz::{ToolPattern, ToolRule};
use crate::directory::ServerState;

fn rule(pattern: &str, scopes: &[&str]) -> ToolRule {
    ToolRule {
        pattern: ToolPattern::parse(pattern).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// `db` with the rules of the README's example, `open` without OAuth.
fn populate_with_rules(h: &Harness) {
    let mut map = BTreeMap::new();
    for name in ["db", "open"] {
        let mut config = server_config(&h.daemon, name);
        if name == "db" {
            config.oauth.required = true;
            config.oauth.scopes = vec!["user".into(), "tools:read".into(), "tools:write".into()];
            config.oauth.tools = vec![
                rule("delete_*", &["admin"]),
                rule("search", &["tools:read", "user"]),
                rule("*", &["tools:write", "user"]),
            ];
        }
        let mut status = ServerStatus::new(ServerState::Running);
        status.tools = ["delete_db", "search", "echo"]
            .iter()
            .map(|t| tool(t))
            .collect::<Vec<_>>()
            .into();
        map.insert(name.to_owned(), Arc::new(ServerEntry::new(config, status)));
    }
    h.ctx.supervisor.directory().replace(map);
}

/// (tool, may call, rule, allowing) of `server`'s tools for `scopes`.
async fn access(
    stream: &mut Stream,
    server: &str,
    scopes: &[&str],
) -> Vec<(String, bool, Option<String>, Vec<String>)> {
    let reply = roundtrip(
        stream,
        &Request::Tools(ToolsRequest {
            name: Some(server.into()),
            schema: false,
            as_scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
        }),
    )
    .await;
    let Response::Tools(reply) = reply else {
        panic!("{reply:?}")
    };
    reply
        .tools
        .into_iter()
        .map(|t| {
            let access = t.access.expect("access with --as-scopes");
            (t.name, access.may_call, access.rule, access.allowing)
        })
        .collect()
}

fn row(
    tool: &str,
    may_call: bool,
    rule: Option<&str>,
    allowing: &[&str],
) -> (String, bool, Option<String>, Vec<String>) {
    (
        tool.to_owned(),
        may_call,
        rule.map(str::to_owned),
        allowing.iter().map(|s| (*s).to_owned()).collect(),
    )
}

#[tokio::test]
async fn as_scopes_says_per_tool_who_may_call_it() {
    let mut h = Harness::start().await;
    populate_with_rules(&h);
    let mut stream = h.client().await;

    assert_eq!(
        access(&mut stream, "db", &["user", "tools:read"]).await,
        [
            row("delete_db", false, Some("delete_*"), &["admin"]),
            row("search", true, Some("search"), &[]),
            row("echo", true, Some("*"), &[]),
        ]
    );
    assert_eq!(
        access(&mut stream, "db", &["tools:read"]).await,
        [
            row("delete_db", false, Some("delete_*"), &["admin"]),
            row("search", true, Some("search"), &[]),
            row("echo", false, Some("*"), &["admin", "tools:write", "user"]),
        ]
    );
    assert_eq!(
        access(&mut stream, "db", &["admin"]).await,
        [
            row("delete_db", true, Some("delete_*"), &[]),
            row("search", true, Some("search"), &[]),
            row("echo", true, Some("*"), &[]),
        ]
    );
    // Not admitted to the server at all: nothing, and the single scopes that would do.
    for scopes in [&["other"][..], &[]] {
        assert_eq!(
            access(&mut stream, "db", scopes).await,
            [
                row("delete_db", false, Some("delete_*"), &["admin"]),
                row(
                    "search",
                    false,
                    Some("search"),
                    &["admin", "user", "tools:read"]
                ),
                row("echo", false, Some("*"), &["admin", "user", "tools:write"]),
            ],
            "{scopes:?}"
        );
    }
    // Without OAuth the gateway asks nothing: anyone may call.
    assert!(
        access(&mut stream, "open", &[]).await.iter().all(
            |(_, may_call, rule, allowing)| *may_call && rule.is_none() && allowing.is_empty()
        )
    );
    // Without --as-scopes, no access is reported.
    let reply = roundtrip(
        &mut stream,
        &Request::Tools(ToolsRequest {
            name: Some("db".into()),
            schema: false,
            as_scopes: None,
        }),
    )
    .await;
    let Response::Tools(reply) = reply else {
        panic!("{reply:?}")
    };
    assert!(reply.tools.iter().all(|t| t.access.is_none()));
    h.stop().await;
}
