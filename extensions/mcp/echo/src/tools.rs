//! The four example tools: `echo`, `add`, `sleep` and `progress`.
//!
//! Each tool is a method on [`Echo`] marked `#[tool]`; its arguments are a struct that derives
//! `Deserialize` (to parse the call) and `JsonSchema` (to advertise the input schema in
//! `tools/list`). Copy one of these to add a tool of your own.

use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, schemars, tool, tool_router};
use serde::Deserialize;

use crate::server::Echo;

/// Upper bound for `progress` steps, so one call cannot keep a stream open forever.
const MAX_STEPS: u32 = 10_000;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The first number.
    pub a: f64,
    /// The second number.
    pub b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to wait, in milliseconds.
    pub ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProgressArgs {
    /// How many progress notifications to send.
    pub steps: u32,
    /// The pause before each notification, in milliseconds.
    pub interval_ms: u64,
}

#[tool_router(vis = "pub(crate)")]
impl Echo {
    #[tool(description = "Returns the given text unchanged")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        announce("echo");
        text
    }

    #[tool(description = "Returns the sum of two numbers")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        announce("add");
        (a + b).to_string()
    }

    #[tool(description = "Waits the given number of milliseconds, then returns")]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        announce("sleep");
        // Stop early when the client cancels the request.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(format!("slept {ms} ms")),
            () = ctx.ct.cancelled() => {
                tracing::info!(tool = "sleep", "cancelled by the client");
                Err(ErrorData::internal_error("cancelled", None))
            }
        }
    }

    #[tool(
        description = "Sends a progress notification every interval_ms, steps times, then returns a summary"
    )]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps, interval_ms }): Parameters<ProgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        announce("progress");
        if steps > MAX_STEPS {
            return Err(ErrorData::invalid_params(
                format!("steps must be at most {MAX_STEPS}"),
                None,
            ));
        }
        // Notifications go to the token the caller put in the request's `_meta`; without one the
        // tool still paces itself but has nobody to report to.
        let token = ctx.meta.get_progress_token();
        for step in 1..=steps {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
                () = ctx.ct.cancelled() => {
                    tracing::info!(tool = "progress", "cancelled by the client");
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {step} of {steps}"));
                if let Err(error) = ctx.peer.notify_progress(param).await {
                    tracing::warn!(%error, step, "could not send a progress notification");
                }
            }
        }
        Ok(format!("completed {steps} steps"))
    }
}

/// Prints one line per tool call, so a supervisor's log capture has something to show: to
/// stdout over HTTP, to stderr over stdio (where stdout carries the protocol).
fn announce(tool: &str) {
    if crate::STDIO.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("call {tool}");
    } else {
        println!("call {tool}");
    }
}
