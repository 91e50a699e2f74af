//! The `mcpd` binary: parses flags and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => ExitCode::SUCCESS,
        None => ExitCode::SUCCESS,
    }
}
