//! Supervision end to end: the real `mcpd` runs real servers (mcp-echo and the hostile fixture
//! scripts of tests/fixtures), and the tests read its state through the real `mcpctl --json`
//! and the process table. Each test has its own daemon, temp dir, ports and socket.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpd::mcp_client::McpClient;
use mcpd_tests::sup_support::{SupDaemon, children, descendants, is_dead, read_pids, vm_rss_kib};
use mcpd_tests::{
    describe, lazy, mcp_url, pid_of, port_accepts, port_of, wait_for, wait_for_value,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Map, Value, json};

/// Long enough for a debug-build server to start on a busy machine.
const UP: Duration = Duration::from_secs(20);
const CALL: Duration = Duration::from_secs(5);

/// Calls mcp-echo's `echo` tool directly on `port` and returns the text it echoed.
async fn echo_on(port: u16, text: &str) -> Result<String, String> {
    let Value::Object(arguments) = json!({ "text": text }) else {
        unreachable!()
    };
    let result = McpClient::new()
        .call_tool(&mcp_url(port), "echo", arguments, CALL)
        .await
        .map_err(|error| error.to_string())?;
    result["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no text in {result}"))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("send SIGKILL");
}

/// Waits until every pid of `pids` is dead (gone or a zombie).
async fn wait_dead(pids: &BTreeSet<u32>, timeout: Duration, what: &str) {
    let message = lazy(|| {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| !is_dead(*p)).collect();
        format!("{what}: still alive: {alive:?}")
    });
    wait_for(timeout, message, || {
        std::future::ready(pids.iter().all(|pid| is_dead(*pid)))
    })
    .await;
}

/// Waits until `pid` has no zombie child.
async fn wait_no_zombie_children(pid: u32) {
    let message = lazy(|| format!("no zombie children of {pid}: {:?}", children(pid)));
    wait_for(UP, message, || {
        std::future::ready(children(pid).iter().all(|(_, state)| *state != 'Z'))
    })
    .await;
}

// 1 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn three_echo_servers_come_up_running_and_answer_on_their_own_ports() {
    let mut daemon = SupDaemon::new(10);
    let explicit = daemon.first_server_port() + 5;
    daemon.echo("alpha", &format!("port: {explicit}\n"));
    daemon.echo("beta", "");
    daemon.echo("gamma", "");
    daemon.start().await;

    let mut ports = BTreeSet::new();
    for name in ["alpha", "beta", "gamma"] {
        let status = daemon.wait_state(name, "running", UP).await;
        let port = port_of(&status);
        assert!(
            (daemon.first_server_port()..=daemon.ports.last()).contains(&port),
            "{name}: port {port} outside the range"
        );
        assert!(ports.insert(port), "{name}: port {port} given twice");
        assert_eq!(status["tools_count"], 4, "{status}");
        assert_eq!(status["restarts"], 0, "{status}");
        assert!(status["pid"].as_u64().is_some(), "{status}");
        assert_eq!(
            echo_on(port, name).await.as_deref(),
            Ok(name),
            "{name} on its own port {port}"
        );
    }
    assert!(
        ports.contains(&explicit),
        "alpha is not on its explicit port"
    );
    // Allocated ports are the lowest free ones.
    assert!(ports.contains(&daemon.first_server_port()));
    assert!(ports.contains(&(daemon.first_server_port() + 1)));
}

