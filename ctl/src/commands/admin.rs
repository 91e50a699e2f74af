//! Commands that change the daemon: `start`, `stop`, `restart`, `reload`, `token`.

use std::time::Duration;

use mcpd_protocol::{
    ActionsReply, ConfigErrorInfo, PlanAction, ReloadRequest, Request, Response, RestartRequest,
    RestartTarget, StartRequest, StopRequest, TokenRequest,
};

use super::{CommandResult, Outcome, Output, config_errors_text, one_line};
use crate::client::{Client, unexpected};
use crate::table::Table;

async fn action(
    client: &mut Client,
    out: &mut Output<'_>,
    request: Request,
    past: &str,
) -> CommandResult {
    let reply: ActionsReply = match client.request(&request).await? {
        Response::Actions(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    let ok = reply.outcomes.iter().all(|o| o.ok);
    if out.json {
        out.json(&reply)?;
        return Ok(Outcome::from_ok(ok));
    }
    if reply.outcomes.is_empty() {
        out.text("no servers\n")?;
    }
    for o in &reply.outcomes {
        match &o.error {
            None => out.text(&format!("{}: {past}\n", one_line(&o.server)))?,
            Some(e) => out.text(&format!(
                "{}: FAILED: {}\n",
                one_line(&o.server),
                one_line(e)
            ))?,
        }
    }
    Ok(Outcome::from_ok(ok))
}

pub(super) async fn start(
    client: &mut Client,
    out: &mut Output<'_>,
    name: String,
) -> CommandResult {
    action(
        client,
        out,
        Request::Start(StartRequest { name }),
        "starting",
    )
    .await
}

pub(super) async fn stop(client: &mut Client, out: &mut Output<'_>, name: String) -> CommandResult {
    action(client, out, Request::Stop(StopRequest { name }), "stopped").await
}

pub(super) async fn restart(
    client: &mut Client,
    out: &mut Output<'_>,
    name: Option<String>,
    all: bool,
) -> CommandResult {
    let target = match (name, all) {
        (Some(name), false) => RestartTarget::One(name),
        _ => RestartTarget::All,
    };
    action(
        client,
        out,
        Request::Restart(RestartRequest { target }),
        "restarting",
    )
    .await
}

pub(super) async fn reload(
    client: &mut Client,
    out: &mut Output<'_>,
    dry_run: bool,
) -> CommandResult {
    let reply = match client
        .request(&Request::Reload(ReloadRequest { dry_run }))
        .await?
    {
        Response::Reload(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    // Restart notices are shown but are not errors: `systemctl reload` (ExecReload=mcpctl
    // reload) succeeds when the only news is that some settings wait for a restart.
    let (notices, errors): (Vec<_>, Vec<_>) = reply
        .config_errors
        .iter()
        .cloned()
        .partition(ConfigErrorInfo::is_restart_notice);
    let ok = errors.is_empty();
    if out.json {
        out.json(&reply)?;
        return Ok(Outcome::from_ok(ok));
    }
    let changes: Vec<_> = reply
        .changes
        .iter()
        .filter(|c| c.action != PlanAction::Unchanged)
        .collect();
    let unchanged = reply.changes.len() - changes.len();
    if changes.is_empty() {
        out.text("no changes\n")?;
    } else {
        if dry_run {
            out.text("plan (dry run, nothing applied):\n")?;
        }
        let mut table = Table::new(["SERVER", "ACTION", "REASON"]);
        for c in changes {
            table.row([c.server.as_str(), c.action.as_str(), c.reason.as_str()]);
        }
        out.text(&table.render())?;
    }
    if unchanged > 0 {
        out.text(&format!(
            "{unchanged} server{} unchanged\n",
            if unchanged == 1 { "" } else { "s" }
        ))?;
    }
    if !notices.is_empty() {
        out.text("\nnot applied until mcpd restarts:\n")?;
        out.text(&config_errors_text(&notices))?;
    }
    if !ok {
        out.text("\nconfiguration errors (these files keep their previous servers):\n")?;
        out.text(&config_errors_text(&errors))?;
    }
    Ok(Outcome::from_ok(ok))
}

pub(super) async fn token(
    client: &mut Client,
    out: &mut Output<'_>,
    scopes: Vec<String>,
    audience: Option<String>,
    ttl: Duration,
    subject: Option<String>,
) -> CommandResult {
    let request = Request::Token(TokenRequest {
        scopes,
        audience,
        ttl_secs: ttl.as_secs(),
        subject,
    });
    let reply = match client.request(&request).await? {
        Response::Token(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply)?;
    } else {
        // The bare token, so `TOKEN=$(mcpctl token --scope admin)` works.
        out.text(&format!("{}\n", reply.token))?;
    }
    Ok(Outcome::Success)
}
