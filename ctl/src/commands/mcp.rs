//! Commands that reach a server's MCP endpoint through the daemon: `call`, `test`, `validate`.

use std::time::Duration;

use mcpd_protocol::{CallRequest, Request, Response, TestReply, TestRequest, ValidateRequest};

use super::{
    CommandError, CommandResult, Outcome, Output, config_errors_text, one_line, pretty_json,
};
use crate::client::{Client, unexpected};

/// `--args` must be a JSON object; says where it is not.
pub(super) fn check_args(args: &str) -> Result<(), CommandError> {
    match serde_json::from_str::<serde_json::Value>(args) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(CommandError::Usage(
            "--args must be a JSON object, e.g. '{\"text\": \"hi\"}'".into(),
        )),
        Err(e) => Err(CommandError::Usage(format!(
            "--args is not valid JSON: {e}"
        ))),
    }
}

pub(super) async fn call(
    client: &mut Client,
    out: &mut Output<'_>,
    server: Option<String>,
    tool: String,
    args: &str,
    timeout: Duration,
) -> CommandResult {
    // Catch bad JSON here, with the position, before a round trip.
    match serde_json::from_str::<serde_json::Value>(args) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => {
            return Err(CommandError::Usage(
                "--args must be a JSON object, e.g. '{\"text\": \"hi\"}'".into(),
            ));
        }
        Err(e) => {
            return Err(CommandError::Usage(format!(
                "--args is not valid JSON: {e}"
            )));
        }
    }
    let request = Request::Call(CallRequest {
        server,
        tool,
        arguments_json: args.to_owned(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    });
    let reply = match client.request(&request).await? {
        Response::Call(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    let result: serde_json::Value = serde_json::from_str(&reply.result_json)
        .unwrap_or(serde_json::Value::String(reply.result_json.clone()));
    let is_error = result
        .get("isError")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if out.json {
        out.json(
            &serde_json::json!({"server": reply.server, "tool": reply.tool, "result": result}),
        )?;
    } else {
        // Text content is printed with its lines (control characters escaped); anything
        // else as pretty JSON.
        let texts: Option<Vec<&str>> =
            result
                .get("content")
                .and_then(|c| c.as_array())
                .and_then(|items| {
                    items
                        .iter()
                        .map(|item| {
                            (item.get("type")?.as_str()? == "text")
                                .then(|| item.get("text")?.as_str())
                                .flatten()
                        })
                        .collect()
                });
        match texts {
            Some(texts) if result.get("structuredContent").is_none() => {
                for text in texts {
                    out.text(text)?;
                    out.text("\n")?;
                }
            }
            _ => out.text(&format!("{}\n", pretty_json(&result)?))?,
        }
    }
    Ok(Outcome::from_ok(!is_error))
}

fn test_line(t: &TestReply) -> String {
    if t.ok {
        let mut parts = Vec::new();
        if let Some(ms) = t.latency_ms {
            parts.push(format!("{ms} ms"));
        }
        if let Some(n) = t.tools_count {
            parts.push(format!("{n} tool{}", if n == 1 { "" } else { "s" }));
        }
        if let (Some(name), Some(version)) = (&t.server_name, &t.server_version) {
            parts.push(format!("{name} {version}"));
        }
        if let Some(protocol) = &t.protocol_version {
            parts.push(format!("protocol {protocol}"));
        }
        format!(
            "{}: ok ({})\n",
            one_line(&t.server),
            one_line(&parts.join(", "))
        )
    } else {
        format!(
            "{}: FAILED: {}\n",
            one_line(&t.server),
            one_line(t.error.as_deref().unwrap_or("unknown error"))
        )
    }
}

pub(super) async fn test(client: &mut Client, out: &mut Output<'_>, name: String) -> CommandResult {
    let reply = match client.request(&Request::Test(TestRequest { name })).await? {
        Response::Test(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    if out.json {
        out.json(&reply)?;
    } else {
        out.text(&test_line(&reply))?;
    }
    Ok(Outcome::from_ok(reply.ok))
}

pub(super) async fn validate(
    client: &mut Client,
    out: &mut Output<'_>,
    name: Option<String>,
) -> CommandResult {
    let reply = match client
        .request(&Request::Validate(ValidateRequest { name }))
        .await?
    {
        Response::Validate(reply) => reply,
        other => return Err(unexpected(other).into()),
    };
    let ok = reply.config_errors.is_empty() && reply.handshakes.iter().all(|h| h.ok);
    if out.json {
        out.json(&reply)?;
        return Ok(Outcome::from_ok(ok));
    }
    if reply.config_errors.is_empty() {
        out.text("configuration: ok\n")?;
    } else {
        let n = reply.config_errors.len();
        out.text(&format!(
            "configuration: {n} error{}\n",
            if n == 1 { "" } else { "s" }
        ))?;
        out.text(&config_errors_text(&reply.config_errors))?;
    }
    for warning in &reply.warnings {
        out.text(&format!("warning: {}\n", one_line(warning)))?;
    }
    for handshake in &reply.handshakes {
        out.text(&test_line(handshake))?;
    }
    for warning in &reply.warnings {
        out.text(&format!("warning: {}\n", super::one_line(warning)))?;
    }
    Ok(Outcome::from_ok(ok))
}
