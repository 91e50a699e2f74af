//! The page's HTML: the server list, one server's tools, client setup, and "not found".
//!
//! Every value a server or the configuration controls goes through [`escape`]; the only
//! unescaped text is this file's own markup.

use std::sync::Arc;

use mcpd_protocol::connect::{self, ClientKind, Target};

use super::html::{escape, push};
use crate::directory::{Directory, ToolInfo};

/// What the page shows of one server: the registry's public fields and its tools.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub name: String,
    pub description: String,
    pub endpoint: String,
    pub state: &'static str,
    pub oauth_required: bool,
    pub oauth_scopes: Vec<String>,
    /// `oauth.tools`, in order: (pattern, scopes).
    pub tool_rules: Vec<(String, Vec<String>)>,
    pub tools: Arc<[ToolInfo]>,
    /// A virtual server's members and their states (`None` for a server with a process).
    pub members: Option<Vec<(String, &'static str)>>,
}

/// The enabled servers with `display_in_web`, by name.
pub fn displayed(directory: &Directory) -> Vec<ServerView> {
    directory
        .all()
        .values()
        .filter_map(|entry| {
            let config = entry.config.load();
            if !config.enabled || !config.display_in_web {
                return None;
            }
            let status = entry.status.load();
            Some((
                config.name.clone(),
                ServerView {
                    name: config.name.clone(),
                    description: config.description.clone(),
                    endpoint: config.endpoint.clone(),
                    state: status.state.as_str(),
                    oauth_required: config.oauth.required,
                    oauth_scopes: config.oauth.scopes.clone(),
                    tool_rules: config
                        .oauth
                        .tools
                        .iter()
                        .map(|rule| (rule.pattern.to_string(), rule.scopes.clone()))
                        .collect(),
                    tools: status.tools.clone(),
                    members: None,
                },
            ))
        })
        .chain(displayed_virtuals(directory))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect()
}

/// The enabled virtual servers with `display_in_web`: their exposed tools and members.
fn displayed_virtuals(directory: &Directory) -> Vec<(String, ServerView)> {
    let all = directory.all();
    directory
        .virtuals()
        .values()
        .filter(|config| config.enabled && config.display_in_web)
        .map(|config| {
            let catalog = crate::virtuals::catalog_of(directory, config);
            let tools: Vec<ToolInfo> = catalog
                .tools
                .iter()
                .map(|(exposed, tool)| ToolInfo {
                    name: exposed.clone(),
                    ..tool.info.clone()
                })
                .collect();
            let members = config
                .members
                .iter()
                .map(|member| {
                    let state = all
                        .get(member)
                        .map_or("stopped", |entry| entry.status.load().state.as_str());
                    (member.clone(), state)
                })
                .collect();
            let view = ServerView {
                name: config.name.clone(),
                description: config.description.clone(),
                endpoint: config.endpoint.clone(),
                state: directory.virtual_state(config).as_str(),
                oauth_required: config.oauth.required,
                oauth_scopes: config.oauth.scopes.clone(),
                tool_rules: config
                    .oauth
                    .tools
                    .iter()
                    .map(|rule| (rule.pattern.to_string(), rule.scopes.clone()))
                    .collect(),
                tools: Arc::from(tools),
                members: Some(members),
            };
            (config.name.clone(), view)
        })
        .collect()
}

/// The document around `main`; `base` leads from the page back to `/ui/`.
fn document(title: &str, base: &str, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 1024);
    push(
        &mut out,
        format_args!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n\
             <link rel=\"icon\" href=\"{base}static/icon.svg\" type=\"image/svg+xml\">\n\
             <link rel=\"stylesheet\" href=\"{base}static/style.css\">\n\
             <script src=\"{base}static/live.js\" defer></script>\n\
             </head>\n<body>\n\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
             <header class=\"top\"><p class=\"brand\"><a href=\"{base}\">mcpd</a></p>\
             <p class=\"version\">version {version}</p></header>\n\
             <main id=\"main\">\n{main}</main>\n\
             <footer><p>Served by mcpd; this page shows only what the public registry \
             (<a href=\"{base}../api/v1/mcp/registry\">JSON</a>) publishes.</p></footer>\n\
             </body>\n</html>\n",
            title = escape(title),
            version = env!("CARGO_PKG_VERSION"),
        ),
    );
    out
}

