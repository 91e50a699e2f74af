//! Client setup: what each MCP client needs to reach servers through the gateway, in the
//! format that client documents. One implementation for `mcpctl connect` and the web page.
//!
//! Every client here speaks streamable HTTP to the server's gateway endpoint and sends the
//! token as `Authorization: Bearer ...`, except Claude Desktop, whose config file takes only
//! stdio servers: it runs `npx mcp-remote URL --header ...` as a local bridge.

use serde_json::{Map, Value, json};

/// The clients `mcpctl connect` knows, by the name given on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    ClaudeCode,
    ClaudeDesktop,
    VsCode,
    Cursor,
    Generic,
}

impl ClientKind {
    pub const ALL: [ClientKind; 5] = [
        ClientKind::ClaudeCode,
        ClientKind::ClaudeDesktop,
        ClientKind::VsCode,
        ClientKind::Cursor,
        ClientKind::Generic,
    ];

    /// The command-line name: `claude-code`, `claude-desktop`, `vscode`, `cursor`, `generic`.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::ClaudeCode => "claude-code",
            ClientKind::ClaudeDesktop => "claude-desktop",
            ClientKind::VsCode => "vscode",
            ClientKind::Cursor => "cursor",
            ClientKind::Generic => "generic",
        }
    }

    /// The name people know the client by.
    pub fn title(self) -> &'static str {
        match self {
            ClientKind::ClaudeCode => "Claude Code",
            ClientKind::ClaudeDesktop => "Claude Desktop",
            ClientKind::VsCode => "VS Code",
            ClientKind::Cursor => "Cursor",
            ClientKind::Generic => "Other clients",
        }
    }

    pub fn from_name(name: &str) -> Option<ClientKind> {
        ClientKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One server as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's name, also the client-side name of the entry.
    pub name: String,
    /// The gateway endpoint (`public_url/api/v1/mcp/<name>/mcp` or the configured `endpoint`).
    pub url: String,
    pub oauth_required: bool,
    /// A token passes with any one of these.
    pub scopes: Vec<String>,
    /// The audience a token must carry, when known (mcpctl knows it; the web page does not).
    pub audience: Option<String>,
    /// A token to put in the header; `None` leaves a placeholder for OAuth servers.
    pub token: Option<String>,
}

impl Target {
    /// The environment variable the placeholder names: `MCPD_<NAME>_TOKEN`.
    pub fn token_variable(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("MCPD_{name}_TOKEN")
    }

    /// What goes after `Bearer `: the token, or `${VARIABLE}` for an OAuth server without one;
    /// `None` when no header is needed.
    fn bearer(&self, placeholder: impl Fn(&str) -> String) -> Option<String> {
        match (&self.token, self.oauth_required) {
            (Some(token), _) => Some(token.clone()),
            (None, true) => Some(placeholder(&self.token_variable())),
            (None, false) => None,
        }
    }
}

/// What one client needs: a file and its document, commands, and notes for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub client: ClientKind,
    /// Where the document goes, e.g. `.vscode/mcp.json`.
    pub file: &'static str,
    /// The JSON to put there (merge with what the file already holds).
    pub document: Value,
    /// Shell commands that do the same, where the client has them.
    pub commands: Vec<String>,
    pub notes: Vec<String>,
}

/// The setup of `client` for `targets`.
pub fn setup(client: ClientKind, targets: &[Target]) -> Setup {
    let mut notes = Vec::new();
    let (file, document, commands) = match client {
        ClientKind::ClaudeCode => claude_code(targets),
        ClientKind::ClaudeDesktop => claude_desktop(targets, &mut notes),
        ClientKind::VsCode => vscode(targets),
        ClientKind::Cursor => cursor(targets),
        ClientKind::Generic => generic(targets),
    };
    for target in targets {
        if target.oauth_required && target.token.is_none() {
            notes.push(token_note(client, target));
        }
    }
    Setup {
        client,
        file,
        document,
        commands,
        notes,
    }
}

