//! The page's routes, headers and HTML: hostile server names, descriptions, tool names and
//! schemas render as inert text; hidden and disabled servers are absent; `gateway.web: false`
//! turns every page off.

use std::sync::Arc;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::json;

use super::*;
use crate::config::test_builder::{daemon_config, server_config};
use crate::directory::{ServerEntry, ServerState, ServerStatus, ToolInfo};

const HOSTILE: &str =
    "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\u{1b}[2J\u{0}\u{202e}&amp;";

fn entry(
    name: &str,
    state: ServerState,
    edit: impl FnOnce(&mut crate::config::ServerConfig),
) -> (String, Arc<ServerEntry>) {
    let mut config = server_config(&daemon_config(std::path::Path::new("/srv")), name);
    edit(&mut config);
    let mut status = ServerStatus::new(state);
    status.tools = Arc::from(vec![ToolInfo {
        description: Some(HOSTILE.to_owned()),
        ..ToolInfo::new(
            &format!("{HOSTILE}tool"),
            &json!({"type": "object", "properties": {HOSTILE: {"description": HOSTILE}}}),
        )
    }]);
    (name.to_owned(), Arc::new(ServerEntry::new(config, status)))
}

fn directory() -> Directory {
    let directory = Directory::default();
    directory.replace(
        [
            entry("shown", ServerState::Running, |config| {
                config.description = HOSTILE.to_owned();
                config.endpoint = format!("http://localhost:8080/api/v1/mcp/shown/mcp?{HOSTILE}");
                config.oauth.required = true;
                config.oauth.scopes = vec![HOSTILE.to_owned()];
                config.oauth.tools = vec![crate::authz::ToolRule {
                    pattern: crate::authz::ToolPattern::parse("delete_*").unwrap(),
                    scopes: vec![HOSTILE.to_owned()],
                }];
            }),
            entry("hidden", ServerState::Running, |config| {
                config.display_in_web = false
            }),
            entry("off", ServerState::Disabled, |config| {
                config.enabled = false
            }),
        ]
        .into_iter()
        .collect(),
    );
    let mut all = crate::virtuals::catalog::tests_support::config();
    all.description = format!("virtual {HOSTILE}");
    all.members = vec!["shown".into(), "off".into()];
    directory.replace_virtuals(&[("all".to_owned(), all)].into_iter().collect());
    directory
}

async fn body(response: Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// No markup but the page's own: every `<` opens one of these tags.
fn assert_inert(html: &str) {
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains('\u{1b}') && !html.contains('\u{0}') && !html.contains('\u{202e}'));
    let allowed = [
        "!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "link", "script ",
        "/script", "body", "/body", "a ", "/a", "header", "/header", "p", "/p", "main", "/main",
        "footer", "/footer", "h1", "/h1", "h2", "/h2", "h3", "/h3", "ul", "/ul", "li", "/li",
        "article", "/article", "span", "/span", "dl", "/dl", "dt", "/dt", "dd", "/dd", "code",
        "/code", "pre", "/pre", "details", "/details", "summary", "/summary", "section",
        "/section", "nav", "/nav", "div", "/div", "table", "/table", "thead", "/thead", "tbody",
        "/tbody", "tr", "/tr", "th ", "/th", "td", "/td",
    ];
    for (index, _) in html.match_indices('<') {
        let rest = &html[index + 1..];
        assert!(
            allowed.iter().any(|tag| rest.starts_with(tag)),
            "unexpected markup at {}",
            &html[index..(index + 40).min(html.len())]
        );
    }
}

