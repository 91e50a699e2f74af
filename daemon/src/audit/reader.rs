//! Reading the audit log back for `mcpctl audit`: the rotated files in order, filtered, the
//! newest `n` records kept. A line that is not a record (an edit by hand) is skipped; a
//! record written after a torn one (the daemon died in the middle of a line) is still found.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use mcpd_protocol::AuditRecord;

use crate::config::AUDIT_LOG_NAME;

/// Which records `mcpctl audit` asked for.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub server: Option<String>,
    pub tool: Option<String>,
    pub since_unix_ms: Option<u64>,
}

impl AuditFilter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.server
            .as_ref()
            .is_none_or(|server| &record.server == server || record.member.as_ref() == Some(server))
            && self.tool.as_ref().is_none_or(|tool| &record.tool == tool)
            && self.since_unix_ms.is_none_or(|since| record.ts >= since)
    }
}

/// The audit files of `dir`, oldest first: `audit.log`, or `audit.<period>.log` (periods sort
/// as text).
fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{AUDIT_LOG_NAME}.");
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".log")
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// The newest `limit` records of `dir` that pass `filter`, oldest first, as JSON lines.
pub fn read_backlog(dir: &Path, filter: &AuditFilter, limit: usize) -> Vec<String> {
    let mut kept: VecDeque<String> = VecDeque::new();
    if limit == 0 {
        return Vec::new();
    }
    for path in audit_files(dir) {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        for line in BufReader::new(file).split(b'\n').map_while(Result::ok) {
            let Some((record, line)) = parse(&line) else {
                continue;
            };
            if !filter.matches(&record) {
                continue;
            }
            if kept.len() == limit {
                kept.pop_front();
            }
            // The line as written is valid UTF-8 JSON (it parsed).
            kept.push_back(String::from_utf8_lossy(line).into_owned());
        }
    }
    kept.into()
}

/// The record `line` holds, and its JSON text. After a torn write the next record follows
/// the torn part on the same line: the last record start on the line is tried too.
fn parse(line: &[u8]) -> Option<(AuditRecord, &[u8])> {
    if let Ok(record) = serde_json::from_slice::<AuditRecord>(line) {
        return Some((record, line));
    }
    const START: &[u8] = b"{\"time\":";
    let at = line
        .windows(START.len())
        .rposition(|window| window == START)
        .filter(|at| *at > 0)?;
    let rest = &line[at..];
    serde_json::from_slice::<AuditRecord>(rest)
        .ok()
        .map(|record| (record, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpd_protocol::AuditDecision;

    fn record(server: &str, tool: &str, ts: u64) -> AuditRecord {
        AuditRecord {
            time: "2026-11-29T19:20:01.123Z".into(),
            ts,
            server: server.into(),
            member: None,
            tool: tool.into(),
            subject: Some("alice".into()),
            client_id: None,
            scopes: vec!["user".into()],
            decision: AuditDecision::Allow,
            status: 200,
            error_code: None,
            is_error: Some(false),
            duration_ms: 1.5,
            request_id: Some("1".into()),
            caller: "127.0.0.1:40000".into(),
            via: "gateway".into(),
            arguments: None,
        }
    }

    fn line(record: &AuditRecord) -> String {
        serde_json::to_string(record).unwrap()
    }

    fn tools(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap().tool)
            .collect()
    }

    /// Two rotated days and today's file, with what a disk and a crash leave behind.
    fn rotated_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[&str]| {
            std::fs::write(dir.path().join(name), lines.concat()).unwrap()
        };
        let mut member = record("team", "t3", 3);
        member.member = Some("db".into());
        let torn = line(&record("db", "torn", 4));
        write(
            "audit.2026-11-27.log",
            &[
                &line(&record("db", "t1", 1)),
                "\n",
                &line(&record("web", "t2", 2)),
                "\n",
            ],
        );
        // A line by hand, an empty one, a record start that is no record, and a record
        // appended after a torn one (the daemon died in the middle of a line).
        write(
            "audit.2026-11-28.log",
            &[
                &line(&member),
                "\nnot a record\n\n{\"time\":\"x\"}\n",
                &torn[..torn.len() / 2],
                &line(&record("db", "t5", 5)),
                "\n",
            ],
        );
        // Today's file ends in a torn line.
        write(
            "audit.2026-11-29.log",
            &[&line(&record("web", "t6", 6)), "\n", &torn[..20]],
        );
        // Not audit files: a server's log and a look-alike.
        write("db.log", &[&line(&record("db", "server-log", 7)), "\n"]);
        write("auditor.log", &[&line(&record("db", "other", 8)), "\n"]);
        dir
    }

    #[test]
    fn rotated_files_are_read_oldest_first_and_torn_or_foreign_lines_skipped() {
        let dir = rotated_dir();
        let all = read_backlog(dir.path(), &AuditFilter::default(), 100);
        assert_eq!(tools(&all), ["t1", "t2", "t3", "t5", "t6"]);
        // Each line is the record's JSON text as written.
        assert_eq!(all[3], line(&record("db", "t5", 5)));
    }

    #[test]
    fn the_limit_keeps_the_newest() {
        let dir = rotated_dir();
        let filter = AuditFilter::default();
        assert_eq!(tools(&read_backlog(dir.path(), &filter, 2)), ["t5", "t6"]);
        assert!(read_backlog(dir.path(), &filter, 0).is_empty());
    }

    #[test]
    fn filters_by_server_or_member_tool_and_time() {
        let dir = rotated_dir();
        let by = |server: Option<&str>, tool: Option<&str>, since: Option<u64>| {
            let filter = AuditFilter {
                server: server.map(str::to_owned),
                tool: tool.map(str::to_owned),
                since_unix_ms: since,
            };
            tools(&read_backlog(dir.path(), &filter, 100))
        };
        assert_eq!(
            by(Some("db"), None, None),
            ["t1", "t3", "t5"],
            "t3 ran on db"
        );
        assert_eq!(by(Some("team"), None, None), ["t3"]);
        assert_eq!(by(Some("web"), Some("t6"), None), ["t6"]);
        assert_eq!(by(None, Some("t2"), None), ["t2"]);
        assert_eq!(by(None, None, Some(3)), ["t3", "t5", "t6"]);
        assert!(by(Some("nope"), None, None).is_empty());
    }

    #[test]
    fn a_missing_dir_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(read_backlog(&missing, &AuditFilter::default(), 10).is_empty());
    }

    #[test]
    fn hostile_lines_are_skipped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let deep = "[".repeat(100_000);
        let lines = [
            "{\"time\":1}",
            &deep,
            "garbage{\"time\":\"a\",\"ts\":99999999999999999999999}",
            "\u{0}\u{ff}{\"time\":",
            &line(&record("db", "kept", 1)),
        ];
        std::fs::write(dir.path().join("audit.log"), lines.join("\n")).unwrap();
        let all = read_backlog(dir.path(), &AuditFilter::default(), 10);
        assert_eq!(tools(&all), ["kept"]);
    }
}