/// The live line: what the script updates; without the script it says how to refresh.
fn live_line(out: &mut String) {
    out.push_str(
        "<p id=\"live\" class=\"live\">Reload the page to see current states.</p>\n\
         <p id=\"announce\" class=\"visually-hidden\" role=\"status\" aria-live=\"polite\"></p>\n",
    );
}

fn state_badge(out: &mut String, state: &str) {
    push(
        out,
        format_args!(
            "<span class=\"state state-{state}\" data-field=\"state\">{state}</span>",
            state = escape(state)
        ),
    );
}

fn oauth_text(server: &ServerView) -> String {
    if !server.oauth_required {
        return "not required".to_owned();
    }
    if server.oauth_scopes.is_empty() {
        return "required (scope admin)".to_owned();
    }
    format!("required (any of: {})", server.oauth_scopes.join(", "))
}

/// The facts of one server as a description list; `tools` is live-updated.
fn facts(out: &mut String, server: &ServerView) {
    push(
        out,
        format_args!(
            "<dl class=\"facts\">\n\
             <dt>Endpoint</dt><dd><code class=\"url\">{endpoint}</code></dd>\n\
             <dt>OAuth</dt><dd>{oauth}</dd>\n\
             <dt>Tools</dt><dd data-field=\"tools\">{tools}</dd>\n",
            endpoint = escape(&server.endpoint),
            oauth = escape(&oauth_text(server)),
            tools = server.tools.len(),
        ),
    );
    if let Some(members) = &server.members {
        let members: Vec<String> = members
            .iter()
            .map(|(name, state)| format!("{} ({})", escape(name), escape(state)))
            .collect();
        push(
            out,
            format_args!(
                "<dt>Members</dt><dd>{}</dd>\n",
                if members.is_empty() {
                    "none".to_owned()
                } else {
                    members.join(", ")
                }
            ),
        );
    }
    out.push_str("</dl>\n");
}

/// `/` and `/ui/`: every displayed server, then client setup for all of them.
pub fn index(servers: &[ServerView], base: &str) -> String {
    let mut main = String::new();
    main.push_str("<h1>MCP servers</h1>\n");
    live_line(&mut main);
    if servers.is_empty() {
        main.push_str("<p>No server is shown here. Servers appear when they are enabled and have <code>display_in_web: true</code>.</p>\n");
    } else {
        main.push_str("<ul class=\"servers\">\n");
        for server in servers {
            let name = escape(&server.name);
            push(
                &mut main,
                format_args!(
                    "<li class=\"server\" data-server=\"{name}\">\n\
                     <article aria-labelledby=\"server-{name}\">\n\
                     <h2 id=\"server-{name}\"><a href=\"{base}servers/{name}\">{name}</a></h2>\n"
                ),
            );
            state_badge(&mut main, server.state);
            if !server.description.is_empty() {
                push(
                    &mut main,
                    format_args!(
                        "<p class=\"description\">{}</p>\n",
                        escape(&server.description)
                    ),
                );
            }
            facts(&mut main, server);
            main.push_str("</article>\n</li>\n");
        }
        main.push_str("</ul>\n");
        setup_section(&mut main, servers, "Connect a client");
    }
    document("mcpd: MCP servers", base, &main)
}