fn headers(bearer: Option<String>) -> Option<Value> {
    bearer.map(|bearer| json!({ "Authorization": format!("Bearer {bearer}") }))
}

/// `{"type": "http", "url", "headers"}`, the entry Claude Code and VS Code share.
fn http_entry(target: &Target, placeholder: impl Fn(&str) -> String) -> Value {
    let mut entry = Map::new();
    entry.insert("type".into(), json!("http"));
    entry.insert("url".into(), json!(target.url));
    if let Some(headers) = headers(target.bearer(placeholder)) {
        entry.insert("headers".into(), headers);
    }
    Value::Object(entry)
}

fn by_name(targets: &[Target], entry: impl Fn(&Target) -> Value) -> Value {
    Value::Object(
        targets
            .iter()
            .map(|target| (target.name.clone(), entry(target)))
            .collect(),
    )
}

/// `.mcp.json` (`${VAR}` is expanded by Claude Code) and `claude mcp add` per server.
fn claude_code(targets: &[Target]) -> (&'static str, Value, Vec<String>) {
    let env = |variable: &str| format!("${{{variable}}}");
    let document = json!({ "mcpServers": by_name(targets, |t| http_entry(t, env)) });
    let commands = targets
        .iter()
        .map(|target| {
            let mut command = format!(
                "claude mcp add --transport http {} {}",
                shell_quote(&target.name),
                shell_quote(&target.url)
            );
            match (&target.token, target.oauth_required) {
                (Some(token), _) => {
                    command.push_str(" --header ");
                    command.push_str(&shell_quote(&format!("Authorization: Bearer {token}")));
                }
                // Double quotes: the shell puts the variable's value in.
                (None, true) => command.push_str(&format!(
                    " --header \"Authorization: Bearer ${}\"",
                    target.token_variable()
                )),
                (None, false) => {}
            }
            command
        })
        .collect();
    (".mcp.json", document, commands)
}

/// `claude_desktop_config.json` takes only stdio servers: `npx mcp-remote` bridges to HTTP.
fn claude_desktop(
    targets: &[Target],
    notes: &mut Vec<String>,
) -> (&'static str, Value, Vec<String>) {
    let document = json!({
        "mcpServers": by_name(targets, |target| {
            let mut args = vec![json!("-y"), json!("mcp-remote"), json!(target.url)];
            if needs_allow_http(&target.url) {
                args.push(json!("--allow-http"));
            }
            let mut entry = Map::new();
            entry.insert("command".into(), json!("npx"));
            if let Some(bearer) = target.bearer(|variable| format!("<{variable}>")) {
                // No space inside the argument: some launchers split arguments at spaces.
                args.push(json!("--header"));
                args.push(json!("Authorization:${AUTH_HEADER}"));
                entry.insert("args".into(), Value::Array(args));
                entry.insert("env".into(), json!({ "AUTH_HEADER": format!("Bearer {bearer}") }));
            } else {
                entry.insert("args".into(), Value::Array(args));
            }
            Value::Object(entry)
        })
    });
    notes.push(
        "Claude Desktop's config file runs local (stdio) servers only; `npx mcp-remote` (Node.js) \
         bridges to the gateway. Restart Claude Desktop after editing the file. A server reachable \
         from the internet over https can instead be added as a custom connector (Settings > \
         Connectors) with its URL; connectors send no custom headers."
            .to_owned(),
    );
    ("claude_desktop_config.json", document, Vec::new())
}

/// mcp-remote refuses plain http except to localhost.
fn needs_allow_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host,
    };
    !matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// `.vscode/mcp.json`: `servers`, and an `inputs` prompt for each missing token.
