//! Read-only commands: `list`, `status`, `show`, `tools`, `list-packages`.

use mcpd_protocol::{
    ListPackagesRequest, ListRequest, MemberInfo, Request, Response, ShowReply, ShowRequest,
    StatusReply, StatusRequest, ToolAccess, ToolEntry, ToolRuleInfo, ToolsRequest,
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
        "CPU%",
        "MEM",
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
            or_dash(
                s.usage
                    .as_ref()
                    .and_then(|u| u.cpu_percent_hundredths)
                    .map(cpu_percent),
            ),
            or_dash(s.usage.as_ref().map(|u| human_bytes(u.memory_bytes))),
            s.restarts.to_string(),
            s.tools_count.to_string(),
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    let mut text = table.render();
    for s in reply.servers.iter().filter(|s| !s.session_pids.is_empty()) {
        text.push_str(&format!(
            "{}: {} session children: {}\n",
            s.name,
            s.session_pids.len(),
            pids_text(&s.session_pids)
        ));
    }
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

fn pids_text(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
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
    /// With `--as-scopes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<ToolAccess>,
}

pub(crate) fn tool_json(tool: &ToolEntry) -> ToolJson {
    ToolJson {
        server: tool.server.clone(),
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema: tool.input_schema_json.as_deref().map(|s| {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_owned()))
        }),
        access: tool.access.clone(),
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

fn server_lines(reply: &ShowReply) -> Vec<(&'static str, String)> {
    let s = &reply.status;
    let mut lines: Vec<(&'static str, String)> = vec![
        ("name", s.name.clone()),
        ("description", s.description.clone()),
        ("state", s.state.to_string()),
        ("enabled", s.enabled.to_string()),
        ("pid", or_dash(s.pid)),
        (
            "sessions",
            if s.session_pids.is_empty() {
                "-".to_owned()
            } else {
                format!("{}: {}", s.session_pids.len(), pids_text(&s.session_pids))
            },
        ),
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
    lines.extend(rule_lines(reply));
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
    lines.push(("limits", limits_text(&reply.limits)));
    if let Some(user) = &reply.limits.user {
        let ids = format!(
            "{user} (uid {}, gid {})",
            or_dash(reply.limits.uid),
            or_dash(reply.limits.gid)
        );
        lines.push(("user", ids));
    }
    lines.push((
        "usage",
        or_dash(reply.status.usage.as_ref().map(usage_text)),
    ));
    for (k, v) in &reply.env {
        lines.push(("env", format!("{k}={v}")));
    }
    if !reply.env_passthrough.is_empty() {
        lines.push(("env passthrough", reply.env_passthrough.join(" ")));
    }
    lines
}

/// One member of a virtual server: its state and how old its cached tools are.
fn member_line(member: &MemberInfo) -> String {
    let mut line = format!("{} ({})", member.name, member.state);
    if let Some(at) = member.tools_cached_unix_ms {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
        line.push_str(&format!(
            ", tools cached at {}",
            humantime::format_rfc3339_seconds(at)
        ));
    }
    if member.stale {
        line.push_str(", stale");
    }
    line
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
        lines.push(("member", member_line(member)));
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

/// `oauth.tools` in order, and `audit.arguments`.
fn rule_lines(reply: &ShowReply) -> Vec<(&'static str, String)> {
    rule_lines_of(
        reply.oauth_required,
        &reply.tool_rules,
        reply.audit_arguments,
    )
}

fn rule_lines_of(
    oauth_required: bool,
    tool_rules: &[ToolRuleInfo],
    audit_arguments: bool,
) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if oauth_required || !tool_rules.is_empty() {
        lines.push((
            "tool rules",
            if tool_rules.is_empty() {
                "none: built-in scope meanings".to_owned()
            } else {
                "first match wins; admin may call every tool".to_owned()
            },
        ));
        for rule in tool_rules {
            let scopes = match rule.scopes.join(" ") {
                none if none.is_empty() => "admin only".to_owned(),
                scopes => scopes,
            };
            lines.push(("tool rule", format!("{} -> {scopes}", rule.pattern)));
        }
    }
    lines.push(("audit args", audit_arguments.to_string()));
    lines
}

/// Hundredths of a percent as `12.3`.
fn cpu_percent(hundredths: u32) -> String {
    format!("{:.1}", f64::from(hundredths) / 100.0)
}

/// A byte count with a binary unit, short: `840K`, `64.0M`, `1.5G`.
fn human_bytes(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value >= 100.0 || unit == "K" {
                format!("{value:.0}{unit}")
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

/// `limits:` as written in a server file, with the user the server runs as.
fn limits_text(limits: &mcpd_protocol::LimitsInfo) -> String {
    let mut parts = Vec::new();
    if let Some(memory) = limits.memory_bytes {
        parts.push(format!("memory {}", human_bytes(memory)));
    }
    if let Some(cpu) = limits.cpu_millis {
        parts.push(format!("cpu {}", cpu as f64 / 1000.0));
    }
    if let Some(tasks) = limits.tasks {
        parts.push(format!("tasks {tasks}"));
    }
    if let Some(files) = limits.open_files {
        parts.push(format!("open_files {files}"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Current usage for `show`.
fn usage_text(usage: &mcpd_protocol::ServerUsage) -> String {
    let mut text = format!("memory {}", human_bytes(usage.memory_bytes));
    if let Some(peak) = usage.memory_peak_bytes {
        text.push_str(&format!(" (peak {})", human_bytes(peak)));
    }
    text.push_str(&format!(
        ", cpu time {:.1}s",
        usage.cpu_time_ms as f64 / 1000.0
    ));
    if let Some(cpu) = usage.cpu_percent_hundredths {
        text.push_str(&format!(" ({}%)", cpu_percent(cpu)));
    }
    text.push_str(&format!(
        ", tasks {}, oom kills {}, from {}",
        usage.tasks,
        usage.oom_kills,
        if usage.from_cgroup { "cgroup" } else { "/proc" }
    ));
    text
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
    as_scopes: Option<Vec<String>>,
) -> CommandResult {
    let reply = match client
        .request(&Request::Tools(ToolsRequest {
            name,
            schema,
            as_scopes,
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
    out.text(&tools_table(&reply.tools))?;
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

/// The `tools` table; with `--as-scopes`, whether those scopes may call each tool, the rule
/// that decided (`built-in`: the scope meanings) and, when they may not, the scopes that would.
fn tools_table(tools: &[ToolEntry]) -> String {
    let with_access = tools.iter().any(|t| t.access.is_some());
    let mut table = if with_access {
        Table::new([
            "SERVER",
            "TOOL",
            "MAY-CALL",
            "RULE",
            "ALLOWING",
            "DESCRIPTION",
        ])
    } else {
        Table::new(["SERVER", "TOOL", "DESCRIPTION"])
    };
    for t in tools {
        let description = t
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        match (with_access, &t.access) {
            (false, _) => table.row([t.server.clone(), t.name.clone(), description]),
            (true, access) => {
                let (may_call, rule, allowing) = match access {
                    Some(access) => (
                        if access.may_call { "yes" } else { "no" },
                        access.rule.clone().unwrap_or_else(|| "built-in".to_owned()),
                        if access.allowing.is_empty() {
                            "-".to_owned()
                        } else {
                            access.allowing.join(" ")
                        },
                    ),
                    None => ("-", "-".to_owned(), "-".to_owned()),
                };
                table.row([
                    t.server.clone(),
                    t.name.clone(),
                    may_call.to_owned(),
                    rule,
                    allowing,
                    description,
                ]);
            }
        }
    }
    table.render()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, access: Option<ToolAccess>) -> ToolEntry {
        ToolEntry {
            server: "db".into(),
            name: name.into(),
            description: Some("Does it.\nSecond line".into()),
            input_schema_json: None,
            access,
        }
    }

    #[test]
    fn tools_with_access_say_yes_or_no_with_the_rule_and_the_allowing_scopes() {
        let tools = [
            entry(
                "delete_db",
                Some(ToolAccess {
                    may_call: false,
                    rule: Some("delete_*".into()),
                    allowing: vec!["admin".into(), "ops".into()],
                }),
            ),
            entry(
                "search",
                Some(ToolAccess {
                    may_call: true,
                    rule: None,
                    allowing: Vec::new(),
                }),
            ),
        ];
        assert_eq!(
            tools_table(&tools),
            "SERVER  TOOL       MAY-CALL  RULE      ALLOWING   DESCRIPTION\n\
             db      delete_db  no        delete_*  admin ops  Does it.\n\
             db      search     yes       built-in  -          Does it.\n"
        );
        let plain = [entry("search", None)];
        assert_eq!(
            tools_table(&plain),
            "SERVER  TOOL    DESCRIPTION\ndb      search  Does it.\n"
        );
    }

    #[test]
    fn show_lists_the_rules_in_order_and_audit_arguments() {
        let rules = [
            ToolRuleInfo {
                pattern: "delete_*".into(),
                scopes: Vec::new(),
            },
            ToolRuleInfo {
                pattern: "*".into(),
                scopes: vec!["tools:write".into(), "user".into()],
            },
        ];
        assert_eq!(
            rule_lines_of(true, &rules, true),
            [
                (
                    "tool rules",
                    "first match wins; admin may call every tool".to_owned()
                ),
                ("tool rule", "delete_* -> admin only".to_owned()),
                ("tool rule", "* -> tools:write user".to_owned()),
                ("audit args", "true".to_owned()),
            ]
        );
        assert_eq!(
            rule_lines_of(true, &[], false)[0].1,
            "none: built-in scope meanings"
        );
        assert_eq!(
            rule_lines_of(false, &[], false),
            [("audit args", "false".to_owned())]
        );
    }

    #[test]
    fn tool_json_carries_access_only_when_asked() {
        let asked = serde_json::to_value(tool_json(&entry(
            "x",
            Some(ToolAccess {
                may_call: false,
                rule: None,
                allowing: vec!["admin".into()],
            }),
        )))
        .unwrap();
        assert_eq!(
            asked["access"],
            serde_json::json!({"may_call": false, "rule": null, "allowing": ["admin"]})
        );
        let plain = serde_json::to_value(tool_json(&entry("x", None))).unwrap();
        assert!(plain.get("access").is_none(), "{plain}");
    }

    #[test]
    fn sizes_are_short() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(840 << 10), "840K");
        assert_eq!(human_bytes(64 << 20), "64.0M");
        assert_eq!(human_bytes(512 << 20), "512M");
        assert_eq!(human_bytes(3 << 29), "1.5G");
    }

    #[test]
    fn configured_durations_keep_their_milliseconds() {
        assert_eq!(exact_duration(200), "200ms");
        assert_eq!(exact_duration(10_000), "10s");
        assert_eq!(exact_duration(90_000), "1m 30s");
    }
}
