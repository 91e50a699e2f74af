//! The `mcpd` binary: parses flags and hands over to the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mcpd",
    version,
    about = "Process supervisor and authenticated gateway for MCP servers"
)]
struct Cli {
    /// The daemon configuration file (else $MCPD_CONFIG, else /etc/mcpd/mcpd.yaml, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate all configuration offline, print the servers found or every error, and exit.
    Check,
    /// Print the JSON Schema of the daemon file (mcpd.yaml) or of a server file, for editors.
    Schema {
        #[arg(value_enum)]
        file: SchemaFile,
    },
    /// Started by mcpd itself (one per daemon): kills the server process groups listed on
    /// standard input once it closes, that is once the daemon is gone.
    Reaper,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaFile {
    /// mcpd.yaml
    Daemon,
    /// a file of services_dir
    Server,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => {
            let report = mcpd::check::check(cli.config.as_deref());
            // Errors quote keys and values of files that packages may install.
            let text = mcpd_protocol::terminal::escape(
                &report.text,
                mcpd_protocol::terminal::Keep::TabsAndNewlines,
            );
            print!("{text}");
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Command::Schema { file }) => {
            let schema = match file {
                SchemaFile::Daemon => mcpd::config::schema::daemon(),
                SchemaFile::Server => mcpd::config::schema::server(),
            };
            print!("{}", mcpd::config::schema::render(&schema));
            ExitCode::SUCCESS
        }
        Some(Command::Reaper) => {
            reap();
            ExitCode::SUCCESS
        }
        None => serve(cli.config.as_deref()),
    }
}

/// `mcpd reaper`: the stop signals are for the daemon; the reaper ends when its input does.
fn reap() {
    use nix::sys::signal::{SigHandler, Signal, signal as set_handler};
    for stop in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { set_handler(stop, SigHandler::SigIgn) };
    }
    mcpd::supervisor::reaper::run(std::io::stdin().lock());
}

/// Runs the daemon until SIGTERM or SIGINT.
fn serve(explicit: Option<&Path>) -> ExitCode {
    init_logging();
    match std::env::current_exe() {
        Ok(program) => mcpd::supervisor::reaper::use_program(program),
        Err(error) => tracing::warn!(%error, "cannot find the mcpd binary to run `mcpd reaper`: \
            processes forked by servers may outlive a daemon that is killed"),
    }
    raise_fd_limit();
    let path = mcpd::config::find_daemon_config(explicit);
    let config = match mcpd::config::load(path.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                let error = mcpd_protocol::terminal::Escaped(&error.to_string()).to_string();
                tracing::error!("{error}");
            }
            tracing::error!(
                errors = errors.len(),
                "configuration is invalid; nothing started (run `mcpd check` for details)"
            );
            return ExitCode::FAILURE;
        }
    };
    // Supervision and the control socket need little CPU: one thread. The gateway runs its
    // own worker threads (gateway::serve_workers).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listeners = mcpd::Listeners::bind(&config.daemon).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        mcpd::run(config, listeners, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one. Every client and upstream connection of
/// the gateway holds a descriptor, and the usual soft default (1024) is far below what a
/// gateway needs; the hard limit is the administrator's (`LimitNOFILE=`).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        soft < limit.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    };
    if raised {
        tracing::debug!(limit = limit.rlim_cur, "raised the open-file limit");
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name}: shutting down");
    shutdown.cancel();
}

/// Logs to stderr. Under journald (`JOURNAL_STREAM` set) lines carry no timestamp or colour:
/// journald adds its own. `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=off"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
