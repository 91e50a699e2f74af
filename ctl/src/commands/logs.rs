//! `logs`: print a server's recent lines; with `--follow`, stream new ones until Ctrl-C.

use std::time::{Duration, UNIX_EPOCH};

use mcpd_protocol::{LogLine, LogStream, LogsRequest, Request, Response};

use super::{CommandResult, Outcome, Output, one_line};
use crate::client::{Client, unexpected};

fn line_text(line: &LogLine) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(line.at_unix_ms);
    let stream = match line.stream {
        LogStream::Stdout => "out",
        LogStream::Stderr => "err",
        LogStream::Daemon => "mcpd",
    };
    format!(
        "{} {stream} {}\n",
        humantime::format_rfc3339_millis(at),
        one_line(&line.text)
    )
}

fn print(out: &mut Output<'_>, line: &LogLine) -> std::io::Result<()> {
    if out.json {
        out.json(line)
    } else {
        out.text(&line_text(line))
    }
}

pub(super) async fn logs(
    client: &mut Client,
    out: &mut Output<'_>,
    name: String,
    lines: u32,
    follow: bool,
) -> CommandResult {
    let backlog = match client
        .request(&Request::Logs(LogsRequest {
            name,
            lines,
            follow,
        }))
        .await?
    {
        Response::Logs(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    for line in &backlog.lines {
        print(out, line)?;
    }
    if !follow {
        return Ok(Outcome::Success);
    }
    super::follow(
        client,
        out,
        "lines skipped (output too fast to follow)",
        |out, frame| match frame {
            Response::LogLine(line) => Some(print(out, line)),
            _ => None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_time_and_stream() {
        let line = LogLine {
            at_unix_ms: 1_700_000_000_123,
            stream: LogStream::Stderr,
            text: "boom".into(),
        };
        assert_eq!(line_text(&line), "2023-11-14T22:13:20.123Z err boom\n");
    }

    #[test]
    fn daemon_notes_have_their_own_column_and_text_is_escaped() {
        let note = LogLine {
            at_unix_ms: 1_700_000_000_123,
            stream: LogStream::Daemon,
            text: "process ended".into(),
        };
        assert_eq!(
            line_text(&note),
            "2023-11-14T22:13:20.123Z mcpd process ended\n"
        );
        let forged = LogLine {
            at_unix_ms: 1_700_000_000_123,
            stream: LogStream::Stdout,
            text: "[mcpd] fake\r\x1b]52;c;eA==\x07\u{9b}2J\u{202e}\tok".into(),
        };
        assert_eq!(
            line_text(&forged),
            "2023-11-14T22:13:20.123Z out [mcpd] fake\\x0d\\x1b]52;c;eA==\\x07\\u{9b}2J\\u{202e}\tok\n"
        );
    }
}