/// `/ui/servers/<name>`: the server, its tools with their input schemas, and its setup.
pub fn server(server: &ServerView) -> String {
    let name = escape(&server.name);
    let mut main = String::new();
    push(
        &mut main,
        format_args!(
            "<nav aria-label=\"Breadcrumb\"><a href=\"../\">All servers</a></nav>\n\
             <div class=\"server\" data-server=\"{name}\">\n<h1>{name}</h1>\n"
        ),
    );
    state_badge(&mut main, server.state);
    live_line(&mut main);
    if !server.description.is_empty() {
        push(
            &mut main,
            format_args!(
                "<p class=\"description\">{}</p>\n",
                escape(&server.description)
            ),
        );
    }
    facts(&mut main, server);
    main.push_str("</div>\n");
    rules_section(&mut main, server);
    main.push_str("<section aria-labelledby=\"tools\">\n<h2 id=\"tools\">Tools</h2>\n");
    if server.tools.is_empty() {
        main.push_str("<p>No tools listed yet: they are read when the server passes its first health check.</p>\n");
    }
    for (index, tool) in server.tools.iter().enumerate() {
        let schema = serde_json::from_str::<serde_json::Value>(tool.input_schema.get())
            .and_then(|schema| serde_json::to_string_pretty(&schema))
            .unwrap_or_default();
        push(
            &mut main,
            format_args!(
                "<article class=\"tool\" aria-labelledby=\"tool-{index}\">\n\
                 <h3 id=\"tool-{index}\"><code>{tool_name}</code></h3>\n\
                 <p>{description}</p>\n\
                 <details><summary>Input schema</summary>\
                 <pre tabindex=\"0\"><code>{schema}</code></pre></details>\n\
                 </article>\n",
                tool_name = escape(&tool.name),
                description = escape(tool.description.as_deref().unwrap_or("(no description)")),
                schema = escape(&schema),
            ),
        );
    }
    main.push_str("</section>\n");
    setup_section(&mut main, std::slice::from_ref(server), "Connect a client");
    document(&format!("mcpd: {}", server.name), "../", &main)
}

/// The server's per-tool rules, when it has them: who may call which tool.
fn rules_section(out: &mut String, server: &ServerView) {
    if server.tool_rules.is_empty() {
        return;
    }
    out.push_str(
        "<section aria-labelledby=\"rules\">\n<h2 id=\"rules\">Who may call which tool</h2>\n\
         <p>The first pattern that matches a tool decides; <code>admin</code> may call every tool.</p>\n\
         <table>\n<thead><tr><th scope=\"col\">Tools</th><th scope=\"col\">Scopes</th></tr></thead>\n<tbody>\n",
    );
    for (pattern, scopes) in &server.tool_rules {
        let scopes: Vec<String> = scopes
            .iter()
            .map(|scope| format!("<code>{}</code>", escape(scope)))
            .collect();
        push(
            out,
            format_args!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>\n",
                escape(pattern),
                scopes.join(", ")
            ),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The answer for a server that is unknown, disabled or not shown.
pub fn not_found(name: &str) -> String {
    let main = format!(
        "<h1>No such server</h1>\n<p>No server named <code>{}</code> is shown here.</p>\n\
         <p><a href=\"../\">All servers</a></p>\n",
        escape(name)
    );
    document("mcpd: not found", "../", &main)
}

/// Client setup for `servers`, one disclosure per client, from `mcpd_protocol::connect`.
fn setup_section(out: &mut String, servers: &[ServerView], title: &str) {
    let targets: Vec<Target> = servers
        .iter()
        .map(|server| Target {
            name: server.name.clone(),
            url: server.endpoint.clone(),
            oauth_required: server.oauth_required,
            scopes: server.oauth_scopes.clone(),
            audience: None,
            token: None,
        })
        .collect();
    push(
        out,
        format_args!(
            "<section aria-labelledby=\"connect\">\n<h2 id=\"connect\">{}</h2>\n\
             <p>The same as <code>mcpctl connect CLIENT</code> prints; with \
             <code>--token-scope</code>, mcpctl also puts a fresh token in.</p>\n",
            escape(title)
        ),
    );
    for kind in ClientKind::ALL {
        let setup = connect::setup(kind, &targets);
        push(
            out,
            format_args!(
                "<details class=\"client\">\n<summary>{}</summary>\n",
                escape(kind.title())
            ),
        );
        if !setup.commands.is_empty() {
            out.push_str("<p>Run:</p>\n<pre tabindex=\"0\"><code>");
            for command in &setup.commands {
                out.push_str(&escape(command));
                out.push('\n');
            }
            out.push_str("</code></pre>\n<p>or put this in ");
        } else {
            out.push_str("<p>Put this in ");
        }
        push(
            out,
            format_args!(
                "<code>{}</code>:</p>\n<pre tabindex=\"0\"><code>{}</code></pre>\n",
                escape(setup.file),
                escape(&connect::render_document(&setup))
            ),
        );
        for note in &setup.notes {
            push(
                out,
                format_args!("<p class=\"note\">{}</p>\n", escape(note)),
            );
        }
        out.push_str("</details>\n");
    }
    out.push_str("</section>\n");
}
