//! Reload planning: what applying a new set of servers does to each one, and why.

use std::collections::BTreeMap;

use super::{PlanAction, PlannedChange, ReloadPlan};
use crate::config::ServerConfig;
use crate::directory::ServerState;

/// What the supervisor currently runs for one server.
#[derive(Debug, Clone)]
pub struct Current {
    pub config: ServerConfig,
    pub state: ServerState,
    pub port: Option<u16>,
}

/// The plan from `current` to `new`; `new_ports` are the ports the new set would get.
pub fn plan(
    current: &BTreeMap<String, Current>,
    new: &BTreeMap<String, ServerConfig>,
    new_ports: &BTreeMap<String, u16>,
) -> ReloadPlan {
    let mut changes = Vec::new();
    let file = |c: &ServerConfig| {
        c.file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| c.file.display().to_string())
    };
    for (name, old) in current {
        if !new.contains_key(name) {
            changes.push(change(
                name,
                PlanAction::Stop,
                format!("removed from {}", file(&old.config)),
            ));
        }
    }
    for (name, config) in new {
        let Some(old) = current.get(name) else {
            let (action, reason) = if config.enabled {
                (PlanAction::Start, format!("new in {}", file(config)))
            } else {
                (
                    PlanAction::Update,
                    format!("new in {}, disabled", file(config)),
                )
            };
            changes.push(change(name, action, reason));
            continue;
        };
        let mut fields = changed_fields(&old.config, config);
        let new_port = new_ports.get(name).copied();
        let port_moves = old.port.is_some() && new_port != old.port && config.port.is_none();
        if port_moves {
            fields.push(format!(
                "allocated port moves from {} to {}",
                fmt_port(old.port),
                fmt_port(new_port)
            ));
        }
        let reason = fields.join(", ");
        let (action, reason) = match (old.config.enabled, config.enabled) {
            (true, false) => (PlanAction::Stop, "disabled".to_owned()),
            (false, true) => (PlanAction::Start, "enabled".to_owned()),
            _ if fields.is_empty() => (PlanAction::Unchanged, String::new()),
            (false, false) => (PlanAction::Update, format!("{reason} (disabled)")),
            _ if old.state == ServerState::Failed => (
                PlanAction::Restart,
                format!("{reason}; fresh start after failure"),
            ),
            _ if old.state == ServerState::Stopped => (
                PlanAction::Update,
                format!("{reason} (stopped; applies at next start)"),
            ),
            _ if port_moves || old.config.needs_restart_for(config) => {
                (PlanAction::Restart, reason)
            }
            _ => (PlanAction::Update, reason),
        };
        changes.push(change(name, action, reason));
    }
    changes.sort_by(|a, b| a.server.cmp(&b.server));
    ReloadPlan { changes }
}

fn change(server: &str, action: PlanAction, reason: String) -> PlannedChange {
    PlannedChange {
        server: server.to_owned(),
        action,
        reason,
    }
}

fn fmt_port(port: Option<u16>) -> String {
    port.map_or_else(|| "none".to_owned(), |p| p.to_string())
}

