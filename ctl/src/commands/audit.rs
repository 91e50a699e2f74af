//! `audit`: print the audit log, one line per call; with `--follow`, new records until
//! Ctrl-C. `--json` prints the records as the daemon wrote them, one JSON line each.
//!
//! Records hold strings a client controls (a denied call's tool name, a token's subject):
//! each is escaped for the terminal, and quoted when it holds a space, a quote or an `=`, so
//! no value can pass for another field.

use std::time::SystemTime;

use mcpd_protocol::terminal::{self, Keep};
use mcpd_protocol::{AuditDecision, AuditRecord, AuditRequest, Request, Response};

use super::{CommandResult, Outcome, Output, follow};
use crate::cli::Since;
use crate::client::{Client, unexpected};

/// What `mcpctl audit` asked for.
pub(super) struct Query {
    pub server: Option<String>,
    pub tool: Option<String>,
    pub since: Option<Since>,
    pub lines: u32,
    pub follow: bool,
}

/// One field of a text line: quoted if it could be read as several fields (a space, a quote,
/// an `=`, nothing at all), then escaped for the terminal.
fn field(text: &str) -> String {
    let plain =
        !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
    if plain {
        return terminal::escape(text, Keep::Nothing).into_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    terminal::escape(&quoted, Keep::Nothing).into_owned()
}

fn optional(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), field)
}

/// A record as one line: time, decision, server[/member], tool, HTTP status (`-` for
/// `mcpctl call`), outcome (`ok`, `isError`, `error=CODE`, `-` with no answer), duration,
/// subject, client id, caller, and last the arguments when kept.
pub(crate) fn record_line(record: &AuditRecord) -> String {
    let decision = match record.decision {
        AuditDecision::Allow => "allow",
        AuditDecision::Deny => "deny",
    };
    let mut target = field(&record.server);
    if let Some(member) = &record.member {
        target.push('/');
        target.push_str(&field(member));
    }
    let status = match record.status {
        0 => "-".to_owned(),
        status => status.to_string(),
    };
    let outcome = match (record.error_code, record.is_error) {
        (Some(code), _) => format!("error={code}"),
        (None, Some(true)) => "isError".to_owned(),
        (None, Some(false)) => "ok".to_owned(),
        (None, None) => "-".to_owned(),
    };
    let mut line = format!(
        "{} {decision} {target} {} status={status} {outcome} {:.1}ms sub={} client={} caller={}",
        field(&record.time),
        field(&record.tool),
        record.duration_ms,
        optional(record.subject.as_deref()),
        optional(record.client_id.as_deref()),
        field(&record.caller),
    );
    if let Some(arguments) = &record.arguments {
        // Last on the line: whatever it holds cannot pass for another field.
        line.push_str(" args=");
        line.push_str(&terminal::escape(arguments, Keep::Nothing));
    }
    line.push('\n');
    line
}

/// Prints one record as the daemon sent it (JSON text).
fn print(out: &mut Output<'_>, json: &str) -> std::io::Result<()> {
    if out.json {
        out.out.write_all(terminal::json_safe(json).as_bytes())?;
        return writeln!(out.out);
    }
    match serde_json::from_str::<AuditRecord>(json) {
        Ok(record) => out.text(&record_line(&record)),
        // From a newer daemon, perhaps: shown as it is rather than lost.
        Err(_) => out.text(&format!("{}\n", field(json))),
    }
}

