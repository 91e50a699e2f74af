//! Conversions from the daemon's live types to protocol messages.

use std::time::{SystemTime, UNIX_EPOCH};

use mcpd_protocol as proto;

use crate::config::{ConfigError, OAuthConfig, RestartPolicy, ServerConfig, VirtualConfig};
use crate::directory::{Directory, ServerEntry, ServerState, ServerStatus, ToolInfo};
use crate::supervisor::{LogLine, LogStream, PlanAction, ReloadPlan};

pub(super) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn state(state: ServerState) -> proto::ServerState {
    match state {
        ServerState::Disabled => proto::ServerState::Disabled,
        ServerState::Stopped => proto::ServerState::Stopped,
        ServerState::Starting => proto::ServerState::Starting,
        ServerState::Running => proto::ServerState::Running,
        ServerState::Backoff => proto::ServerState::Backoff,
        ServerState::Stopping => proto::ServerState::Stopping,
        ServerState::Failed => proto::ServerState::Failed,
        ServerState::Unreachable => proto::ServerState::Unreachable,
    }
}

/// The server's own MCP URL, once it has a port.
pub(super) fn upstream_url(config: &ServerConfig, status: &ServerStatus) -> Option<String> {
    if let Some(remote) = &config.remote {
        return Some(remote.url.text.clone());
    }
    status
        .port
        .map(|port| format!("http://127.0.0.1:{port}{}", config.path))
}

pub(super) fn server_info(name: &str, entry: &ServerEntry) -> proto::ServerInfo {
    let config = entry.config.load();
    let status = entry.status.load();
    let has_process = matches!(
        status.state,
        ServerState::Starting | ServerState::Running | ServerState::Stopping
    );
    let uptime_ms = status
        .started_at
        .filter(|_| has_process)
        .map(|at| SystemTime::now().duration_since(at).map_or(0, millis));
    proto::ServerInfo {
        name: name.to_owned(),
        state: state(status.state),
        enabled: config.enabled,
        description: config.description.clone(),
        pid: status.pid,
        port: status.port.or(config.port),
        since_unix_ms: unix_ms(status.since),
        uptime_ms,
        restarts: status.restarts,
        tools_count: u32::try_from(status.tools.len()).unwrap_or(u32::MAX),
        last_exit: status.last_exit.clone(),
        last_error: status.last_error.clone(),
        usage: has_process.then(|| usage(&entry.usage.load())),
        session_pids: match entry.stdio.load().as_deref() {
            Some(crate::stdio::Target::PerClient(pool)) => pool.pids(),
            _ => Vec::new(),
        },
        members: None,
    }
}

fn usage(usage: &crate::directory::ServerUsage) -> proto::ServerUsage {
    proto::ServerUsage {
        memory_bytes: usage.memory_bytes,
        memory_peak_bytes: usage.memory_peak_bytes,
        cpu_time_ms: (usage.cpu_seconds * 1000.0) as u64,
        cpu_percent_hundredths: usage.cpu_percent.map(|p| (p * 100.0).round() as u32),
        tasks: usage.tasks,
        oom_kills: usage.oom_kills,
        from_cgroup: usage.from_cgroup,
    }
}

/// A server's (or virtual server's) per-tool rules, in order, as `show` prints them.
fn tool_rules(oauth: &OAuthConfig) -> Vec<proto::ToolRuleInfo> {
    oauth
        .tools
        .iter()
        .map(|rule| proto::ToolRuleInfo {
            pattern: rule.pattern.to_string(),
            scopes: rule.scopes.clone(),
        })
        .collect()
}

fn limits(config: &ServerConfig) -> proto::LimitsInfo {
    let limits = &config.limits;
    proto::LimitsInfo {
        memory_bytes: limits.memory,
        cpu_millis: limits.cpu.map(|cpu| (cpu * 1000.0).round() as u64),
        tasks: limits.tasks,
        open_files: limits.open_files,
        user: config.run_as.as_ref().map(|run| run.user.clone()),
        uid: config.run_as.as_ref().map(|run| run.uid),
        gid: config.run_as.as_ref().map(|run| run.gid),
    }
}

/// A virtual server's row: its state derived from its members, no process.
pub(super) fn virtual_info(directory: &Directory, config: &VirtualConfig) -> proto::ServerInfo {
    let members = crate::virtuals::member_views(directory, config)
        .into_iter()
        .map(|member| proto::MemberInfo {
            name: member.name,
            state: state(member.state),
            tools_cached_unix_ms: member.tools_at.map(unix_ms),
            stale: member.stale,
        })
        .collect();
    let catalog = crate::virtuals::catalog_of(directory, config);
    proto::ServerInfo {
        name: config.name.clone(),
        state: state(directory.virtual_state(config)),
        enabled: config.enabled,
        description: config.description.clone(),
        pid: None,
        port: None,
        since_unix_ms: 0,
        uptime_ms: None,
        restarts: 0,
        tools_count: u32::try_from(catalog.tools.len()).unwrap_or(u32::MAX),
        last_exit: None,
        last_error: None,
        usage: None,
        session_pids: Vec::new(),
        members: Some(members),
    }
}

