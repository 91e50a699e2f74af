//! Reading the audit log back for `mcpctl audit`: the rotated files in order, filtered, the
//! newest `n` records kept. A line that is not a record (a torn write, an edit by hand) is
//! skipped.

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
            let Ok(record) = serde_json::from_slice::<AuditRecord>(&line) else {
                continue;
            };
            if !filter.matches(&record) {
                continue;
            }
            if kept.len() == limit {
                kept.pop_front();
            }
            // The line as written is valid UTF-8 JSON (it parsed).
            kept.push_back(String::from_utf8_lossy(&line).into_owned());
        }
    }
    kept.into()
}
