//! Operations end to end, with the real `mcpd`: reloads from file changes, SIGHUP and
//! `mcpctl reload`; settings of the daemon file; systemd notifications; `/metrics`.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpd_tests::ops_support::{Launch, OpsDaemon, SETTLE, echo_file};
use mcpd_tests::{GatewayUrls, TestDir, lazy, wait_for, wait_for_value};
use nix::sys::signal::Signal;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

/// Longer than the watcher's debounce (250 ms) several times over: a reload that was going to
/// happen has happened by then.
const QUIET: Duration = Duration::from_millis(1500);

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_process_gone(pid: u32) {
    wait_for(SETTLE, format!("process {pid} to be gone"), || {
        std::future::ready(!process_alive(pid))
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Server files

#[tokio::test]
async fn file_changes_start_restart_and_stop_servers() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", "args: [\"--one\"]"))]).await;
    let alpha = daemon.wait_running("alpha").await;

    // A new file: its server starts.
    daemon.write_server("b.yaml", &echo_file("beta", ""));
    let beta = daemon.wait_running("beta").await;

    // Other args: the process is replaced.
    daemon.write_server("a.yaml", &echo_file("alpha", "args: [\"--two\"]"));
    let alpha2 = daemon.wait_new_pid("alpha", alpha).await;
    wait_process_gone(alpha).await;
    assert_eq!(
        daemon.ctl_json(&["show", "alpha"], 0)["args"],
        json!(["--two"])
    );

    // The file removed: its server is stopped and forgotten.
    daemon.remove_server_file("b.yaml");
    daemon.wait_gone("beta").await;
    wait_process_gone(beta).await;
    assert_eq!(daemon.registry_entry("beta").await, None);
    // The other server was left alone.
    assert_eq!(daemon.wait_running("alpha").await, alpha2);
}

#[tokio::test]
async fn description_and_scopes_change_live_and_are_enforced_at_once() {
    let oauth = |description: &str, scope: &str| {
        echo_file(
            "guarded",
            &format!(
                "description: \"{description}\"\noauth: {{required: true, scopes: [{scope}]}}"
            ),
        )
    };
    let daemon = OpsDaemon::start(&[("g.yaml", oauth("first", "alpha"))]).await;
    let pid = daemon.wait_running("guarded").await;
    let alpha = daemon.token(&["alpha"]);
    let beta = daemon.token(&["beta"]);
    assert_eq!(daemon.initialize("guarded", Some(&alpha)).await, 200);
    assert_eq!(daemon.initialize("guarded", Some(&beta)).await, 403);

    // Saved the way editors do: a temp file renamed over the original.
    daemon.rename_save("g.yaml", &oauth("second", "beta"));
    let entry = wait_for_value(
        SETTLE,
        "the registry to show the new description",
        || async {
            daemon
                .registry_entry("guarded")
                .await
                .filter(|entry| entry["description"] == "second")
        },
    )
    .await;
    assert_eq!(entry["oauth_scopes"], json!(["beta"]));
    assert_eq!(
        daemon.wait_running("guarded").await,
        pid,
        "an oauth or description change must not restart the server"
    );
    assert_eq!(daemon.initialize("guarded", Some(&alpha)).await, 403);
    assert_eq!(daemon.initialize("guarded", Some(&beta)).await, 200);
}