/// The names of the fields that differ, e.g. `["args changed", "description changed"]`.
pub fn changed_fields(old: &ServerConfig, new: &ServerConfig) -> Vec<String> {
    let mut fields = Vec::new();
    let mut check = |differs: bool, name: &str| {
        if differs {
            fields.push(format!("{name} changed"));
        }
    };
    check(old.binary != new.binary, "binary");
    check(!old.kind.same_runner(new.kind), "transport or sessions");
    check(
        old.kind != new.kind && old.kind.same_runner(new.kind),
        "max_sessions or idle_timeout",
    );
    check(old.args != new.args, "args");
    check(old.env != new.env, "env");
    check(
        old.env_passthrough != new.env_passthrough,
        "env_passthrough",
    );
    check(old.working_dir != new.working_dir, "working_dir");
    check(old.path != new.path, "path");
    check(old.port != new.port, "port");
    check(old.file != new.file, "file");
    check(old.package != new.package, "package");
    check(old.endpoint != new.endpoint, "endpoint");
    check(old.display_in_web != new.display_in_web, "display_in_web");
    check(old.description != new.description, "description");
    check(old.oauth != new.oauth, "oauth");
    check(old.restart != new.restart, "restart");
    check(old.health != new.health, "health");
    check(old.stop_timeout != new.stop_timeout, "stop_timeout");
    check(old.limits != new.limits, "limits");
    check(old.run_as != new.run_as, "user");
    let (old_remote, new_remote) = (old.remote.as_deref(), new.remote.as_deref());
    check(
        old_remote.map(|r| &r.url) != new_remote.map(|r| &r.url),
        "url",
    );
    check(
        old_remote.map(|r| &r.ca_file) != new_remote.map(|r| &r.ca_file),
        "tls",
    );
    // Said without the value: a credential is never shown.
    check(
        old_remote.map(|r| &r.credential) != new_remote.map(|r| &r.credential),
        "upstream_auth",
    );
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_builder::server_running;

    fn current(configs: &[(ServerConfig, ServerState, u16)]) -> BTreeMap<String, Current> {
        configs
            .iter()
            .map(|(c, state, port)| {
                let cur = Current {
                    config: c.clone(),
                    state: *state,
                    port: Some(*port),
                };
                (c.name.clone(), cur)
            })
            .collect()
    }

    /// A remote server at `url` with a bearer credential `token`.
    fn remote(url: &str, token: &[u8]) -> ServerConfig {
        use crate::remote::{Credential, RemoteTarget, RemoteUrl};
        let mut config = server_running("r", "");
        config.kind = crate::config::ServerKind::Remote;
        let credential =
            Credential::from_file(http::header::AUTHORIZATION, token, true, "r.token".into())
                .unwrap();
        let target = RemoteTarget::new(RemoteUrl::parse(url).unwrap(), None, Some(credential));
        config.remote = Some(std::sync::Arc::new(target.unwrap()));
        config
    }

    #[test]
    fn a_remote_servers_credential_and_url_changes_are_seen_without_the_value() {
        let old = remote("http://127.0.0.1:9/mcp", b"secret-one");
        let mut cur = current(&[(old.clone(), ServerState::Running, 0)]);
        cur.get_mut("r").unwrap().port = None;
        let changed = |new: ServerConfig| {
            let new = BTreeMap::from([("r".to_owned(), new)]);
            let plan = plan(&cur, &new, &BTreeMap::new());
            let change = &plan.changes[0];
            (change.action, change.reason.clone())
        };
        assert_eq!(changed(old.clone()), (PlanAction::Unchanged, String::new()));
        let (action, reason) = changed(remote("http://127.0.0.1:9/mcp", b"secret-two"));
        assert_eq!(
            (action, reason.as_str()),
            (PlanAction::Update, "upstream_auth changed")
        );
        assert!(!reason.contains("secret"));
        let (action, reason) = changed(remote("http://127.0.0.1:10/mcp", b"secret-one"));
        assert_eq!(
            (action, reason.as_str()),
            (PlanAction::Restart, "url changed")
        );
    }

    #[test]
    fn every_kind_of_change() {
        let a = server_running("a", "/bin/a");
        let b = server_running("b", "/bin/b");
        let c = server_running("c", "/bin/c");
        let d = server_running("d", "/bin/d");
        let e = server_running("e", "/bin/e");
        let f = server_running("f", "/bin/f");
        let cur = current(&[
            (a.clone(), ServerState::Running, 5000),
            (b.clone(), ServerState::Running, 5001),
            (c.clone(), ServerState::Running, 5002),
            (d.clone(), ServerState::Running, 5003),
            (e.clone(), ServerState::Failed, 5004),
            (f.clone(), ServerState::Running, 5005),
        ]);
        let mut new = BTreeMap::new();
        new.insert("a".into(), a.clone());
        let mut b2 = b.clone();
        b2.args = vec!["--x".into()];
        new.insert("b".into(), b2);
        let mut c2 = c.clone();
        c2.description = "now documented".into();
        new.insert("c".into(), c2);
        let mut d2 = d.clone();
        d2.enabled = false;
        new.insert("d".into(), d2);
        let mut e2 = e.clone();
        e2.description = "fixed?".into();
        new.insert("e".into(), e2);
        new.insert("g".into(), server_running("g", "/bin/g"));
        let ports: BTreeMap<String, u16> = [("a", 5000), ("b", 5001), ("c", 5002), ("d", 5003)]
            .into_iter()
            .map(|(n, p)| (n.to_owned(), p))
            .chain([("e".to_owned(), 5004), ("g".to_owned(), 5005)])
            .collect();
        let plan = plan(&cur, &new, &ports);
        let got: Vec<(&str, PlanAction, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.server.as_str(), c.action, c.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", PlanAction::Unchanged, ""),
                ("b", PlanAction::Restart, "args changed"),
                ("c", PlanAction::Update, "description changed"),
                ("d", PlanAction::Stop, "disabled"),
                (
                    "e",
                    PlanAction::Restart,
                    "description changed; fresh start after failure"
                ),
                ("f", PlanAction::Stop, "removed from f.yaml"),
                ("g", PlanAction::Start, "new in g.yaml"),
            ]
        );
    }

    #[test]
    fn an_allocated_port_that_moves_means_a_restart() {
        let a = server_running("a", "/bin/a");
        let cur = current(&[(a.clone(), ServerState::Running, 5000)]);
        let new = BTreeMap::from([("a".to_owned(), a)]);
        let ports = BTreeMap::from([("a".to_owned(), 5001)]);
        let plan = plan(&cur, &new, &ports);
        assert_eq!(plan.changes[0].action, PlanAction::Restart);
        assert_eq!(
            plan.changes[0].reason,
            "allocated port moves from 5000 to 5001"
        );
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;
    use crate::config::RunAs;
    use crate::config::test_builder::server_running;

    #[test]
    fn new_limits_update_in_place_and_a_new_user_restarts() {
        let a = server_running("a", "/bin/a");
        let b = server_running("b", "/bin/b");
        let cur = [(&a, 5000), (&b, 5001)]
            .into_iter()
            .map(|(c, port)| {
                let current = Current {
                    config: c.clone(),
                    state: ServerState::Running,
                    port: Some(port),
                };
                (c.name.clone(), current)
            })
            .collect();
        let mut a2 = a.clone();
        a2.limits.memory = Some(1 << 30);
        let mut b2 = b.clone();
        b2.run_as = Some(RunAs {
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            name: "nobody".into(),
            home: "/nonexistent".into(),
        });
        let new = [("a".to_owned(), a2), ("b".to_owned(), b2)].into();
        let ports = [("a".to_owned(), 5000), ("b".to_owned(), 5001)].into();
        let got: Vec<(PlanAction, String)> = plan(&cur, &new, &ports)
            .changes
            .into_iter()
            .map(|c| (c.action, c.reason))
            .collect();
        assert_eq!(
            got,
            [
                (PlanAction::Update, "limits changed".to_owned()),
                (PlanAction::Restart, "user changed".to_owned()),
            ]
        );
    }
}
