use serde_json::json;

use super::*;

fn open(name: &str) -> Target {
    Target {
        name: name.to_owned(),
        url: format!("http://localhost:8080/api/v1/mcp/{name}/mcp"),
        oauth_required: false,
        scopes: Vec::new(),
        audience: None,
        token: None,
    }
}

fn secure(name: &str, token: Option<&str>) -> Target {
    Target {
        oauth_required: true,
        scopes: vec!["tools".to_owned(), "admin".to_owned()],
        audience: Some("mcp".to_owned()),
        token: token.map(str::to_owned),
        ..open(name)
    }
}

#[test]
fn client_names_round_trip() {
    for kind in ClientKind::ALL {
        assert_eq!(ClientKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(ClientKind::from_name("claude"), None);
}

#[test]
fn claude_code_mcp_json_and_command() {
    let setup = setup(
        ClientKind::ClaudeCode,
        &[open("echo"), secure("vault", Some("T0K"))],
    );
    assert_eq!(setup.file, ".mcp.json");
    assert_eq!(
        setup.document,
        json!({"mcpServers": {
            "echo": {"type": "http", "url": "http://localhost:8080/api/v1/mcp/echo/mcp"},
            "vault": {"type": "http", "url": "http://localhost:8080/api/v1/mcp/vault/mcp",
                      "headers": {"Authorization": "Bearer T0K"}},
        }})
    );
    assert_eq!(
        setup.commands,
        [
            "claude mcp add --transport http echo http://localhost:8080/api/v1/mcp/echo/mcp",
            "claude mcp add --transport http vault http://localhost:8080/api/v1/mcp/vault/mcp \
             --header 'Authorization: Bearer T0K'",
        ]
    );
    assert!(setup.notes.is_empty(), "{:?}", setup.notes);
}

#[test]
fn placeholders_name_an_environment_variable_and_a_note_says_how_to_get_a_token() {
    let setup = setup(ClientKind::ClaudeCode, &[secure("my-vault", None)]);
    assert_eq!(
        setup.document["mcpServers"]["my-vault"]["headers"]["Authorization"],
        "Bearer ${MCPD_MY_VAULT_TOKEN}"
    );
    assert!(setup.commands[0].ends_with("--header \"Authorization: Bearer $MCPD_MY_VAULT_TOKEN\""));
    assert_eq!(setup.notes.len(), 1);
    assert!(
        setup.notes[0].contains("mcpctl token --scope tools --aud mcp"),
        "{}",
        setup.notes[0]
    );
    assert!(
        setup.notes[0].contains("tools, admin"),
        "{}",
        setup.notes[0]
    );
}

#[test]
fn claude_desktop_runs_mcp_remote_with_the_header_from_env() {
    let mut remote = secure("vault", Some("T0K"));
    remote.url = "http://10.0.0.5:8080/api/v1/mcp/vault/mcp".to_owned();
    let setup = setup(ClientKind::ClaudeDesktop, &[open("echo"), remote]);
    assert_eq!(setup.file, "claude_desktop_config.json");
    assert_eq!(
        setup.document,
        json!({"mcpServers": {
            "echo": {"command": "npx",
                     "args": ["-y", "mcp-remote", "http://localhost:8080/api/v1/mcp/echo/mcp"]},
            "vault": {"command": "npx",
                      "args": ["-y", "mcp-remote", "http://10.0.0.5:8080/api/v1/mcp/vault/mcp",
                               "--allow-http", "--header", "Authorization:${AUTH_HEADER}"],
                      "env": {"AUTH_HEADER": "Bearer T0K"}},
        }})
    );
    // Only stdio entries: no url or type the desktop app would refuse.
    for entry in setup.document["mcpServers"].as_object().unwrap().values() {
        assert!(
            entry.get("url").is_none()
                && entry.get("type").is_none()
                && entry.get("transport").is_none()
        );
    }
    assert!(setup.notes[0].contains("connector"));
}

#[test]
fn vscode_servers_with_type_http_and_prompted_inputs() {
    let setup = setup(
        ClientKind::VsCode,
        &[secure("vault", None), secure("open", Some("X"))],
    );
    assert_eq!(setup.file, ".vscode/mcp.json");
    assert_eq!(
        setup.document,
        json!({
            "servers": {
                "vault": {"type": "http", "url": "http://localhost:8080/api/v1/mcp/vault/mcp",
                          "headers": {"Authorization": "Bearer ${input:mcpd-vault-token}"}},
                "open": {"type": "http", "url": "http://localhost:8080/api/v1/mcp/open/mcp",
                         "headers": {"Authorization": "Bearer X"}},
            },
            "inputs": [{"type": "promptString", "id": "mcpd-vault-token",
                        "description": "Bearer token for the mcpd server vault", "password": true}],
        })
    );
}

#[test]
fn cursor_entries_have_url_and_headers_only() {
    let setup = setup(ClientKind::Cursor, &[open("echo"), secure("vault", None)]);
    assert_eq!(setup.file, "~/.cursor/mcp.json");
    assert_eq!(
        setup.document,
        json!({"mcpServers": {
            "echo": {"url": "http://localhost:8080/api/v1/mcp/echo/mcp"},
            "vault": {"url": "http://localhost:8080/api/v1/mcp/vault/mcp",
                      "headers": {"Authorization": "Bearer ${env:MCPD_VAULT_TOKEN}"}},
        }})
    );
}

#[test]
fn generic_names_transport_and_oauth() {
    let setup = setup(ClientKind::Generic, &[secure("vault", Some("T"))]);
    assert_eq!(
        setup.document["servers"]["vault"],
        json!({"url": "http://localhost:8080/api/v1/mcp/vault/mcp", "transport": "streamable-http",
               "oauth_required": true, "scopes": ["tools", "admin"],
               "headers": {"Authorization": "Bearer T"}})
    );
}

#[test]
fn hostile_urls_stay_one_shell_word() {
    let mut target = open("echo");
    target.url = "http://x/$(reboot)'`id`;\n".to_owned();
    let setup = setup(ClientKind::ClaudeCode, &[target]);
    assert_eq!(
        setup.commands[0],
        "claude mcp add --transport http echo 'http://x/$(reboot)'\\''`id`;\n'"
    );
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("a b"), "'a b'");
}

#[test]
fn allow_http_only_off_localhost() {
    assert!(!needs_allow_http("http://localhost:8080/x"));
    assert!(!needs_allow_http("http://127.0.0.1/x"));
    assert!(!needs_allow_http("http://[::1]:80/x"));
    assert!(!needs_allow_http("https://mcp.example.com/x"));
    assert!(needs_allow_http("http://mcp.example.com:8080/x"));
    assert!(needs_allow_http("http://localhost.evil.com/x"));
}

#[test]
fn text_lists_commands_file_and_notes() {
    let text = render_text(&setup(ClientKind::ClaudeCode, &[secure("vault", None)]));
    assert!(
        text.starts_with("# Claude Code\n\nRun:\n  claude mcp add"),
        "{text}"
    );
    assert!(text.contains("or put this in .mcp.json:\n{"), "{text}");
    assert!(text.contains("\nNote: vault requires"), "{text}");
}