#[tokio::test]
async fn a_broken_file_keeps_its_servers_until_it_is_fixed() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", "description: one"))]).await;
    let pid = daemon.wait_running("alpha").await;

    daemon.write_server(
        "a.yaml",
        "mcp_servers:\n  alpha:\n    binary: mcp-echo\n    enbled: true\n",
    );
    let errors = wait_for_value(SETTLE, "the error to show in mcpctl status", || {
        let status = daemon.status();
        let errors = status["config_errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        std::future::ready((!errors.is_empty()).then_some(errors))
    })
    .await;
    let error = &errors[0];
    assert!(
        error["file"].as_str().unwrap().ends_with("a.yaml") && error["line"] == 4,
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("enbled"),
        "{error}"
    );
    assert_eq!(
        daemon.wait_running("alpha").await,
        pid,
        "the old server keeps running"
    );

    let validate = daemon.ctl_json(&["validate"], 1);
    assert!(
        validate["config_errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("enbled")),
        "{validate}"
    );
    let human = daemon.ctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("a.yaml:4"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    daemon.write_server("a.yaml", &echo_file("alpha", "description: two"));
    wait_for(SETTLE, "the fixed file to be applied", || async {
        daemon.status()["config_errors"] == json!([])
            && daemon
                .registry_entry("alpha")
                .await
                .is_some_and(|e| e["description"] == "two")
    })
    .await;
    assert_eq!(daemon.wait_running("alpha").await, pid);
}

/// The counter `mcpd_reloads_total`, read from `/metrics`.
async fn reloads(daemon: &OpsDaemon) -> f64 {
    let text = daemon.metrics_text().await;
    sample(&parse(&text), "mcpd_reloads_total", &[]).expect("mcpd_reloads_total")
}

#[tokio::test]
async fn a_burst_of_writes_is_folded_into_few_reloads() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", ""))]).await;
    daemon.wait_running("alpha").await;
    let before = reloads(&daemon).await;
    for i in 0..100 {
        daemon.write_server(
            "a.yaml",
            &echo_file("alpha", &format!("description: \"v{i}\"")),
        );
    }
    wait_for(SETTLE, "the last write to be applied", || async {
        daemon
            .registry_entry("alpha")
            .await
            .is_some_and(|e| e["description"] == "v99")
    })
    .await;
    // Give any straggling reload time to happen before counting. Exactly how a burst folds
    // (one request per quiet period, at most MAX_DELAY after its first change) is
    // `watch::tests::bursts_fold_into_one_request`'s to check with the clock as a parameter;
    // here a writer descheduled for longer than the quiet period may split the burst, so the
    // check is that the 100 writes were folded, not reloaded one by one.
    let more = tokio::time::timeout(QUIET, async {
        loop {
            if reloads(&daemon).await - before > 10.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let count = reloads(&daemon).await - before;
    assert!(
        more.is_err() && (1.0..=10.0).contains(&count),
        "100 writes gave {count} reloads"
    );
}

#[tokio::test]
async fn the_services_dir_can_be_deleted_and_recreated() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", ""))]).await;
    let alpha = daemon.wait_running("alpha").await;

    std::fs::remove_dir_all(daemon.services_dir()).unwrap();
    wait_for(SETTLE, "the missing directory to be reported", || {
        let status = daemon.status();
        std::future::ready(
            status["config_errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("services directory")),
        )
    })
    .await;
    assert_eq!(
        daemon.wait_running("alpha").await,
        alpha,
        "servers are kept"
    );

    std::fs::create_dir(daemon.services_dir()).unwrap();
    daemon.write_server("b.yaml", &echo_file("beta", ""));
    daemon.wait_running("beta").await;
    daemon.wait_gone("alpha").await;
    wait_process_gone(alpha).await;

    // Still watched: a later change in the new directory applies too.
    daemon.write_server("c.yaml", &echo_file("gamma", ""));
    daemon.wait_running("gamma").await;
    assert_eq!(daemon.status()["config_errors"], json!([]));
}

#[tokio::test]
async fn a_reload_does_not_drop_requests_in_flight_to_unchanged_servers() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", ""))]).await;
    daemon.wait_running("alpha").await;
    let url = daemon.url("/api/v1/mcp/alpha/mcp");
    let transport = StreamableHttpClientTransport::from_uri(url);
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("connect through the gateway");
    let call = tokio::spawn(async move {
        let Value::Object(arguments) = json!({"ms": 2000}) else {
            unreachable!()
        };
        let result = client
            .call_tool(CallToolRequestParams::new("sleep").with_arguments(arguments))
            .await;
        let _ = client.cancel().await;
        result
    });
    // The call has reached the server when it prints its announcement.
    wait_for(SETTLE, "the sleep call to reach the server", || {
        let logs = daemon.ctl(&["logs", "alpha"]);
        std::future::ready(String::from_utf8_lossy(&logs.stdout).contains("call sleep"))
    })
    .await;

    daemon.write_server("b.yaml", &echo_file("beta", ""));
    let reload = daemon.ctl_json(&["reload"], 0);
    assert!(
        !call.is_finished(),
        "the reload should have finished while the call was in flight"
    );
    assert!(
        reload["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["server"] == "alpha" && c["action"] == "unchanged"),
        "{reload}"
    );
    let result = tokio::time::timeout(SETTLE, call)
        .await
        .expect("the call to finish")
        .expect("the call task")
        .expect("the call succeeds across the reload");
    let content = serde_json::to_value(&result.content).unwrap();
    assert_eq!(content[0]["text"], "slept 2000 ms");
}

// ---------------------------------------------------------------------------------------------
// SIGHUP, mcpctl reload and the daemon file

#[tokio::test]
async fn sighup_reloads() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", ""))]).await;
    daemon.wait_running("alpha").await;
    let before = reloads(&daemon).await;
    daemon.signal(Signal::SIGHUP);
    wait_for(SETTLE, "a reload after SIGHUP", || async {
        reloads(&daemon).await > before
    })
    .await;
    // The log is read from a pipe by a thread of the test's own, which may lag behind the
    // reload counted in /metrics.
    wait_for(SETTLE, "the SIGHUP line in the daemon log", || async {
        daemon.log_lines("SIGHUP: reloading") >= 1
    })
    .await;
    assert_eq!(daemon.log_lines("SIGHUP: reloading"), 1);
    assert!(
        daemon.process.try_status().is_none(),
        "mcpd survives SIGHUP"
    );
}

/// Rewrites mcpd.yaml with `from` replaced by `to` (the daemon file is not watched).
fn edit_daemon_file(daemon: &OpsDaemon, from: &str, to: &str) {
    let path = daemon.dir.join("mcpd.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in mcpd.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[tokio::test]
async fn reload_dry_run_prints_the_plan_without_applying_it() {
    let daemon = OpsDaemon::start(&[("a.yaml", echo_file("alpha", ""))]).await;
    let pid = daemon.wait_running("alpha").await;
    assert_eq!(
        daemon.ctl_json(&["show", "alpha"], 0)["stop_timeout_ms"],
        3000
    );
    // `defaults` live in the daemon file, which only SIGHUP or `mcpctl reload` read.
    edit_daemon_file(&daemon, "stop_timeout: 3s", "stop_timeout: 4s");

    let plan = daemon.ctl(&["reload", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "{text}");
    assert!(text.contains("dry run"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("alpha") && l.contains("update") && l.contains("stop_timeout")),
        "{text}"
    );
    assert_eq!(
        daemon.ctl_json(&["show", "alpha"], 0)["stop_timeout_ms"],
        3000,
        "a dry run applies nothing"
    );

    let applied = daemon.ctl_json(&["reload"], 0);
    assert_eq!(applied["dry_run"], false);
    assert_eq!(
        daemon.ctl_json(&["show", "alpha"], 0)["stop_timeout_ms"],
        4000
    );
    assert_eq!(
        daemon.wait_running("alpha").await,
        pid,
        "an update keeps the process"
    );
}

#[tokio::test]
async fn daemon_file_settings_apply_live_or_are_reported_as_needing_a_restart() {
    let daemon = OpsDaemon::start(&[(
        "a.yaml",
        echo_file("alpha", "oauth: {required: true, scopes: [alpha]}"),
    )])
    .await;
    daemon.wait_running("alpha").await;
    let origin_ok = || async {
        daemon
            .http()
            .get(daemon.url("/api/v1/mcp/registry"))
            .header("Origin", "http://app.example")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(origin_ok().await, 403);
    let old_token = daemon.token(&["alpha"]);
    assert_eq!(daemon.initialize("alpha", Some(&old_token)).await, 200);

    // Live: allowed origins and the HS256 key (rotated in place). Not live: the listen address.
    let moved = daemon.ports.port(19);
    edit_daemon_file(
        &daemon,
        &format!("listen: 127.0.0.1:{}", daemon.gateway_port()),
        &format!("listen: 127.0.0.1:{moved}\n  allowed_origins: [\"http://app.example\"]"),
    );
    daemon.dir.write(
        "jwt.secret",
        "a-rotated-secret-0123456789abcdef0123456789abcdef",
    );
    let reload = daemon.ctl(&["reload"]);
    let text = String::from_utf8_lossy(&reload.stdout);
    // A pending restart is a notice, not a failure: `systemctl reload` runs `mcpctl reload`
    // and must not fail for it.
    assert_eq!(
        reload.status.code(),
        Some(0),
        "a pending restart alone is a successful reload: {text}"
    );
    assert!(
        text.contains("not applied until mcpd restarts:") && text.contains("gateway.listen"),
        "the operator is told the listen address needs a restart: {text}"
    );
    assert!(!text.contains("configuration errors"), "{text}");
    assert_eq!(origin_ok().await, 200, "allowed_origins applied live");
    assert_eq!(daemon.initialize("alpha", Some(&old_token)).await, 401);
    let new_token = daemon.token(&["alpha"]);
    assert_eq!(daemon.initialize("alpha", Some(&new_token)).await, 200);
    assert!(
        !mcpd_tests::port_accepts(moved),
        "the gateway stays on its address until a restart"
    );
    // The notice stays visible in `mcpctl status` until the restart (or a revert).
    let status = daemon.status();
    assert!(
        status["config_errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gateway.listen")),
        "{status}"
    );
    // A notice is not a failed reload.
    let text = daemon.metrics_text().await;
    assert_eq!(
        sample(&parse(&text), "mcpd_reload_failures_total", &[]),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------------------------
// systemd

/// Every datagram received on a notify socket, in order.
struct NotifySocket {
    _dir: TestDir,
    path: std::path::PathBuf,
    received: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = TestDir::new();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            }
        });
        NotifySocket {
            _dir: dir,
            path,
            received,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    /// Index of the first message at or after `from` with the line `line`.
    fn position(&self, line: &str, from: usize) -> Option<usize> {
        self.messages()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| m.lines().any(|l| l == line))
            .map(|(i, _)| i)
    }

    async fn wait_position(&self, line: &str, from: usize) -> usize {
        wait_for_value(
            SETTLE,
            lazy(|| format!("{line} after message {from}; got {:?}", self.messages())),
            || std::future::ready(self.position(line, from)),
        )
        .await
    }
}

#[tokio::test]
async fn notifies_systemd_of_ready_reloading_watchdog_and_stopping() {
    let notify = NotifySocket::bind();
    let daemon = OpsDaemon::start_with(
        &[("a.yaml", echo_file("alpha", ""))],
        Launch {
            env: vec![
                (
                    "NOTIFY_SOCKET".into(),
                    notify.path.to_string_lossy().into_owned(),
                ),
                ("WATCHDOG_USEC".into(), "200000".into()),
            ],
            ..Launch::default()
        },
    )
    .await;
    let pid = daemon.wait_running("alpha").await;

    let ready = notify.wait_position("READY=1", 0).await;
    let first = &notify.messages()[ready];
    assert!(
        first
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("servers running")),
        "{first:?}"
    );
    // Every 100 ms (half of WATCHDOG_USEC).
    wait_for(SETTLE, "three WATCHDOG=1", || {
        std::future::ready(notify.count("WATCHDOG=1") >= 3)
    })
    .await;

    let mark = notify.messages().len();
    daemon.signal(Signal::SIGHUP);
    let reloading = notify.wait_position("RELOADING=1", mark).await;
    assert!(
        notify.messages()[reloading]
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{:?}",
        notify.messages()[reloading]
    );
    notify.wait_position("READY=1", reloading + 1).await;

    // Children never see the daemon's notify socket or watchdog.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read the child's environ");
    let environ = String::from_utf8_lossy(&environ);
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(
        vars.iter().any(|v| v.starts_with("MCP_PORT=")),
        "sanity: {vars:?}"
    );
    assert!(
        !vars
            .iter()
            .any(|v| v.starts_with("NOTIFY_SOCKET=") || v.starts_with("WATCHDOG_")),
        "{vars:?}"
    );

    let mark = notify.messages().len();
    daemon.signal(Signal::SIGTERM);
    notify.wait_position("STOPPING=1", mark).await;
    let status = daemon.process.wait_exit(SETTLE).await;
    assert_eq!(status.code(), Some(0), "{}", daemon.process.stderr());
}

// ---------------------------------------------------------------------------------------------
// /metrics

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the metrics parse")
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test]
async fn metrics_expose_servers_requests_auth_failures_and_reloads() {
    let daemon = OpsDaemon::start(&[(
        "a.yaml",
        echo_file("alpha", "oauth: {required: true, scopes: [alpha]}"),
    )])
    .await;
    daemon.wait_running("alpha").await;
    let server = [("server", "alpha")];

    // The first liveness probe (every 200 ms here) publishes a probe time.
    let scrape = wait_for_value(SETTLE, "a probe time for alpha", || async {
        let scrape = parse(&daemon.metrics_text().await);
        sample(&scrape, "mcpd_server_probe_seconds", &server)
            .is_some()
            .then_some(scrape)
    })
    .await;
    let probe = sample(&scrape, "mcpd_server_probe_seconds", &server).unwrap();
    assert!(probe > 0.0 && probe < 5.0, "probe took {probe} s");
    assert_eq!(
        sample(
            &scrape,
            "mcpd_server_state",
            &[("server", "alpha"), ("state", "running")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "mcpd_server_state",
            &[("server", "alpha"), ("state", "failed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&scrape, "mcpd_server_restarts_total", &server),
        Some(0.0)
    );
    assert!(sample(&scrape, "mcpd_server_uptime_seconds", &server).is_some_and(|s| s >= 0.0));
    assert_eq!(sample(&scrape, "mcpd_server_tools", &server), Some(4.0));

    let counters = |scrape: &prometheus_parse::Scrape| {
        let get = |name: &str, labels: &[(&str, &str)]| sample(scrape, name, labels).unwrap_or(0.0);
        BTreeMap::from([
            (
                "ok",
                get(
                    "mcpd_gateway_requests_total",
                    &[("server", "alpha"), ("status", "200")],
                ),
            ),
            (
                "unauthorized",
                get(
                    "mcpd_gateway_requests_total",
                    &[("server", "alpha"), ("status", "401")],
                ),
            ),
            (
                "missing",
                get("mcpd_gateway_auth_failures_total", &[("reason", "missing")]),
            ),
            ("reloads", get("mcpd_reloads_total", &[])),
        ])
    };
    let before = counters(&scrape);

    let token = daemon.token(&["alpha"]);
    assert_eq!(daemon.initialize("alpha", Some(&token)).await, 200);
    assert_eq!(daemon.initialize("alpha", Some(&token)).await, 200);
    assert_eq!(daemon.initialize("alpha", None).await, 401);
    daemon.ctl_json(&["reload"], 0);

    let after = counters(&parse(&daemon.metrics_text().await));
    assert_eq!(after["ok"] - before["ok"], 2.0, "{before:?} -> {after:?}");
    assert_eq!(after["unauthorized"] - before["unauthorized"], 1.0);
    assert_eq!(after["missing"] - before["missing"], 1.0);
    assert_eq!(after["reloads"] - before["reloads"], 1.0);
}
