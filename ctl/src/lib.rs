//! mcpctl: the operator CLI. It talks to `mcpd` over the control socket (protocol in the
//! `mcpd-protocol` crate) and never depends on the daemon crate.
//!
//! # Finding the socket
//! `--socket PATH` (or `$MCPD_SOCKET`); else `control.socket` of the daemon config file
//! (`--config PATH`, else `$MCPD_CONFIG`, else `/etc/mcpd/mcpd.yaml` if it exists), relative
//! paths resolved against the file's directory; else `$RUNTIME_DIRECTORY/mcpd.sock`, else
//! `$XDG_RUNTIME_DIR/mcpd.sock`, else `$TMPDIR/mcpd-$UID/mcpd.sock` (`/tmp` without `$TMPDIR`).
//!
//! # Whose socket
//! mcpctl talks only to a socket whose file, and whose listening process, belong to itself,
//! root, or the daemon's user: `$MCPD_USER` (name or uid) if set, else the system user `mcpd`.
//! Anything else fails with exit 1 (`untrusted_socket`) before a request is sent.
//!
//! # Exit codes
//! - `0`: the command succeeded.
//! - `1`: the command failed: the daemon answered with an error, a handshake or a tool call
//!   failed, the configuration has errors (`validate`, `reload`), a server did not
//!   start/stop/restart, the protocol versions differ, or the socket is not trusted.
//! - `2`: usage error (bad flags or arguments).
//! - `3`: the daemon is unreachable; stderr says
//!   `cannot connect to mcpd: is mcpd running? socket: PATH`.
//!
//! Errors go to stderr as one line. With `--json`, stdout also gets
//! `{"error":{"code":CODE,"message":TEXT}}`, where CODE is a daemon error code
//! (`unknown_server`, `invalid_argument`, `unsupported`, `busy`, `internal`, `malformed`,
//! `not_configured`, `mcp_failure`, `handshake_required`, `not_running`, `timeout`) or one of mcpctl's own:
//! `unreachable`, `incompatible`, `connection`, `usage`, `config`, `untrusted_socket`.
//!
//! # `--json` output
//! One JSON document per line on stdout. Field sets only grow; existing fields keep their
//! names and meaning. Times are Unix milliseconds (`*_unix_ms`), durations carry their unit
//! (`*_ms`), absent values are `null`. `state` is one of `disabled`, `stopped`, `starting`,
//! `running`, `backoff`, `stopping`, `failed`.
//!
//! A **server** object (in `list` and `status`):
//! ```json
//! {"name":"echo","state":"running","enabled":true,"description":"Echo server","pid":4242,
//!  "port":5010,"since_unix_ms":1700000000000,"uptime_ms":61000,"restarts":0,"tools_count":3,
//!  "last_exit":null,"last_error":null}
//! ```
//! A **config error** object:
//! `{"file":"/etc/mcpd/mcp/a.yaml","line":3,"column":5,"message":"unknown key `enbled`","hint":"valid keys: ..."}`
//!
//! | command | output |
//! |---|---|
//! | `list`, `status [NAME]` | `{"servers":[SERVER...],"config_errors":[CONFIG_ERROR...]}` |
//! | `show NAME` | `{"status":SERVER,"file","binary_name","binary","package","endpoint","upstream_url","display_in_web","oauth_required","oauth_scopes":[..],"oauth_audience","oauth_client_id","args":[..],"env":{"K":"V"},"env_passthrough":[..],"working_dir","path","restart_policy","health_interval_ms","health_timeout_ms","stop_timeout_ms","tools":[TOOL...],"limits":{"memory_bytes","cpu_millis","tasks","open_files","user","uid","gid"}}` |
//! | `tools [NAME] [--schema]` | `[TOOL...]`, a TOOL being `{"server","name","description","input_schema"}` (`input_schema` is the JSON schema with `--schema`, else `null`) |
//! | `call [SERVER] TOOL` | `{"server","tool","result":CALL_TOOL_RESULT}` (the MCP result as JSON; exit 1 when `result.isError` is true) |
//! | `test NAME` | `{"server","ok","url","latency_ms","protocol_version","server_name","server_version","tools_count","error"}` (exit 1 unless `ok`) |
//! | `validate [NAME]` | `{"config_errors":[CONFIG_ERROR...],"handshakes":[TEST...]}` (exit 1 on any error) |
//! | `logs NAME [-f]` | one line per log line: `{"at_unix_ms","stream":"stdout"\|"stderr"\|"daemon","text"}` (`daemon`: a note of mcpd's own); when a follower falls behind, `{"skipped":N}` |
//! | `list-packages` | `{"packages":[{"server","package","binary"}...]}` |
//! | `start`, `stop`, `restart` | `{"action":"start"\|"stop"\|"restart","outcomes":[{"server","ok","error"}...]}` (exit 1 unless all `ok`) |
//! | `reload [--dry-run]` | `{"dry_run","changes":[{"server","action":"start"\|"stop"\|"restart"\|"update"\|"unchanged","reason"}...],"config_errors":[CONFIG_ERROR...]}` (exit 1 on config errors) |
//! | `token` | `{"token","expires_at_unix"}` (seconds) |