// 2 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_killed_server_is_restarted_on_the_same_port_with_its_exit_recorded() {
    let mut daemon = SupDaemon::new(5);
    daemon.echo("victim", "");
    daemon.fixture_server("crasher", "crash_after.sh", &[("CRASH_AFTER", "2")], "");
    daemon.start().await;

    let before = daemon.wait_state("victim", "running", UP).await;
    let port = port_of(&before);
    let old_pid = pid_of(&before);
    let crasher_port = port_of(&daemon.wait_state("crasher", "running", UP).await);
    sigkill(old_pid);

    let after = daemon
        .wait_status("victim", UP, "running again after kill -9", |s| {
            s["state"] == "running" && s["restarts"] == 1
        })
        .await;
    assert_ne!(pid_of(&after), old_pid, "{after}");
    assert_eq!(port_of(&after), port, "restarted on another port: {after}");
    assert_eq!(after["last_exit"], "killed by signal SIGKILL", "{after}");
    assert_eq!(echo_on(port, "again").await.as_deref(), Ok("again"));

    // A process that exits with a code on its own (leaving its mcp-echo child on the port).
    let crashed = daemon
        .wait_status("crasher", UP, "running again after exit 3", |s| {
            s["state"] == "running" && s["restarts"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(crashed["last_exit"], "exit code 3", "{crashed}");
    assert_eq!(port_of(&crashed), crasher_port, "{crashed}");
}

// 3 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_server_that_always_dies_is_failed_after_burst_with_backoff_between_attempts() {
    let mut daemon = SupDaemon::new(2);
    let starts = daemon.dir.join("starts");
    daemon.fixture_server(
        "doomed",
        "die_at_start.sh",
        &[("STARTS_FILE", &starts.display().to_string())],
        "restart: {backoff: 200ms, max_backoff: 800ms, burst: 4, window: 60s}\n",
    );
    daemon.start().await;

    let failed = daemon.wait_state("doomed", "failed", UP).await;
    assert_eq!(failed["restarts"], 3, "{failed}");
    assert_eq!(failed["last_exit"], "exit code 1", "{failed}");
    assert!(failed["pid"].is_null(), "{failed}");
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("crash loop: 4 failures within 1m"),
        "last_error: {error}"
    );

    let times: Vec<f64> = std::fs::read_to_string(&starts)
        .expect("the fixture recorded its starts")
        .lines()
        .map(|line| line.parse().expect("a start time"))
        .collect();
    assert_eq!(times.len(), 4, "one start per attempt: {times:?}");
    // Restart n waits min(200ms * 2^(n-1), 800ms) plus 0-20% jitter. Reaping and two process
    // starts come on top, which a loaded machine can stretch a lot, so the upper bound only
    // catches a backoff far off its setting (the exact delays are lifecycle_tests').
    for (n, expected) in [(1, 0.2), (2, 0.4), (3, 0.8)] {
        let gap = times[n] - times[n - 1];
        assert!(
            gap >= expected - 0.01 && gap <= expected * 1.2 + 5.0,
            "delay before restart {n}: {gap:.3}s, expected {expected}s + up to 20%; starts {times:?}"
        );
    }

    // Parked: nothing starts it again. Wait past the longest backoff, then look.
    let since = failed["since_unix_ms"].as_u64().expect("since");
    daemon
        .wait_status("doomed", UP, "1.5 s in failed", |s| {
            s["state"] == "failed" && now_unix_ms() >= since + 1500
        })
        .await;
    let still = daemon.status("doomed").await;
    assert_eq!(still["restarts"], 3, "{still}");
    assert_eq!(still["since_unix_ms"], failed["since_unix_ms"], "{still}");
    let count = std::fs::read_to_string(&starts)
        .expect("starts")
        .lines()
        .count();
    assert_eq!(count, 4, "started again while parked");

    // The log file holds the output of every attempt and the supervisor's notes.
    let message = lazy(|| {
        format!(
            "4 attempts in the log file under {}",
            daemon.logs_dir.display()
        )
    });
    let text = wait_for_value(UP, message, || {
        let text = daemon
            .log_file("doomed")
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        let ready = text.matches("die_at_start: exiting at once").count() == 4
            && text.contains("crash loop");
        std::future::ready(ready.then_some(text))
    })
    .await;
    // The supervisor's notes are in the `mcpd` stream column, not in a server's.
    assert!(
        text.lines()
            .any(|line| line.ends_with(" mcpd process ended: exit code 1")),
        "{text}"
    );
}