fn vscode(targets: &[Target]) -> (&'static str, Value, Vec<String>) {
    let input_id = |target: &Target| format!("mcpd-{}-token", target.name);
    let servers = by_name(targets, |target| {
        http_entry(target, |_| format!("${{input:{}}}", input_id(target)))
    });
    let inputs: Vec<Value> = targets
        .iter()
        .filter(|target| target.oauth_required && target.token.is_none())
        .map(|target| {
            json!({
                "type": "promptString",
                "id": input_id(target),
                "description": format!("Bearer token for the mcpd server {}", target.name),
                "password": true,
            })
        })
        .collect();
    let mut document = json!({ "servers": servers });
    if !inputs.is_empty() {
        document["inputs"] = Value::Array(inputs);
    }
    (".vscode/mcp.json", document, Vec::new())
}

/// `~/.cursor/mcp.json`: `{"url", "headers"}` (Cursor expands `${env:VAR}`).
fn cursor(targets: &[Target]) -> (&'static str, Value, Vec<String>) {
    let document = json!({
        "mcpServers": by_name(targets, |target| {
            let mut entry = Map::new();
            entry.insert("url".into(), json!(target.url));
            if let Some(headers) = headers(target.bearer(|variable| format!("${{env:{variable}}}"))) {
                entry.insert("headers".into(), headers);
            }
            Value::Object(entry)
        })
    });
    ("~/.cursor/mcp.json", document, Vec::new())
}

/// Everything a client needs, named plainly.
fn generic(targets: &[Target]) -> (&'static str, Value, Vec<String>) {
    let document = json!({
        "servers": by_name(targets, |target| {
            let mut entry = Map::new();
            entry.insert("url".into(), json!(target.url));
            entry.insert("transport".into(), json!("streamable-http"));
            entry.insert("oauth_required".into(), json!(target.oauth_required));
            entry.insert("scopes".into(), json!(target.scopes));
            if let Some(headers) = headers(target.bearer(|variable| format!("<{variable}>"))) {
                entry.insert("headers".into(), headers);
            }
            Value::Object(entry)
        })
    });
    ("mcp.json", document, Vec::new())
}

fn token_note(client: ClientKind, target: &Target) -> String {
    let placeholder = match client {
        ClientKind::ClaudeCode => format!("${{{}}}", target.token_variable()),
        ClientKind::VsCode => "the prompted value".to_owned(),
        ClientKind::Cursor => format!("${{env:{}}}", target.token_variable()),
        ClientKind::ClaudeDesktop | ClientKind::Generic => format!("<{}>", target.token_variable()),
    };
    let scopes = if target.scopes.is_empty() {
        "admin".to_owned()
    } else {
        target.scopes.join(", ")
    };
    let first = target.scopes.first().map_or("admin", String::as_str);
    let audience = target
        .audience
        .as_deref()
        .map(|aud| format!(" --aud {}", shell_quote(aud)))
        .unwrap_or_default();
    format!(
        "{name} requires a bearer token with one of the scopes: {scopes}. Replace {placeholder} \
         with a token from your authorization server, or on the daemon's host mint one with \
         `mcpctl token --scope {first}{audience}` (or run `mcpctl connect {client} {name} \
         --token-scope {first}`).",
        name = target.name,
        client = client.name(),
    )
}

/// `text` as one shell word: bare when it is plainly safe, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The setup as text for people: the commands, then the file and its document, then notes.
pub fn render_text(setup: &Setup) -> String {
    let mut text = format!("# {}\n", setup.client.title());
    if !setup.commands.is_empty() {
        text.push_str("\nRun:\n");
        for command in &setup.commands {
            text.push_str(&format!("  {command}\n"));
        }
        text.push_str(&format!("\nor put this in {}:\n", setup.file));
    } else {
        text.push_str(&format!("\nPut this in {}:\n", setup.file));
    }
    text.push_str(&render_document(setup));
    for note in &setup.notes {
        text.push_str(&format!("\nNote: {note}\n"));
    }
    text
}

/// The document alone, pretty-printed, ending with a newline.
pub fn render_document(setup: &Setup) -> String {
    let mut text = serde_json::to_string_pretty(&setup.document).expect("JSON values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
