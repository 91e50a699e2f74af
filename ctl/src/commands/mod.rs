//! One function per command: send the request, print the reply as a table or as JSON.

mod admin;
mod audit;
mod connect;
mod logs;
mod mcp;
mod view;

use std::borrow::Cow;
use std::io::{self, Write};

use mcpd_protocol::ConfigErrorInfo;
use mcpd_protocol::terminal::{self, Keep};
use serde::Serialize;

use crate::cli::Command;
use crate::client::{Client, ClientError};

/// Whether a command that ran to completion reported success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command ran but what it reports is a failure (a failed handshake, config errors,
    /// a server that did not restart); details are already printed.
    Failed,
}

impl Outcome {
    fn from_ok(ok: bool) -> Outcome {
        if ok {
            Outcome::Success
        } else {
            Outcome::Failed
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    #[error("{0}")]
    Usage(String),
}

impl From<serde_json::Error> for CommandError {
    fn from(e: serde_json::Error) -> Self {
        CommandError::Output(io::Error::other(e))
    }
}

pub type CommandResult = Result<Outcome, CommandError>;

/// Prints the frames a followed command (`logs -f`, `audit -f`) streams until Ctrl-C or the
/// daemon ends the stream: `item` prints one of its own frames (and returns `None` for a frame
/// that is not one), gaps print as `... N <skipped>`.
pub(super) async fn follow(
    client: &mut Client,
    out: &mut Output<'_>,
    skipped: &str,
    mut item: impl FnMut(&mut Output<'_>, &mcpd_protocol::Response) -> Option<io::Result<()>>,
) -> CommandResult {
    use mcpd_protocol::Response;
    out.out.flush()?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            _ = &mut interrupted => return Ok(Outcome::Success),
            next = client.next() => next?,
        };
        let Some(next) = next else {
            return Ok(Outcome::Success);
        };
        match (item(out, &next), next) {
            (Some(printed), _) => printed?,
            (None, Response::LogGap(gap)) if out.json => out.json(&gap)?,
            (None, Response::LogGap(gap)) => {
                out.text(&format!("... {} {skipped}\n", gap.skipped))?;
            }
            (None, other) => return Err(crate::client::unexpected(other).into()),
        }
        out.out.flush()?;
    }
}

/// Where a command prints.
///
/// Nothing reaches the terminal raw: [`Output::text`] escapes every control character but
/// tab and newline (see [`mcpd_protocol::terminal`]), and [`Output::json`] writes the
/// characters JSON leaves raw (DEL, C1, bidi) as `\uXXXX`, which keeps the JSON value exact.
/// Fields a server or client controls are escaped before that with [`one_line`], so they
/// cannot start a line of their own either.
pub struct Output<'a> {
    pub out: &'a mut dyn Write,
    pub json: bool,
}

impl Output<'_> {
    /// One JSON document on one line.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        let json = serde_json::to_string(value).map_err(io::Error::other)?;
        self.out.write_all(terminal::json_safe(&json).as_bytes())?;
        writeln!(self.out)
    }

    pub fn text(&mut self, text: &str) -> io::Result<()> {
        self.out
            .write_all(terminal::escape(text, Keep::TabsAndNewlines).as_bytes())
    }
}

/// A value a server or client controls (a name, an error, a log line), escaped to one line;
/// tabs are kept.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    terminal::escape(text, Keep::Tabs)
}

/// Pretty JSON for a human: the value exactly, with no raw control character.
pub(crate) fn pretty_json(value: &serde_json::Value) -> Result<String, serde_json::Error> {
    let pretty = serde_json::to_string_pretty(value)?;
    Ok(terminal::json_safe(&pretty).into_owned())
}

/// Checks what can be checked before connecting, so a usage error is reported as one even
/// when the daemon is down.
pub fn precheck(command: &Command) -> Result<(), CommandError> {
    if let Command::Call { args, .. } = command {
        mcp::check_args(args)?;
    }
    Ok(())
}

/// Runs a daemon command (everything but `completions` and `man`).
pub async fn execute(
    command: &Command,
    client: &mut Client,
    out: &mut Output<'_>,
) -> CommandResult {
    match command {
        Command::List => view::list(client, out).await,
        Command::Status { name } => view::status(client, out, name.clone()).await,
        Command::Show { name } => view::show(client, out, name.clone()).await,
        Command::Tools {
            name,
            schema,
            as_scopes,
        } => {
            let as_scopes = as_scopes.as_ref().map(|scopes| scopes.0.clone());
            view::tools(client, out, name.clone(), *schema, as_scopes).await
        }
        Command::ListPackages => view::packages(client, out).await,
        Command::Call {
            target,
            args,
            timeout,
        } => {
            let (server, tool) = Command::split_call_target(target);
            mcp::call(client, out, server, tool, args, *timeout).await
        }
        Command::Test { name } => mcp::test(client, out, name.clone()).await,
        Command::Validate { name } => mcp::validate(client, out, name.clone()).await,
        Command::Logs {
            name,
            lines,
            follow,
        } => logs::logs(client, out, name.clone(), *lines, *follow).await,
        Command::Audit {
            server,
            tool,
            since,
            lines,
            follow,
        } => {
            let query = audit::Query {
                server: server.clone(),
                tool: tool.clone(),
                since: *since,
                lines: *lines,
                follow: *follow,
            };
            audit::audit(client, out, query).await
        }
        Command::Start { name } => admin::start(client, out, name.clone()).await,
        Command::Stop { name } => admin::stop(client, out, name.clone()).await,
        Command::Restart { name, all } => admin::restart(client, out, name.clone(), *all).await,
        Command::Reload { dry_run } => admin::reload(client, out, *dry_run).await,
        Command::Token {
            scopes,
            audience,
            ttl,
            subject,
        } => {
            admin::token(
                client,
                out,
                scopes.clone(),
                audience.clone(),
                *ttl,
                subject.clone(),
            )
            .await
        }
        Command::Connect {
            client: kind,
            server,
            token_scopes,
            ttl,
        } => connect::connect(client, out, *kind, server.clone(), token_scopes, *ttl).await,
        Command::Completions { .. } | Command::Man => Err(CommandError::Usage(
            "this command does not talk to the daemon".into(),
        )),
    }
}

/// `file:line:col: message` lines, with hints indented below.
pub(crate) fn config_errors_text(errors: &[ConfigErrorInfo]) -> String {
    let mut text = String::new();
    for e in errors {
        text.push_str(&one_line(&e.file));
        if let Some(line) = e.line {
            text.push_str(&format!(":{line}"));
            if let Some(col) = e.column {
                text.push_str(&format!(":{col}"));
            }
        }
        text.push_str(&format!(": {}\n", one_line(&e.message)));
        if let Some(hint) = &e.hint {
            text.push_str(&format!("  hint: {}\n", one_line(hint)));
        }
    }
    text
}

/// `-` for an absent value.
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
