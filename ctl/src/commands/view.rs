//! Read-only commands: `list`, `status`, `show`, `tools`, `list-packages`.

use mcpd_protocol::{
    ListPackagesRequest, ListRequest, MemberInfo, Request, Response, ShowReply, ShowRequest,
    StatusReply, StatusRequest, ToolEntry, ToolsRequest,
};
use serde::Serialize;

use super::{CommandResult, Outcome, Output, config_errors_text, one_line, or_dash, pretty_json};
use crate::client::{Client, unexpected};
use crate::table::{Table, short_duration};

pub(super) async fn list(client: &mut Client, out: &mut Output<'_>) -> CommandResult {
    let reply = match client.request(&Request::List(ListRequest {})).await? {
        Response::Status(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["NAME", "STATE", "PORT", "TOOLS", "DESCRIPTION"]);
    for s in &reply.servers {
        table.row([
            s.name.clone(),
            s.state.to_string(),
            or_dash(s.port),
            s.tools_count.to_string(),
            s.description.clone(),
        ]);
    }
    out.text(&table.render())?;
    Ok(Outcome::Success)
}

/// The `status` table.
pub fn status_table(reply: &StatusReply) -> String {
    let mut table = Table::new([
        "NAME",
        "STATE",
        "PID",
        "PORT",
        "UPTIME",
        "RESTARTS",
        "TOOLS",
        "LAST-ERROR",
    ]);
    for s in &reply.servers {
        table.row([
            s.name.clone(),
            s.state.to_string(),
            or_dash(s.pid),
            or_dash(s.port),
            s.uptime_ms.map_or_else(|| "-".to_owned(), short_duration),
            s.restarts.to_string(),
            s.tools_count.to_string(),
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    let mut text = table.render();
    if !reply.config_errors.is_empty() {
        text.push_str("\nconfiguration errors (these files keep their previous servers):\n");
        text.push_str(&config_errors_text(&reply.config_errors));
    }
    if !reply.conflicts.is_empty() {
        text.push_str("\ntools left out by virtual servers:\n");
        for conflict in &reply.conflicts {
            text.push_str(&format!("  {}\n", one_line(conflict)));
        }
    }
    text
}

pub(super) async fn status(
    client: &mut Client,
    out: &mut Output<'_>,
    name: Option<String>,
) -> CommandResult {
    let reply = match client
        .request(&Request::Status(StatusRequest { name }))
        .await?
    {
        Response::Status(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply)?;
    } else {
        out.text(&status_table(&reply))?;
    }
    Ok(Outcome::Success)
}

/// A tool as printed by `--json`: the schema as JSON, not as text.
#[derive(Serialize)]
pub(crate) struct ToolJson {
    server: String,
    name: String,
    description: Option<String>,
    input_schema: Option<serde_json::Value>,
}

pub(crate) fn tool_json(tool: &ToolEntry) -> ToolJson {
    ToolJson {
        server: tool.server.clone(),
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema: tool.input_schema_json.as_deref().map(|s| {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_owned()))
        }),
    }
}

pub(super) async fn show(client: &mut Client, out: &mut Output<'_>, name: String) -> CommandResult {
    let reply = match client.request(&Request::Show(ShowRequest { name })).await? {
        Response::Show(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        let mut value = serde_json::to_value(&reply)?;
        value["env"] = reply
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect();
        value["tools"] =
            serde_json::to_value(reply.tools.iter().map(tool_json).collect::<Vec<_>>())?;
        out.json(&value)?;
        return Ok(Outcome::Success);
    }
    let mut lines = match &reply.status.members {
        Some(members) => virtual_lines(&reply, members),
        None => server_lines(&reply),
    };
    let tools: Vec<&str> = reply.tools.iter().map(|t| t.name.as_str()).collect();
    lines.push((
        "tools",
        if tools.is_empty() {
            "-".to_owned()
        } else {
            tools.join(", ")
        },
    ));

    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in lines {
        let v = one_line(&v);
        text.push_str(&format!("{:<w$} {v}\n", format!("{k}:"), w = width + 1));
    }
    out.text(&text)?;
    Ok(Outcome::Success)
}

/// A configured duration as written in config files (`200ms`, `10s`, `1m 30s`): unlike
/// [`short_duration`], which rounds to seconds, it never turns `200ms` into `0s`.
fn exact_duration(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

pub(super) async fn tools(
    client: &mut Client,
    out: &mut Output<'_>,
    name: Option<String>,
    schema: bool,
) -> CommandResult {
    let reply = match client
        .request(&Request::Tools(ToolsRequest {
            name,
            schema,
            as_scopes: None,
        }))
        .await?
    {
        Response::Tools(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply.tools.iter().map(tool_json).collect::<Vec<_>>())?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["SERVER", "TOOL", "DESCRIPTION"]);
    for t in &reply.tools {
        let description = t
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        table.row([t.server.as_str(), t.name.as_str(), description]);
    }
    out.text(&table.render())?;
    if schema {
        for t in &reply.tools {
            let pretty = t
                .input_schema_json
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|v| pretty_json(&v).ok())
                .unwrap_or_else(|| "-".to_owned());
            out.text(&format!(
                "\n{}/{} input schema:\n{pretty}\n",
                one_line(&t.server),
                one_line(&t.name)
            ))?;
        }
    }
    Ok(Outcome::Success)
}

pub(super) async fn packages(client: &mut Client, out: &mut Output<'_>) -> CommandResult {
    let reply = match client
        .request(&Request::ListPackages(ListPackagesRequest {}))
        .await?
    {
        Response::Packages(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(["SERVER", "PACKAGE", "BINARY"]);
    for p in &reply.packages {
        table.row([
            p.server.clone(),
            or_dash(p.package.clone()),
            p.binary.clone(),
        ]);
    }
    out.text(&table.render())?;
    Ok(Outcome::Success)
}

/// `show` lines of a server with a process.
fn server_lines(reply: &ShowReply) -> Vec<(&'static str, String)> {
    let s = &reply.status;
    let mut lines: Vec<(&'static str, String)> = vec![
        ("name", s.name.clone()),
        ("description", s.description.clone()),
        ("state", s.state.to_string()),
        ("enabled", s.enabled.to_string()),
        ("pid", or_dash(s.pid)),
        ("port", or_dash(s.port)),
        (
            "uptime",
            s.uptime_ms.map_or_else(|| "-".to_owned(), short_duration),
        ),
        ("restarts", s.restarts.to_string()),
        ("last exit", or_dash(s.last_exit.clone())),
        ("last error", or_dash(s.last_error.clone())),
        ("file", reply.file.clone()),
        (
            "binary",
            format!("{} ({})", reply.binary_name, reply.binary),
        ),
        ("package", or_dash(reply.package.clone())),
        (
            "args",
            if reply.args.is_empty() {
                "-".to_owned()
            } else {
                reply.args.join(" ")
            },
        ),
        ("working dir", or_dash(reply.working_dir.clone())),
        ("endpoint", reply.endpoint.clone()),
        ("upstream", or_dash(reply.upstream_url.clone())),
        ("display in web", reply.display_in_web.to_string()),
        ("oauth required", reply.oauth_required.to_string()),
    ];
    if reply.oauth_required {
        let scopes = match reply.oauth_scopes.join(" ") {
            none if none.is_empty() => "none: any valid token passes (warning)".to_owned(),
            scopes => scopes,
        };
        lines.push(("oauth scopes", scopes));
        lines.push(("oauth audience", reply.oauth_audience.clone()));
        lines.push(("oauth client id", or_dash(reply.oauth_client_id.clone())));
    }
    lines.push(("restart", reply.restart_policy.clone()));
    lines.push((
        "health",
        format!(
            "every {}, timeout {}",
            exact_duration(reply.health_interval_ms),
            exact_duration(reply.health_timeout_ms)
        ),
    ));
    lines.push(("stop timeout", exact_duration(reply.stop_timeout_ms)));
    for (k, v) in &reply.env {
        lines.push(("env", format!("{k}={v}")));
    }
    if !reply.env_passthrough.is_empty() {
        lines.push(("env passthrough", reply.env_passthrough.join(" ")));
    }
    lines
}

/// `show` lines of a virtual server: its members and their states, filter and conflicts.
fn virtual_lines(reply: &ShowReply, members: &[MemberInfo]) -> Vec<(&'static str, String)> {
    let s = &reply.status;
    let mut lines: Vec<(&'static str, String)> = vec![
        ("name", s.name.clone()),
        (
            "kind",
            "virtual (offers the tools of its members)".to_owned(),
        ),
        ("description", s.description.clone()),
        ("state", s.state.to_string()),
        ("enabled", s.enabled.to_string()),
        ("file", reply.file.clone()),
        ("endpoint", reply.endpoint.clone()),
    ];
    for member in members {
        lines.push(("member", format!("{} ({})", member.name, member.state)));
    }
    if members.is_empty() {
        lines.push(("member", "- (no server matches)".to_owned()));
    }
    if !reply.tool_filter.is_empty() {
        lines.push(("tool filter", reply.tool_filter.join(" ")));
    }
    lines.push(("oauth required", reply.oauth_required.to_string()));
    if reply.oauth_required {
        let scopes = reply.oauth_scopes.join(" ");
        lines.push((
            "oauth scopes",
            or_dash(Some(scopes).filter(|s| !s.is_empty())),
        ));
        lines.push(("oauth audience", reply.oauth_audience.clone()));
    }
    for rule in &reply.tool_rules {
        lines.push((
            "tool rule",
            format!("{}: {}", rule.pattern, rule.scopes.join(" ")),
        ));
    }
    for conflict in &reply.conflicts {
        lines.push(("left out", conflict.clone()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::exact_duration;

    #[test]
    fn configured_durations_keep_their_milliseconds() {
        assert_eq!(exact_duration(200), "200ms");
        assert_eq!(exact_duration(10_000), "10s");
        assert_eq!(exact_duration(90_000), "1m 30s");
    }
}