/// Every conflict of every virtual server, one line each.
pub(super) fn conflicts(directory: &Directory) -> Vec<String> {
    directory
        .virtuals()
        .values()
        .flat_map(|config| {
            crate::virtuals::catalog_of(directory, config)
                .conflicts
                .iter()
                .map(|c| c.describe(&config.name))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `show` of a virtual server: its settings, members, exposed tools and conflicts.
pub(super) fn show_virtual(directory: &Directory, config: &VirtualConfig) -> proto::ShowReply {
    let catalog = crate::virtuals::catalog_of(directory, config);
    proto::ShowReply {
        status: virtual_info(directory, config),
        file: config.file.display().to_string(),
        binary_name: String::new(),
        binary: String::new(),
        package: None,
        endpoint: config.endpoint.clone(),
        upstream_url: None,
        display_in_web: config.display_in_web,
        oauth_required: config.oauth.required,
        oauth_scopes: config.oauth.scopes.clone(),
        oauth_audience: config.oauth.audience.clone(),
        oauth_client_id: config.oauth.client_id.clone(),
        args: Vec::new(),
        env: Vec::new(),
        env_passthrough: Vec::new(),
        working_dir: None,
        path: String::new(),
        restart_policy: String::new(),
        health_interval_ms: 0,
        health_timeout_ms: 0,
        stop_timeout_ms: 0,
        tools: virtual_tools(config, &catalog, true),
        tool_rules: tool_rules(&config.oauth),
        audit_arguments: config.audit_arguments,
        limits: proto::LimitsInfo::default(),
        tool_filter: config
            .tools
            .iter()
            .map(|f| format!("{}{}", if f.negated { "!" } else { "" }, f.pattern))
            .collect(),
        conflicts: catalog
            .conflicts
            .iter()
            .map(|c| c.describe(&config.name))
            .collect(),
    }
}

/// The exposed tools of a virtual server.
pub(super) fn virtual_tools(
    config: &VirtualConfig,
    catalog: &crate::virtuals::Catalog,
    schema: bool,
) -> Vec<proto::ToolEntry> {
    catalog
        .tools
        .iter()
        .map(|(exposed, tool)| proto::ToolEntry {
            server: config.name.clone(),
            name: exposed.clone(),
            description: tool.info.description.clone(),
            input_schema_json: schema.then(|| tool.info.input_schema.to_string()),
            access: None,
        })
        .collect()
}

pub(super) fn tool(server: &str, tool: &ToolInfo, schema: bool) -> proto::ToolEntry {
    proto::ToolEntry {
        server: server.to_owned(),
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema_json: schema.then(|| tool.input_schema.to_string()),
        access: None,
    }
}

pub(super) fn show(name: &str, entry: &ServerEntry) -> proto::ShowReply {
    let config = entry.config.load();
    let status = entry.status.load();
    proto::ShowReply {
        status: server_info(name, entry),
        file: config.file.display().to_string(),
        binary_name: config.binary_name.clone(),
        binary: config.binary.display().to_string(),
        package: config.package.clone(),
        endpoint: config.endpoint.clone(),
        upstream_url: upstream_url(&config, &status),
        display_in_web: config.display_in_web,
        oauth_required: config.oauth.required,
        oauth_scopes: config.oauth.scopes.clone(),
        oauth_audience: config.oauth.audience.clone(),
        oauth_client_id: config.oauth.client_id.clone(),
        args: config.args.clone(),
        env: config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        env_passthrough: config.env_passthrough.clone(),
        working_dir: config.working_dir.as_ref().map(|p| p.display().to_string()),
        path: config.path.clone(),
        restart_policy: match config.restart.policy {
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::Never => "never",
        }
        .to_owned(),
        health_interval_ms: millis(config.health.interval),
        health_timeout_ms: millis(config.health.timeout),
        stop_timeout_ms: millis(config.stop_timeout),
        tools: status.tools.iter().map(|t| tool(name, t, true)).collect(),
        tool_rules: tool_rules(&config.oauth),
        audit_arguments: config.audit_arguments,
        limits: limits(&config),
        tool_filter: Vec::new(),
        conflicts: Vec::new(),
    }
}

pub(super) fn config_error(error: &ConfigError) -> proto::ConfigErrorInfo {
    proto::ConfigErrorInfo {
        file: error.file.display().to_string(),
        line: error.line.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        column: error.column.map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
        message: error.message.clone(),
        hint: error.hint.clone(),
    }
}

pub(super) fn log_line(line: &LogLine) -> proto::LogLine {
    proto::LogLine {
        at_unix_ms: unix_ms(line.at),
        stream: match line.stream {
            LogStream::Stdout => proto::LogStream::Stdout,
            LogStream::Stderr => proto::LogStream::Stderr,
            LogStream::Daemon => proto::LogStream::Daemon,
        },
        text: line.text.clone(),
    }
}

pub(super) fn plan(plan: &ReloadPlan) -> Vec<proto::PlannedChange> {
    plan.changes
        .iter()
        .map(|change| proto::PlannedChange {
            server: change.server.clone(),
            action: match change.action {
                PlanAction::Start => proto::PlanAction::Start,
                PlanAction::Stop => proto::PlanAction::Stop,
                PlanAction::Restart => proto::PlanAction::Restart,
                PlanAction::Update => proto::PlanAction::Update,
                PlanAction::Unchanged => proto::PlanAction::Unchanged,
            },
            reason: change.reason.clone(),
        })
        .collect()
}