// 4 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_server_ignoring_sigterm_is_killed_after_stop_timeout_with_its_grandchildren() {
    let mut daemon = SupDaemon::new(2);
    let pids_file = daemon.dir.join("stubborn.pids");
    daemon.fixture_server(
        "stubborn",
        "ignore_term.sh",
        &[("PIDS_FILE", &pids_file.display().to_string())],
        "stop_timeout: 1s\n",
    );
    daemon.start().await;
    let running = daemon.wait_state("stubborn", "running", UP).await;
    let port = port_of(&running);
    let pids = wait_for_value(UP, "the fixture's pids", || {
        std::future::ready(read_pids(&pids_file))
    })
    .await;
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_eq!(
        pid_of(&running),
        pids[0],
        "the script is the server's process"
    );

    let asked = Instant::now();
    let stopped = daemon.ctl_json(&["stop", "stubborn"]).await;
    let took = asked.elapsed();
    assert_eq!(stopped["outcomes"][0]["ok"], true, "{stopped}");
    // The daemon waited out stop_timeout before SIGKILL (a lower bound cannot flake).
    assert!(
        took >= Duration::from_millis(950),
        "stop took {took:?} with stop_timeout 1s"
    );
    let status = daemon.status("stubborn").await;
    assert_eq!(status["state"], "stopped", "{status}");
    assert_eq!(status["last_exit"], "killed by signal SIGKILL", "{status}");
    assert!(status["pid"].is_null(), "{status}");

    wait_dead(
        &pids.iter().copied().collect(),
        UP,
        "script, mcp-echo and sleeper",
    )
    .await;
    wait_no_zombie_children(daemon.pid()).await;
    assert!(!port_accepts(port), "something still listens on {port}");
    assert_eq!(
        daemon.status("stubborn").await["restarts"],
        0,
        "an operator stop must not restart"
    );
}

// 5 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stdout_flood_does_not_stall_other_servers_or_grow_the_daemon() {
    const RSS_LIMIT_KIB: u64 = 100 * 1024;
    let mut daemon = SupDaemon::new(4);
    let done = daemon.dir.join("flood.done");
    daemon.fixture_server(
        "flood",
        "flood.sh",
        &[
            ("FLOOD_SECONDS", "5"),
            ("DONE_FILE", &done.display().to_string()),
            ("RUST_LOG", "warn"),
        ],
        "",
    );
    // One slow probe (over 1 s) twice in a row would restart it.
    daemon.echo(
        "steady",
        "health: {interval: 200ms, timeout: 1s, failures: 2}\n",
    );
    daemon.start().await;
    let steady = daemon.wait_state("steady", "running", UP).await;
    let first_read = Instant::now();
    let port = port_of(&steady);
    daemon.wait_state("flood", "running", UP).await;
    let first_uptime = steady["uptime_ms"].as_u64().expect("uptime");

    let mut peak_rss = 0;
    let mut calls = 0;
    let flooding = Instant::now();
    loop {
        if done.exists() {
            break;
        }
        assert!(
            flooding.elapsed() < Duration::from_secs(30),
            "the flood never ended"
        );
        let answer = echo_on(port, &calls.to_string()).await;
        assert_eq!(answer, Ok(calls.to_string()), "steady during the flood");
        calls += 1;
        let status = daemon.status("steady").await;
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(status["restarts"], 0, "a probe of steady stalled: {status}");
        let rss = vm_rss_kib(daemon.pid()).expect("the daemon's VmRSS");
        peak_rss = peak_rss.max(rss);
        assert!(rss < RSS_LIMIT_KIB, "daemon RSS {rss} KiB during the flood");
    }
    assert!(calls >= 3, "only {calls} calls during the flood");

    let between_reads = first_read.elapsed();
    let after = daemon.status("steady").await;
    assert_eq!(after["state"], "running", "{after}");
    assert_eq!(after["restarts"], 0, "{after}");
    assert_eq!(after["pid"], steady["pid"], "steady was restarted: {after}");
    // The same process all along: its uptime grew by the time between the two reads (less a
    // little, as the uptime comes from the wall clock in whole milliseconds).
    let uptime = after["uptime_ms"].as_u64().expect("uptime");
    let grown = Duration::from_millis(uptime.saturating_sub(first_uptime));
    assert!(
        grown + Duration::from_millis(100) >= between_reads,
        "steady's uptime went from {first_uptime} to {uptime} ms over {between_reads:?}"
    );
    let flood = daemon.status("flood").await;
    assert_eq!(
        flood["state"], "running",
        "the flooder itself stays up: {flood}"
    );
    let (_, tail) = daemon.ctl(&["logs", "flood", "-n", "50"]).await;
    assert!(tail.contains("flood flood"), "{tail}");
    let written = daemon
        .log_file("flood")
        .and_then(|file| std::fs::metadata(file).ok())
        .map_or(0, |meta| meta.len());
    assert!(
        written > 1 << 20,
        "only {written} bytes of flood reached the log file"
    );
    eprintln!(
        "flood: {written} bytes logged; peak daemon RSS {peak_rss} KiB; {calls} calls to steady"
    );
}

