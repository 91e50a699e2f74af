//! Command-line arguments (clap derive).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Parser, Subcommand};
use mcpd_protocol::connect::ClientKind;

/// Drives mcpd over its control socket.
#[derive(Debug, Parser)]
#[command(
    name = "mcpctl",
    version,
    about = "Drive mcpd, the MCP server supervisor, over its control socket"
)]
pub struct Cli {
    /// The control socket (else control.socket of the daemon config, else the default path).
    #[arg(long, global = true, value_name = "PATH", env = "MCPD_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The daemon config file, read only to find the socket (else $MCPD_CONFIG, else /etc/mcpd/mcpd.yaml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print stable machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the configured servers.
    List,
    /// Show the status of every server (or one), and configuration errors.
    Status { name: Option<String> },
    /// Show everything about one server: configuration, status and tools.
    Show { name: String },
    /// List the tools of every server (or one).
    Tools {
        name: Option<String>,
        /// Also print each tool's input schema.
        #[arg(long)]
        schema: bool,
        /// Say which tools a gateway token with these scopes may call, e.g. "user tools:read".
        #[arg(long, value_name = "SCOPES", value_parser = parse_scopes)]
        as_scopes: Option<Scopes>,
    },
    /// Call a tool. SERVER may be left out when only one server offers TOOL.
    #[command(override_usage = "mcpctl call [SERVER] TOOL [--args JSON]")]
    Call {
        /// `[SERVER] TOOL`.
        #[arg(value_name = "SERVER TOOL", num_args = 1..=2, required = true)]
        target: Vec<String>,
        /// The tool's arguments as a JSON object.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        args: String,
        /// How long to wait for the result.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// MCP handshake with a server through the daemon: ok or not, latency, tool count.
    Test { name: String },
    /// Check the configuration files on disk and handshake each server.
    Validate { name: Option<String> },
    /// Print a server's recent output.
    Logs {
        name: String,
        /// How many recent lines.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: u32,
        /// Keep printing new lines until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the audit log: one record per tool call (gateway and `mcpctl call`).
    Audit {
        /// Only calls to this server, or run by it as a member of a virtual server.
        #[arg(long, value_name = "SERVER")]
        server: Option<String>,
        /// Only calls of this tool.
        #[arg(long, value_name = "TOOL")]
        tool: Option<String>,
        /// Only calls since this long ago (1h, 30m) or this time (RFC 3339, UTC).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<Since>,
        /// How many recent records.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: u32,
        /// Keep printing new records until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// List each server's cargo package.
    ListPackages,
    /// Restart one server, or all with --all.
    #[command(group(ArgGroup::new("target").required(true).args(["name", "all"])))]
    Restart {
        name: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Start a stopped or failed server.
    Start { name: String },
    /// Stop a server and keep it stopped.
    Stop { name: String },
    /// Re-read the server files and apply the changes.
    Reload {
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mint a JWT signed with the daemon's HS256 key.
    Token {
        /// A scope to grant; repeat for several.
        #[arg(long = "scope", value_name = "SCOPE", required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Audience (default "mcp").
        #[arg(long = "aud", value_name = "AUDIENCE")]
        audience: Option<String>,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Subject (default "mcpctl").
        #[arg(long = "sub", value_name = "SUBJECT")]
        subject: Option<String>,
    },
    /// Print what an MCP client needs to reach every server (or one) through the gateway:
    /// claude-code, claude-desktop, vscode, cursor or generic. With --json, the document alone.
    Connect {
        /// The client: claude-code, claude-desktop, vscode, cursor, generic.
        #[arg(value_parser = parse_client)]
        client: ClientKind,
        /// One server (default: every enabled server).
        server: Option<String>,
        /// Mint a token with this scope (repeat for several) for each server that requires
        /// OAuth, signed with the daemon's HS256 key, and put it in the header.
        #[arg(long = "token-scope", value_name = "SCOPE")]
        token_scopes: Vec<String>,
        /// Lifetime of the minted token, e.g. 1h, 30m, 7d.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration,
              requires = "token_scopes")]
        ttl: Duration,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
}

fn parse_client(name: &str) -> Result<ClientKind, String> {
    ClientKind::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = ClientKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("unknown client (one of: {})", names.join(", "))
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 1h, 7d)"))
}

/// `--as-scopes`: scopes separated by spaces (an empty list is a token with no scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(pub Vec<String>);

fn parse_scopes(s: &str) -> Result<Scopes, String> {
    Ok(Scopes(s.split_whitespace().map(str::to_owned).collect()))
}

/// `audit --since`: a time, or how long ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(SystemTime),
}

impl Since {
    /// The time meant, in Unix milliseconds, `now` being now.
    pub fn unix_ms(self, now: SystemTime) -> u64 {
        let at = match self {
            Since::Ago(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH),
            Since::At(at) => at,
        };
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(Since::Ago(ago));
    }
    humantime::parse_rfc3339_weak(s)
        .map(Since::At)
        .map_err(|_| {
            format!(
                "{s:?} is neither a duration (30m, 1h, 7d) nor a UTC time (2026-01-31T08:00:00Z)"
            )
        })
}

impl Command {
    /// `call`'s positional arguments as (server, tool).
    pub fn split_call_target(target: &[String]) -> (Option<String>, String) {
        match target {
            [tool] => (None, tool.clone()),
            [server, tool, ..] => (Some(server.clone()), tool.clone()),
            [] => (None, String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mcpctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["status", "--json", "--socket", "/tmp/x.sock", "echo"]).unwrap();
        assert!(cli.json);
        assert_eq!(
            cli.socket.as_deref(),
            Some(std::path::Path::new("/tmp/x.sock"))
        );
        assert!(matches!(cli.command, Command::Status { name: Some(ref n) } if n == "echo"));
    }

    #[test]
    fn call_takes_an_optional_server() {
        let cli = parse(&["call", "echo", "--args", r#"{"a":1}"#]).unwrap();
        let Command::Call {
            target,
            args,
            timeout,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(
            Command::split_call_target(&target),
            (None, "echo".to_owned())
        );
        assert_eq!(args, r#"{"a":1}"#);
        assert_eq!(timeout, Duration::from_secs(60));
        let cli = parse(&["call", "srv", "echo"]).unwrap();
        let Command::Call { target, args, .. } = cli.command else {
            panic!()
        };
        assert_eq!(
            Command::split_call_target(&target),
            (Some("srv".to_owned()), "echo".to_owned())
        );
        assert_eq!(args, "{}");
        assert!(parse(&["call"]).is_err());
        assert!(parse(&["call", "a", "b", "c"]).is_err());
    }

    #[test]
    fn restart_needs_a_name_or_all_but_not_both() {
        assert!(matches!(
            parse(&["restart", "echo"]).unwrap().command,
            Command::Restart { all: false, .. }
        ));
        assert!(matches!(
            parse(&["restart", "--all"]).unwrap().command,
            Command::Restart {
                all: true,
                name: None
            }
        ));
        assert!(parse(&["restart"]).is_err());
        assert!(parse(&["restart", "echo", "--all"]).is_err());
    }

    #[test]
    fn logs_defaults_and_short_flags() {
        let Command::Logs {
            name,
            lines,
            follow,
        } = parse(&["logs", "echo"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((name.as_str(), lines, follow), ("echo", 100, false));
        let Command::Logs { lines, follow, .. } =
            parse(&["logs", "echo", "-n", "5", "-f"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((lines, follow), (5, true));
    }

    #[test]
    fn connect_client_server_scopes_and_ttl() {
        let cli = parse(&[
            "connect",
            "vscode",
            "echo",
            "--token-scope",
            "a",
            "--token-scope",
            "b",
            "--ttl",
            "2h",
        ])
        .unwrap();
        let Command::Connect {
            client,
            server,
            token_scopes,
            ttl,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(client, ClientKind::VsCode);
        assert_eq!(server.as_deref(), Some("echo"));
        assert_eq!(token_scopes, ["a", "b"]);
        assert_eq!(ttl, Duration::from_secs(7200));
        let cli = parse(&["connect", "claude-desktop"]).unwrap();
        let Command::Connect {
            server,
            token_scopes,
            ..
        } = cli.command
        else {
            panic!()
        };
        assert_eq!((server, token_scopes.len()), (None, 0));
        assert!(parse(&["connect", "claude"]).is_err(), "unknown client");
        assert!(
            parse(&["connect", "cursor", "--ttl", "1h"]).is_err(),
            "--ttl needs --token-scope"
        );
        assert!(parse(&["connect"]).is_err(), "CLIENT is required");
    }

    #[test]
    fn token_scopes_ttl_and_defaults() {
        let cli = parse(&[
            "token", "--scope", "admin", "read", "--ttl", "2h", "--aud", "x",
        ])
        .unwrap();
        let Command::Token {
            scopes,
            audience,
            ttl,
            subject,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(scopes, ["admin", "read"]);
        assert_eq!(audience.as_deref(), Some("x"));
        assert_eq!(ttl, Duration::from_secs(7200));
        assert_eq!(subject, None);
        let cli = parse(&["token", "--scope", "a", "--scope", "b"]).unwrap();
        let Command::Token { scopes, ttl, .. } = cli.command else {
            panic!()
        };
        assert_eq!(scopes, ["a", "b"]);
        assert_eq!(ttl, Duration::from_secs(3600));
        assert!(parse(&["token"]).is_err(), "--scope is required");
        assert!(parse(&["token", "--scope", "a", "--ttl", "soon"]).is_err());
    }

    #[test]
    fn audit_filters_and_since_forms() {
        let Command::Audit {
            server,
            tool,
            since,
            lines,
            follow,
        } = parse(&["audit"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(
            (server, tool, since, lines, follow),
            (None, None, None, 100, false)
        );
        let cli = parse(&[
            "audit",
            "--server",
            "db",
            "--tool",
            "drop_table",
            "--since",
            "1h",
            "-n",
            "5",
            "-f",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Audit {
            server,
            tool,
            since,
            lines,
            follow,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(server.as_deref(), Some("db"));
        assert_eq!(tool.as_deref(), Some("drop_table"));
        assert_eq!(since, Some(Since::Ago(Duration::from_secs(3600))));
        assert_eq!((lines, follow), (5, true));
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(since.unwrap().unix_ms(now), 1_799_996_400_000);
        assert_eq!(
            Since::Ago(Duration::from_secs(u64::MAX / 4)).unix_ms(now),
            0,
            "before the epoch is the epoch"
        );
        for time in [
            "2026-01-31T08:00:00Z",
            "2026-01-31T08:00:00.000Z",
            "2026-01-31 08:00:00",
        ] {
            let Command::Audit { since, .. } = parse(&["audit", "--since", time]).unwrap().command
            else {
                panic!()
            };
            assert_eq!(since.unwrap().unix_ms(now), 1_769_846_400_000, "{time}");
        }
        for bad in ["yesterday", "", "2026-13-01T00:00:00Z", "-1h"] {
            assert!(parse(&["audit", "--since", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tools_as_scopes_splits_on_spaces() {
        let Command::Tools { as_scopes, .. } =
            parse(&["tools", "db", "--as-scopes", " user  tools:read "])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert_eq!(
            as_scopes,
            Some(Scopes(vec!["user".to_owned(), "tools:read".to_owned()]))
        );
        let Command::Tools { as_scopes, .. } =
            parse(&["tools", "--as-scopes", ""]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(as_scopes, Some(Scopes(Vec::new())));
        let Command::Tools { as_scopes, .. } = parse(&["tools"]).unwrap().command else {
            panic!()
        };
        assert_eq!(as_scopes, None);
    }

    #[test]
    fn reload_dry_run() {
        assert!(matches!(
            parse(&["reload", "--dry-run"]).unwrap().command,
            Command::Reload { dry_run: true }
        ));
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        let err = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