pub mod cli;
pub mod client;
pub mod commands;
pub mod socket;
pub mod table;

use std::io;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::client::{Client, ClientError};
use crate::commands::{CommandError, Outcome, Output};

/// The process exit status of mcpctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Unreachable = 3,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Runs one parsed command line, printing to stdout and stderr.
pub async fn run(cli: Cli) -> Exit {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    let mut out = Output {
        out: &mut lock,
        json: cli.json,
    };
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "mcpctl", out.out);
            return Exit::Ok;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(out.out) {
                Ok(()) => Exit::Ok,
                Err(e) => fail(
                    &mut out,
                    "output",
                    &format!("cannot write the man page: {e}"),
                    Exit::Failed,
                ),
            };
        }
        _ => {}
    }

    if let Err(e) = commands::precheck(&cli.command) {
        return fail(&mut out, "usage", &e.to_string(), Exit::Usage);
    }
    let env = socket::Environment::process();
    let path = match socket::resolve(cli.socket.as_deref(), cli.config.as_deref(), &env) {
        Ok(path) => path,
        Err(e) => return fail(&mut out, "config", &e.to_string(), Exit::Failed),
    };
    let trusted = socket::TrustedOwners::from_env(&env);
    let mut client = match Client::connect(&path, &trusted).await {
        Ok(client) => client,
        Err(e) => return client_failure(&mut out, &e),
    };
    let result = commands::execute(&cli.command, &mut client, &mut out).await;
    let _ = out.out.flush();
    match result {
        Ok(Outcome::Success) => Exit::Ok,
        Ok(Outcome::Failed) => Exit::Failed,
        Err(CommandError::Client(e)) => client_failure(&mut out, &e),
        // A closed pipe (`mcpctl logs -f | head`) is the reader's choice, not a failure.
        Err(CommandError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(CommandError::Output(e)) => fail(&mut out, "output", &e.to_string(), Exit::Failed),
        Err(CommandError::Usage(message)) => fail(&mut out, "usage", &message, Exit::Usage),
    }
}

fn client_failure(out: &mut Output<'_>, error: &ClientError) -> Exit {
    let exit = if error.is_unreachable() {
        Exit::Unreachable
    } else {
        Exit::Failed
    };
    fail(out, error.code(), &error.to_string(), exit)
}

/// Reports an error on stderr, as one line with control characters escaped (a daemon error
/// can quote a server), and as JSON on stdout with `--json`.
fn fail(out: &mut Output<'_>, code: &str, message: &str, exit: Exit) -> Exit {
    eprintln!(
        "{}",
        mcpd_protocol::terminal::escape(message, mcpd_protocol::terminal::Keep::Tabs)
    );
    if out.json {
        let _ = out.json(&serde_json::json!({"error": {"code": code, "message": message}}));
    }
    exit
}