// 6 -------------------------------------------------------------------------------------------

/// A daemon with an echo, a server ignoring SIGTERM (stop_timeout 1500ms) and one whose
/// children hold its port and pipe; returns it once all are running, with the pids of every
/// process it started (children and grandchildren).
async fn daemon_with_a_family() -> (SupDaemon, BTreeSet<u32>) {
    let mut daemon = SupDaemon::new(5);
    let stubborn_pids = daemon.dir.join("stubborn.pids");
    let forker_pids = daemon.dir.join("forker.pids");
    let never = daemon.dir.join("never");
    daemon.echo("plain", "");
    daemon.fixture_server(
        "stubborn",
        "ignore_term.sh",
        &[("PIDS_FILE", &stubborn_pids.display().to_string())],
        "stop_timeout: 1500ms\n",
    );
    daemon.fixture_server(
        "forker",
        "keep_port.sh",
        &[
            ("PIDS_FILE", &forker_pids.display().to_string()),
            ("EXIT_WHEN", &never.display().to_string()),
        ],
        "",
    );
    daemon.start().await;
    for name in ["plain", "stubborn", "forker"] {
        daemon.wait_state(name, "running", UP).await;
    }
    let mut family: BTreeSet<u32> = BTreeSet::new();
    for file in [&stubborn_pids, &forker_pids] {
        let pids = wait_for_value(UP, "the fixtures' pids", || {
            std::future::ready(read_pids(file))
        })
        .await;
        family.extend(pids);
    }
    family.extend(descendants(daemon.pid()));
    daemon.remember(family.iter().copied());
    // plain; stubborn + mcp-echo + sleeper; forker + mcp-echo + sleeper.
    assert!(family.len() >= 7, "{family:?}");
    (daemon, family)
}

#[tokio::test]
async fn daemon_sigterm_stops_every_child_removes_the_socket_and_exits_0() {
    let (mut daemon, family) = daemon_with_a_family().await;
    let process = daemon.take_daemon();
    process.signal(Signal::SIGTERM);
    let asked = Instant::now();
    // The longest stop_timeout is 1.5 s; UP is only the budget of the wait.
    let status = process.wait_exit(UP).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{}; stderr: {}",
        describe(status),
        process.stderr()
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(1400),
        "exited before stubborn's stop_timeout: {:?}",
        asked.elapsed()
    );
    assert!(!daemon.socket.exists(), "the control socket is left behind");
    wait_dead(&family, UP, "every process of mcpd").await;
}

#[tokio::test]
async fn daemon_sigkill_takes_children_and_grandchildren_down_within_2s() {
    let (mut daemon, family) = daemon_with_a_family().await;
    let process = daemon.take_daemon();
    process.signal(Signal::SIGKILL);
    process.wait_exit(UP).await;
    wait_dead(&family, UP, "every process of mcpd").await;
}