pub(super) async fn audit(
    client: &mut Client,
    out: &mut Output<'_>,
    query: Query,
) -> CommandResult {
    let request = Request::Audit(AuditRequest {
        server: query.server,
        tool: query.tool,
        since_unix_ms: query.since.map(|since| since.unix_ms(SystemTime::now())),
        lines: query.lines,
        follow: query.follow,
    });
    let backlog = match client.request(&request).await? {
        Response::Audit(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    for record in &backlog.records {
        print(out, record)?;
    }
    if backlog.dropped > 0 && !out.json {
        eprintln!(
            "mcpctl: {} audit records were dropped since mcpd started (the disk could not keep up or could not be written; see mcpd_audit_dropped_total)",
            backlog.dropped
        );
    }
    if !query.follow {
        return Ok(Outcome::Success);
    }
    follow(
        client,
        out,
        "records skipped (too many to follow)",
        |out, frame| match frame {
            Response::AuditRecord(record) => Some(print(out, record)),
            _ => None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            time: "2026-11-29T19:20:01.123Z".into(),
            ts: 1_795_980_001_123,
            server: "db".into(),
            member: None,
            tool: "drop_table".into(),
            subject: Some("alice".into()),
            client_id: Some("cli-1".into()),
            scopes: vec!["admin".into()],
            decision: AuditDecision::Allow,
            status: 200,
            error_code: None,
            is_error: Some(false),
            duration_ms: 12.345,
            request_id: Some("7".into()),
            caller: "127.0.0.1:40000".into(),
            via: "gateway".into(),
            arguments: None,
        }
    }

    #[test]
    fn a_gateway_call_is_one_line_with_every_field() {
        assert_eq!(
            record_line(&record()),
            "2026-11-29T19:20:01.123Z allow db drop_table status=200 ok 12.3ms sub=alice client=cli-1 caller=127.0.0.1:40000\n"
        );
    }

    #[test]
    fn outcomes_members_operator_calls_and_arguments() {
        let mut denied = record();
        denied.decision = AuditDecision::Deny;
        denied.status = 403;
        denied.is_error = None;
        denied.member = Some("pg".into());
        assert!(
            record_line(&denied).contains(" deny db/pg drop_table status=403 - "),
            "{}",
            record_line(&denied)
        );
        let mut failed = record();
        failed.error_code = Some(-32602);
        failed.is_error = None;
        assert!(record_line(&failed).contains(" status=200 error=-32602 "));
        let mut tool_error = record();
        tool_error.is_error = Some(true);
        assert!(record_line(&tool_error).contains(" status=200 isError "));
        let mut operator = record();
        operator.status = 0;
        operator.subject = None;
        operator.client_id = None;
        operator.caller = "uid:1000".into();
        operator.via = "mcpctl".into();
        operator.arguments = Some(r#"{"name":"users"}"#.into());
        assert_eq!(
            record_line(&operator),
            "2026-11-29T19:20:01.123Z allow db drop_table status=- ok 12.3ms sub=- client=- caller=uid:1000 args={\"name\":\"users\"}\n"
        );
    }

    #[test]
    fn client_controlled_strings_cannot_forge_fields_lines_or_terminal_commands() {
        let mut hostile = record();
        hostile.decision = AuditDecision::Deny;
        hostile.status = 403;
        hostile.tool = "x allow db ok\n2026-11-29T00:00:00.000Z allow db y".into();
        hostile.subject = Some("\u{1b}]52;c;eA==\u{7}\u{202e}root".into());
        hostile.client_id = Some("a\"b\\c".into());
        hostile.caller = String::new();
        hostile.arguments = Some("{\"sql\": \"drop table users\"}\r\u{9b}2J".into());
        let line = record_line(&hostile);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(
            !line.contains(|c: char| c.is_control() && c != '\n'),
            "{line:?}"
        );
        assert!(!line.contains('\u{202e}'), "{line:?}");
        assert_eq!(
            line,
            "2026-11-29T19:20:01.123Z deny db \"x allow db ok\\x0a2026-11-29T00:00:00.000Z allow db y\" \
             status=403 ok 12.3ms sub=\"\\x1b]52;c;eA==\\x07\\u{202e}root\" client=\"a\\\"b\\\\c\" caller=\"\" \
             args={\"sql\": \"drop table users\"}\\x0d\\u{9b}2J\n"
        );
    }

    #[test]
    fn json_lines_are_printed_as_written_with_raw_controls_escaped() {
        let mut hostile = record();
        hostile.tool = "del\u{7f}\u{202e}".into();
        let json = serde_json::to_string(&hostile).unwrap();
        let mut bytes = Vec::new();
        let mut out = Output {
            out: &mut bytes,
            json: true,
        };
        print(&mut out, &json).unwrap();
        let printed = String::from_utf8(bytes).unwrap();
        assert!(printed.ends_with('\n') && printed.matches('\n').count() == 1);
        assert!(printed.contains(r#""tool":"del\u007f\u202e""#), "{printed}");
        let back: AuditRecord = serde_json::from_str(printed.trim()).unwrap();
        assert_eq!(back, hostile);
    }

    #[test]
    fn an_unknown_line_is_shown_escaped_not_lost() {
        let mut bytes = Vec::new();
        let mut out = Output {
            out: &mut bytes,
            json: false,
        };
        print(&mut out, "not json\u{1b}[2J").unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "\"not json\\x1b[2J\"\n");
    }
}