#[tokio::test]
async fn the_index_lists_displayed_servers_with_hostile_text_escaped() {
    let config = daemon_config(std::path::Path::new("/srv"));
    let response = respond(&directory(), &config, WebRoute::Index { base: "ui/" });
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    let html = body(response).await;
    assert_inert(&html);
    assert!(html.contains("data-server=\"shown\""), "{html}");
    assert!(!html.contains("hidden") || !html.contains("data-server=\"hidden\""));
    assert!(!html.contains("data-server=\"off\""));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;\\x1b[2J\\x00\\u{202e}&amp;amp;"), "{html}");
    assert!(
        html.contains("<span class=\"state state-running\" data-field=\"state\">running</span>")
    );
    assert!(
        html.contains("href=\"ui/static/style.css\"") && html.contains("src=\"ui/static/live.js\"")
    );
    assert!(
        html.contains("<summary>Claude Code</summary>")
            && html.contains("<summary>VS Code</summary>")
    );
    // No inline script or style for the CSP to refuse.
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains("<script>"));
}

#[tokio::test]
async fn a_server_page_shows_tools_and_schemas_escaped_and_hidden_ones_are_not_found() {
    let config = daemon_config(std::path::Path::new("/srv"));
    let directory = directory();
    let html = body(respond(&directory, &config, WebRoute::Server("shown"))).await;
    assert_inert(&html);
    assert!(html.contains("Input schema"), "{html}");
    assert!(html.contains("Who may call which tool"), "{html}");
    assert!(html.contains("<code>delete_*</code>"), "{html}");
    assert!(
        html.contains("&quot;type&quot;: &quot;object&quot;"),
        "{html}"
    );
    for name in ["hidden", "off", "nope", "<x>"] {
        let response = respond(&directory, &config, WebRoute::Server(name));
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
        assert_inert(&body(response).await);
    }
}

#[tokio::test]
async fn web_false_turns_every_page_off() {
    let mut config = daemon_config(std::path::Path::new("/srv"));
    config.gateway.web = false;
    for route in [
        WebRoute::Index { base: "" },
        WebRoute::Server("shown"),
        WebRoute::Style,
        WebRoute::Script,
        WebRoute::Icon,
        WebRoute::UiRedirect,
    ] {
        assert_eq!(
            respond(&directory(), &config, route).status(),
            StatusCode::NOT_FOUND,
            "{route:?}"
        );
    }
}

#[test]
fn routes() {
    assert_eq!(route("/"), Some(WebRoute::Index { base: "ui/" }));
    assert_eq!(route("/ui/"), Some(WebRoute::Index { base: "" }));
    assert_eq!(route("/ui"), Some(WebRoute::UiRedirect));
    assert_eq!(route("/ui/servers/echo"), Some(WebRoute::Server("echo")));
    assert_eq!(route("/ui/static/live.js"), Some(WebRoute::Script));
    for other in [
        "/ui/servers/",
        "/ui/servers/a/b",
        "/ui/static/x.js",
        "/index.html",
        "/ui//",
    ] {
        assert_eq!(route(other), None, "{other}");
    }
}

#[test]
fn the_assets_hold_no_external_reference() {
    for asset in [STYLE, SCRIPT, ICON] {
        // An SVG names its namespace by URL; nothing loads it.
        let asset = asset.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !asset.contains("http://") && !asset.contains("https://") && !asset.contains("//cdn")
        );
        assert!(
            !asset.contains("@import") && !asset.contains("eval(") && !asset.contains("innerHTML")
        );
    }
}

#[tokio::test]
async fn a_virtual_server_is_listed_with_its_members_and_exposed_tools() {
    let config = daemon_config(std::path::Path::new("/srv"));
    let directory = directory();
    let html = body(respond(&directory, &config, WebRoute::Index { base: "" })).await;
    assert_inert(&html);
    assert!(html.contains("data-server=\"all\""), "{html}");
    let html = body(respond(&directory, &config, WebRoute::Server("all"))).await;
    assert_inert(&html);
    assert!(
        html.contains("<dt>Members</dt><dd>shown (running), off (disabled)</dd>"),
        "{html}"
    );
    // The member's hostile tool name, exposed as <member>_<tool>, is left out as invalid.
    assert!(html.contains("Tools"), "{html}");
}