// 7 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_explicit_port_held_by_a_foreign_listener_fails_without_a_crash_loop() {
    let mut daemon = SupDaemon::new(5);
    let taken = daemon.first_server_port() + 3;
    let _foreign = mcpd_tests::hold_port(taken);
    daemon.echo("blocked", &format!("port: {taken}\n"));
    daemon.echo("witness", "");
    daemon.start().await;

    let failed = daemon.wait_state("blocked", "failed", UP).await;
    assert_eq!(
        failed["last_error"],
        format!("port {taken} is in use by another process"),
        "{failed}"
    );
    assert_eq!(failed["restarts"], 0, "{failed}");
    assert!(failed["pid"].is_null(), "{failed}");

    // Let several probe intervals (200 ms) pass, measured on the witness's uptime.
    let witness = daemon.wait_state("witness", "running", UP).await;
    let uptime = witness["uptime_ms"].as_u64().expect("uptime");
    daemon
        .wait_status("witness", UP, "five more probe intervals", |s| {
            s["uptime_ms"].as_u64() >= Some(uptime + 1000)
        })
        .await;
    let still = daemon.status("blocked").await;
    assert_eq!(still["state"], "failed", "{still}");
    assert_eq!(still["restarts"], 0, "{still}");
    assert_eq!(still["since_unix_ms"], failed["since_unix_ms"], "{still}");
}

// 8 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_show_what_the_server_printed_and_land_in_its_file() {
    let mut daemon = SupDaemon::new(2);
    // Only its stdout lines (one per call) then, no rmcp log lines on stderr.
    daemon.echo("talker", "env: {RUST_LOG: warn}\n");
    daemon.start().await;
    let port = port_of(&daemon.wait_state("talker", "running", UP).await);
    for text in ["one", "two"] {
        assert_eq!(echo_on(port, text).await.as_deref(), Ok(text));
    }
    let Value::Object(arguments) = json!({"a": 1, "b": 2}) else {
        unreachable!()
    };
    McpClient::new()
        .call_tool(&mcp_url(port), "add", arguments, CALL)
        .await
        .expect("call add");

    let lines: Vec<Value> =
        wait_for_value(UP, "`mcpctl logs talker -n 5` to show call add", || async {
            let (code, stdout) = daemon.ctl(&["logs", "talker", "-n", "5"]).await;
            assert_eq!(code, Some(0), "{stdout}");
            let lines: Vec<Value> = stdout
                .lines()
                .map(|line| serde_json::from_str(line).expect("a JSON log line"))
                .collect();
            lines
                .iter()
                .any(|line| line["text"] == "call add")
                .then_some(lines)
        })
        .await;
    assert!(lines.len() <= 5, "{lines:?}");
    let texts: Vec<&str> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    let calls: Vec<&&str> = texts.iter().filter(|t| t.starts_with("call ")).collect();
    assert_eq!(
        calls,
        [&"call echo", &"call echo", &"call add"],
        "{texts:?}"
    );
    let add = lines.iter().find(|l| l["text"] == "call add").expect("add");
    assert_eq!(add["stream"], "stdout", "{add}");
    assert!(add["at_unix_ms"].as_u64().is_some(), "{add}");

    let file = wait_for_value(UP, "call add in talker's log file", || {
        let found = daemon.log_file("talker").filter(|path| {
            std::fs::read_to_string(path).is_ok_and(|text| text.contains("out call add"))
        });
        std::future::ready(found)
    })
    .await;
    assert_eq!(file, daemon.logs_dir.join("talker.log"));
    let text = std::fs::read_to_string(&file).expect("read the log file");
    assert!(text.contains("mcp-echo listening on"), "{text}");
}

// 9 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_allocated_port_survives_a_daemon_restart() {
    let mut daemon = SupDaemon::new(5);
    daemon.echo("first", "");
    daemon.echo("second", "");
    daemon.start().await;
    daemon.wait_state("first", "running", UP).await;
    let port = port_of(&daemon.wait_state("second", "running", UP).await);
    assert_eq!(
        port,
        daemon.first_server_port() + 1,
        "second got the next port"
    );
    let saved: Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(daemon.state_dir.join("ports.json")).expect("ports.json"),
    )
    .expect("ports.json is a JSON object");
    assert_eq!(saved["second"], port, "{saved:?}");

    let process = daemon.take_daemon();
    process.signal(Signal::SIGTERM);
    assert_eq!(process.wait_exit(UP).await.code(), Some(0));
    drop(process);

    // Without `first`, the lowest free port is first's; `second` must keep its own.
    std::fs::remove_file(daemon.dir.join("mcp/first.yaml")).expect("remove first.yaml");
    daemon.start().await;
    let again = daemon.wait_state("second", "running", UP).await;
    assert_eq!(port_of(&again), port, "{again}");
    assert_eq!(echo_on(port, "same").await.as_deref(), Ok("same"));
}

// Other hostile servers -----------------------------------------------------------------------

#[tokio::test]
async fn a_clean_exit_stops_under_on_failure_and_restarts_under_always() {
    let mut daemon = SupDaemon::new(4);
    let tidy_exit = daemon.dir.join("tidy.exit");
    let eager_exit = daemon.dir.join("eager.exit");
    daemon.fixture_server(
        "tidy",
        "exit_zero.sh",
        &[("EXIT_WHEN", &tidy_exit.display().to_string())],
        "",
    );
    daemon.fixture_server(
        "eager",
        "exit_zero.sh",
        &[("EXIT_WHEN", &eager_exit.display().to_string())],
        "restart: {policy: always}\n",
    );
    daemon.start().await;
    daemon.wait_state("tidy", "running", UP).await;
    daemon.wait_state("eager", "running", UP).await;
    std::fs::write(&tidy_exit, "").expect("ask tidy to exit");
    std::fs::write(&eager_exit, "").expect("ask eager to exit");

    let tidy = daemon.wait_state("tidy", "stopped", UP).await;
    assert_eq!(tidy["last_exit"], "exit code 0", "{tidy}");
    assert_eq!(tidy["restarts"], 0, "{tidy}");
    let eager = daemon
        .wait_status("eager", UP, "running again", |s| {
            s["state"] == "running" && s["restarts"] == 1
        })
        .await;
    assert_eq!(eager["last_exit"], "exit code 0", "{eager}");
}

#[tokio::test]
async fn a_parent_whose_children_keep_its_port_and_pipe_is_restarted_cleanly() {
    let mut daemon = SupDaemon::new(3);
    let pids_file = daemon.dir.join("forker.pids");
    let exit = daemon.dir.join("forker.exit");
    daemon.fixture_server(
        "forker",
        "keep_port.sh",
        &[
            ("PIDS_FILE", &pids_file.display().to_string()),
            ("EXIT_WHEN", &exit.display().to_string()),
        ],
        "",
    );
    daemon.start().await;
    let first = daemon.wait_state("forker", "running", UP).await;
    let port = port_of(&first);
    let left_behind: BTreeSet<u32> = wait_for_value(UP, "the fixture's pids", || {
        std::future::ready(read_pids(&pids_file))
    })
    .await
    .into_iter()
    .collect();
    std::fs::write(&exit, "").expect("ask forker to exit");

    // Its exit is seen although its children still hold the stdout pipe, they are killed,
    // and the new process gets the same port once they let go of it.
    let again = daemon
        .wait_status("forker", UP, "running again", |s| {
            s["state"] == "running" && s["restarts"] == 1
        })
        .await;
    assert_eq!(again["last_exit"], "exit code 1", "{again}");
    assert_eq!(port_of(&again), port, "{again}");
    wait_dead(&left_behind, UP, "the first generation").await;
    assert_eq!(echo_on(port, "reborn").await.as_deref(), Ok("reborn"));
}

#[tokio::test]
async fn a_server_that_listens_but_never_answers_fails_after_its_start_timeouts() {
    let mut daemon = SupDaemon::new(2);
    daemon.fixture_server(
        "mute",
        "never_ready.sh",
        &[],
        "health: {start_timeout: 500ms, timeout: 200ms}\nrestart: {burst: 2}\nstop_timeout: 1s\n",
    );
    daemon.start().await;
    let failed = daemon.wait_state("mute", "failed", UP).await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("crash loop") && error.contains("not ready within 500ms"),
        "{failed}"
    );
    assert_eq!(failed["restarts"], 1, "{failed}");
    assert!(failed["pid"].is_null(), "{failed}");
    let port = port_of(&failed);
    assert!(!port_accepts(port), "the mute listener still holds {port}");
    wait_no_zombie_children(daemon.pid()).await;
}
