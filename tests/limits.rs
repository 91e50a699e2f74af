//! Each server in its own box, end to end: the real `mcpd` puts real servers in cgroups of a
//! test's own (`cgroup:` in mcpd.yaml, removed when the test ends), and the tests read the
//! cgroup files, `/proc` and `mcpctl --json`. Tests that need a writable cgroup hierarchy
//! print why they are skipped where there is none; the others run everywhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcpd::mcp_client::McpClient;
use mcpd_tests::sup_support::{SupDaemon, is_dead, read_pids, vm_rss_kib};
use mcpd_tests::{TestDir, lazy, mcp_url, pid_of, port_of, wait_for, wait_for_value};
use serde_json::{Value, json};

const UP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The test's cgroups

/// The cgroups of one test: a base of its own in each hierarchy (under the test process's own
/// cgroup for v1; from the root for v2, where a populated cgroup cannot hand controllers
/// down). Dropping it kills what is left inside and removes the directories.
struct TestCgroups {
    /// What `cgroup:` says in mcpd.yaml.
    setting: String,
    /// Base directory per controller ("" for v2).
    bases: Vec<(String, PathBuf)>,
}

impl TestCgroups {
    /// The test's cgroups, or why this host has none a test can write.
    fn new(tag: &str) -> Result<TestCgroups, String> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let name = format!("mcpd-test-{tag}-{}", std::process::id());
        let own_of = |controller: &str| -> String {
            own.lines()
                .find_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let hit = if controller.is_empty() {
                        list.is_empty()
                    } else {
                        list.split(',').any(|c| c == controller)
                    };
                    hit.then(|| path.trim_start_matches('/').to_owned())
                })
                .unwrap_or_default()
        };
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in mounts.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            match (right.next(), right.nth(1)) {
                (Some("cgroup2"), _) => unified = Some(PathBuf::from(point)),
                (Some("cgroup"), Some(options)) => {
                    for controller in options.split(',') {
                        if matches!(controller, "memory" | "pids" | "cpu" | "cpuacct") {
                            v1.push((controller.to_owned(), PathBuf::from(point)));
                        }
                    }
                }
                _ => {}
            }
        }
        let v2_root = unified.filter(|root| {
            std::fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|list| list.split_whitespace().any(|c| c == "memory"))
        });
        let (setting, bases) = match v2_root {
            Some(root) => (format!("/{name}"), vec![(String::new(), root.join(&name))]),
            None if v1.iter().any(|(c, _)| c == "memory") => {
                let bases = v1
                    .iter()
                    .map(|(c, root)| (c.clone(), root.join(own_of(c)).join(&name)))
                    .collect();
                (name.clone(), bases)
            }
            None => return Err("no cgroup hierarchy with a memory controller is mounted".into()),
        };
        let cgroups = TestCgroups { setting, bases };
        for (_, base) in &cgroups.bases {
            std::fs::create_dir_all(base)
                .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        }
        Ok(cgroups)
    }

    /// The test's cgroups, or `None` after printing why the test is skipped.
    fn or_skip(tag: &str) -> Option<TestCgroups> {
        match TestCgroups::new(tag) {
            Ok(cgroups) => Some(cgroups),
            Err(why) => {
                eprintln!("skipped: no writable cgroup hierarchy here ({why})");
                None
            }
        }
    }

    fn is_v2(&self) -> bool {
        self.bases.iter().any(|(c, _)| c.is_empty())
    }

    /// The directory of `server` in the hierarchy of `controller`.
    fn dir(&self, controller: &str, server: &str) -> PathBuf {
        let base = self
            .bases
            .iter()
            .find(|(c, _)| c.is_empty() || c == controller)
            .map(|(_, base)| base.clone())
            .unwrap_or_else(|| panic!("no {controller} hierarchy"));
        base.join(server)
    }

    /// A control file of `server`, by its v1 and v2 names.
    fn read(&self, controller: &str, server: &str, v1: &str, v2: &str) -> Option<String> {
        let file = if self.is_v2() { v2 } else { v1 };
        std::fs::read_to_string(self.dir(controller, server).join(file))
            .ok()
            .map(|text| text.trim().to_owned())
    }

    fn memory_limit(&self, server: &str) -> Option<String> {
        self.read("memory", server, "memory.limit_in_bytes", "memory.max")
    }

    fn tasks_limit(&self, server: &str) -> Option<String> {
        self.read("pids", server, "pids.max", "pids.max")
    }

    fn tasks_now(&self, server: &str) -> Option<u64> {
        self.read("pids", server, "pids.current", "pids.current")?
            .parse()
            .ok()
    }

    /// CPU time of `server`'s cgroup in nanoseconds.
    fn cpu_ns(&self, server: &str) -> Option<u64> {
        if self.is_v2() {
            let stat = self.read("cpu", server, "", "cpu.stat")?;
            let usec: u64 = stat
                .lines()
                .find_map(|line| line.strip_prefix("usage_usec "))?
                .parse()
                .ok()?;
            Some(usec * 1000)
        } else {
            self.read("cpuacct", server, "cpuacct.usage", "")?
                .parse()
                .ok()
        }
    }

    /// Appends `cgroup:` to the daemon's mcpd.yaml.
    fn configure(&self, daemon: &SupDaemon) {
        append(&daemon.config, &format!("cgroup: {}\n", self.setting));
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for (_, base) in &self.bases {
            let Ok(entries) = std::fs::read_dir(base) else {
                continue;
            };
            for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                kill_all_in(&dir.join("cgroup.procs"));
                let _ = std::fs::remove_dir(&dir);
            }
            let _ = std::fs::remove_dir(base);
        }
    }
}

/// SIGKILLs what a cgroup holds until it is empty (bounded).
fn kill_all_in(procs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let pids = std::fs::read_to_string(procs).unwrap_or_default();
        let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::yield_now();
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .expect("open mcpd.yaml");
    file.write_all(text.as_bytes())
        .expect("append to mcpd.yaml");
}

/// A line of `/proc/<pid>/limits` or `/proc/<pid>/status` starting with `prefix`.
fn proc_line(pid: u32, file: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|line| line.starts_with(prefix))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
}

async fn echo_on(port: u16, text: &str) -> Result<String, String> {
    let Value::Object(arguments) = json!({ "text": text }) else {
        unreachable!()
    };
    let result = McpClient::new()
        .call_tool(&mcp_url(port), "echo", arguments, Duration::from_secs(5))
        .await
        .map_err(|error| error.to_string())?;
    result["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no text in {result}"))
}

// ---------------------------------------------------------------------------------------------
// Limits the kernel enforces

#[tokio::test]
async fn a_server_past_its_memory_limit_is_killed_reported_as_out_of_memory_and_restarted() {
    let Some(cgroups) = TestCgroups::or_skip("oom") else {
        return;
    };
    let mut daemon = SupDaemon::new(4);
    cgroups.configure(&daemon);
    daemon.fixture_server("grow", "grow_memory.sh", &[], "limits: {memory: 32MiB}\n");
    daemon.start().await;
    let status = daemon
        .wait_status("grow", UP, "out of memory, restarted", |s| {
            s["last_exit"] == "out of memory (limit 32MiB)" && s["restarts"].as_u64() >= Some(2)
        })
        .await;
    assert_ne!(status["state"], "failed", "{status}");
    let (code, logs) = daemon.ctl(&["logs", "grow", "-n", "50"]).await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("process ended: out of memory (limit 32MiB)"),
        "no note of the OOM kill in {logs}"
    );
    // Between a kill and the next start the server's cgroup is removed and made again.
    wait_for(UP, "grow's cgroup limited to 32 MiB", || {
        std::future::ready(cgroups.memory_limit("grow").as_deref() == Some("33554432"))
    })
    .await;
    let metrics = format!("http://127.0.0.1:{}/metrics", daemon.ports.port(0));
    let oom_kills = wait_for_value(UP, "mcpd_server_oom_kills_total of grow >= 1", || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("mcpd_server_oom_kills_total{server=\"grow\"} "))?
            .parse()
            .ok()?;
        (count >= 1).then_some(count)
    })
    .await;
    assert!(oom_kills >= 1);
}

#[tokio::test]
async fn a_fork_bomb_stops_at_its_tasks_limit_and_the_other_servers_keep_answering() {
    let Some(cgroups) = TestCgroups::or_skip("bomb") else {
        return;
    };
    let mut daemon = SupDaemon::new(4);
    cgroups.configure(&daemon);
    daemon.fixture_server("bomb", "fork_bomb.sh", &[], "limits: {tasks: 24}\n");
    daemon.echo("calm", "");
    daemon.start().await;
    // The limit is what stops it: the kernel refused a fork, and it never went past 24 (a
    // task that just failed to fork may exit, so the count can be below 24 at any moment).
    let refused = wait_for_value(UP, "a fork of bomb refused at its 24 tasks", || {
        let events = cgroups
            .read("pids", "bomb", "pids.events", "pids.events")
            .unwrap_or_default();
        std::future::ready(
            (events.starts_with("max ") && !events.starts_with("max 0")).then_some(events),
        )
    })
    .await;
    assert!(
        cgroups.tasks_now("bomb") <= Some(24),
        "{refused}: {:?}",
        cgroups.tasks_now("bomb")
    );
    let calm = daemon.wait_state("calm", "running", UP).await;
    for round in 0..5 {
        let text = format!("still here {round}");
        assert_eq!(echo_on(port_of(&calm), &text).await, Ok(text));
        assert!(cgroups.tasks_now("bomb") <= Some(24));
    }
    // Stopping the bomb kills every task of its cgroup and removes it.
    let (code, out) = daemon.ctl(&["stop", "bomb"]).await;
    assert_eq!(code, Some(0), "{out}");
    wait_for(UP, "the bomb's cgroup removed", || {
        std::future::ready(!cgroups.dir("pids", "bomb").exists())
    })
    .await;
}

#[tokio::test]
async fn a_cpu_limit_holds_a_busy_server_near_its_share() {
    let Some(cgroups) = TestCgroups::or_skip("cpu") else {
        return;
    };
    let mut daemon = SupDaemon::new(4);
    cgroups.configure(&daemon);
    daemon.fixture_server("busy", "busy.sh", &[], "limits: {cpu: 0.2}\n");
    daemon.start().await;
    daemon.wait_state("busy", "running", UP).await;
    let (start_ns, start) = (cgroups.cpu_ns("busy").expect("cpu usage"), Instant::now());
    // Until the server has used 0.6 s of CPU: about 3 s at 20% of a CPU.
    let used = wait_for_value(UP, "0.6 s of CPU used by busy", || {
        let now = cgroups.cpu_ns("busy").unwrap_or(0);
        std::future::ready((now >= start_ns + 600_000_000).then_some(now - start_ns))
    })
    .await;
    let share = used as f64 / start.elapsed().as_nanos() as f64;
    // Loose: a loaded machine may give it less; the limit must keep it from much more.
    assert!(
        (0.02..=0.3).contains(&share),
        "busy used {share:.2} of a CPU under cpu: 0.2"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits applied by mcpd itself: everywhere

#[tokio::test]
async fn open_files_is_what_the_child_sees_and_no_new_privs_is_always_set() {
    let mut daemon = SupDaemon::new(4);
    append(&daemon.config, "cgroup: off\n");
    daemon.echo("files", "limits: {open_files: 300}\n");
    daemon.echo("plain", "");
    daemon.start().await;
    let files = pid_of(&daemon.wait_state("files", "running", UP).await);
    assert_eq!(
        proc_line(files, "limits", "Max open files").as_deref(),
        Some("Max open files 300 300 files")
    );
    let plain = pid_of(&daemon.wait_state("plain", "running", UP).await);
    for pid in [files, plain] {
        assert_eq!(
            proc_line(pid, "status", "NoNewPrivs").as_deref(),
            Some("NoNewPrivs: 1")
        );
    }
    let show = daemon.ctl_json(&["show", "files"]).await;
    assert_eq!(show["limits"]["open_files"], 300, "{show}");
}

#[tokio::test]
async fn limits_changed_by_a_reload_apply_to_the_running_process() {
    let cgroups = TestCgroups::or_skip("reload");
    let mut daemon = SupDaemon::new(4);
    match &cgroups {
        Some(cgroups) => cgroups.configure(&daemon),
        None => append(&daemon.config, "cgroup: off\n"),
    }
    daemon.echo(
        "live",
        "limits: {memory: 64MiB, tasks: 50, open_files: 300}\n",
    );
    daemon.start().await;
    let pid = pid_of(&daemon.wait_state("live", "running", UP).await);
    if let Some(cgroups) = &cgroups {
        assert_eq!(cgroups.memory_limit("live").as_deref(), Some("67108864"));
        assert_eq!(cgroups.tasks_limit("live").as_deref(), Some("50"));
    }
    daemon.echo(
        "live",
        "limits: {memory: 128MiB, tasks: 60, cpu: 0.5, open_files: 200}\n",
    );
    let (code, out) = daemon.ctl(&["reload"]).await;
    assert_eq!(code, Some(0), "{out}");
    // open_files is lowered: raising a running process's hard limit needs CAP_SYS_RESOURCE.
    wait_for(
        UP,
        lazy(|| {
            format!(
                "open files 200: {:?}",
                proc_line(pid, "limits", "Max open files")
            )
        }),
        || {
            std::future::ready(
                proc_line(pid, "limits", "Max open files").as_deref()
                    == Some("Max open files 200 200 files"),
            )
        },
    )
    .await;
    if let Some(cgroups) = &cgroups {
        assert_eq!(cgroups.memory_limit("live").as_deref(), Some("134217728"));
        assert_eq!(cgroups.tasks_limit("live").as_deref(), Some("60"));
        let quota = cgroups.read("cpu", "live", "cpu.cfs_quota_us", "cpu.max");
        assert!(
            matches!(quota.as_deref(), Some("50000" | "50000 100000")),
            "{quota:?}"
        );
    }
    let status = daemon.status("live").await;
    assert_eq!(pid_of(&status), pid, "the process was not restarted");
    assert_eq!(status["restarts"], 0);
}

#[tokio::test]
async fn stopping_a_server_kills_what_escaped_its_process_group() {
    let Some(cgroups) = TestCgroups::or_skip("escape") else {
        return;
    };
    let mut daemon = SupDaemon::new(4);
    cgroups.configure(&daemon);
    let pid_file = daemon.dir.join("escaped.pid");
    daemon.fixture_server(
        "escape",
        "escape_session.sh",
        &[("PID_FILE", &pid_file.display().to_string())],
        "",
    );
    daemon.start().await;
    daemon.wait_state("escape", "running", UP).await;
    let escaped = wait_for_value(UP, "the escaped pid", || {
        std::future::ready(read_pids(&pid_file))
    })
    .await[0];
    daemon.remember([escaped]);
    assert!(!is_dead(escaped));
    let (code, out) = daemon.ctl(&["stop", "escape"]).await;
    assert_eq!(code, Some(0), "{out}");
    wait_for(UP, "the escaped process killed by its cgroup", || {
        std::future::ready(is_dead(escaped))
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Usage figures

/// Memory of the server `hold` (a shell holding 48 MiB, plus mcp-echo) as mcpctl shows it.
async fn held_memory_is_reported(daemon: &SupDaemon, from_cgroup: bool) {
    let status = daemon
        .wait_status("hold", UP, "usage with 48 MiB held", |s| {
            s["usage"]["memory_bytes"].as_u64() >= Some(40 << 20)
                && s["usage"]["cpu_percent_hundredths"].is_u64()
        })
        .await;
    let usage = &status["usage"];
    assert_eq!(usage["from_cgroup"], from_cgroup, "{usage}");
    let memory = usage["memory_bytes"].as_u64().unwrap();
    assert!(memory <= 256 << 20, "{memory} bytes for 48 MiB held");
    let pid = pid_of(&status);
    let rss = vm_rss_kib(pid).expect("VmRSS of the shell") << 10;
    assert!(
        memory >= rss,
        "usage {memory} below the main process's own {rss}"
    );
    // The shell and mcp-echo with its threads.
    assert!(usage["tasks"].as_u64() >= Some(2), "{usage}");
    assert!(usage["cpu_time_ms"].is_u64(), "{usage}");
    let (code, table) = {
        let mut command = std::process::Command::new(mcpd_tests::bin("mcpctl"));
        let output = command
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("status")
            .output()
            .expect("run mcpctl");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("CPU%") && header.contains("MEM"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("hold "))
        .unwrap_or_default();
    assert!(row.contains('M'), "no memory figure in {row:?}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", daemon.ports.port(0)))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    let series = |name: &str| -> Option<f64> {
        let prefix = format!("{name}{{server=\"hold\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
    };
    let bytes = series("mcpd_server_memory_bytes").expect("mcpd_server_memory_bytes of hold");
    assert!(bytes >= f64::from(40u32 << 20), "{bytes} bytes in /metrics");
    assert!(series("mcpd_server_tasks") >= Some(2.0), "{metrics}");
    assert!(
        series("mcpd_server_cpu_seconds_total").is_some(),
        "{metrics}"
    );
    assert_eq!(
        series("mcpd_server_oom_kills_total"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn usage_of_a_server_of_known_size_from_proc() {
    let mut daemon = SupDaemon::new(4);
    append(&daemon.config, "cgroup: off\n");
    daemon.fixture_server("hold", "hold_memory.sh", &[("HOLD_MB", "48")], "");
    daemon.start().await;
    held_memory_is_reported(&daemon, false).await;
}

#[tokio::test]
async fn usage_of_a_server_of_known_size_from_its_cgroup() {
    let Some(cgroups) = TestCgroups::or_skip("usage") else {
        return;
    };
    let mut daemon = SupDaemon::new(4);
    cgroups.configure(&daemon);
    daemon.fixture_server("hold", "hold_memory.sh", &[("HOLD_MB", "48")], "");
    daemon.start().await;
    held_memory_is_reported(&daemon, true).await;
    let show = daemon.ctl_json(&["show", "hold"]).await;
    assert!(
        show["status"]["usage"]["memory_peak_bytes"].as_u64() >= Some(40 << 20),
        "{show}"
    );
}

// ---------------------------------------------------------------------------------------------
// Its own user

#[tokio::test]
async fn a_user_server_runs_as_that_user_and_its_files_are_that_users() {
    let may_switch = nix::unistd::geteuid().is_root();
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        eprintln!("skipped: this host has no user nobody");
        return;
    };
    if !may_switch {
        eprintln!("skipped: the tests do not run as root, so mcpd may not switch users");
        return;
    }
    let mut daemon = SupDaemon::new(4);
    append(&daemon.config, "cgroup: off\n");
    // A directory everyone may write, for the file the server creates.
    let out = TestDir::new();
    let shared = out.join("shared");
    std::fs::create_dir(&shared).expect("create the shared dir");
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let file = shared.join("made-by-server");
    daemon.fixture_server(
        "own",
        "touch_then_echo.sh",
        &[("OUT_FILE", &file.display().to_string())],
        "user: nobody\n",
    );
    daemon.start().await;
    let status = daemon.wait_state("own", "running", UP).await;
    let pid = pid_of(&status);
    let uid = nobody.uid.as_raw();
    let gid = nobody.gid.as_raw();
    assert_eq!(
        proc_line(pid, "status", "Uid:"),
        Some(format!("Uid: {uid} {uid} {uid} {uid}"))
    );
    assert_eq!(
        proc_line(pid, "status", "Gid:"),
        Some(format!("Gid: {gid} {gid} {gid} {gid}"))
    );
    assert_eq!(
        proc_line(pid, "status", "Groups:"),
        Some(format!("Groups: {gid}"))
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the server's environment");
    let home = format!("HOME={}", nobody.dir.display());
    for wanted in [home.as_str(), "USER=nobody", "LOGNAME=nobody"] {
        assert!(
            environ
                .split(|b| *b == 0)
                .any(|var| var == wanted.as_bytes()),
            "no {wanted} in the server's environment"
        );
    }
    let meta = std::fs::metadata(&file).expect("the server made its file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(
        echo_on(port_of(&status), "as nobody").await,
        Ok("as nobody".into())
    );
    let show = daemon.ctl_json(&["show", "own"]).await;
    assert_eq!(show["limits"]["user"], "nobody", "{show}");
}

#[tokio::test]
async fn a_user_that_does_not_exist_is_refused_at_load_and_the_daemon_keeps_running() {
    let mut daemon = SupDaemon::new(4);
    append(&daemon.config, "cgroup: off\n");
    daemon.echo("good", "");
    daemon.start().await;
    let good = daemon.wait_state("good", "running", UP).await;
    daemon.echo("ghost", "user: no-such-user-mcpd-test\n");
    let (code, out) = daemon.ctl(&["reload"]).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("user \\\"no-such-user-mcpd-test\\\" of server \\\"ghost\\\" does not exist"),
        "{out}"
    );
    assert!(out.contains("\"line\":4"), "{out}");
    assert_eq!(echo_on(port_of(&good), "still").await, Ok("still".into()));
    assert_eq!(daemon.status("good").await["pid"], good["pid"]);
}

#[tokio::test]
async fn a_sandbox_gives_a_private_tmp_and_read_only_paths_and_the_host_sees_neither() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the tests do not run as root, so mcpd may not make mount namespaces");
        return;
    }
    // Outside /tmp, which the sandbox replaces.
    let outside = TestDir::new_in(env!("CARGO_TARGET_TMPDIR"));
    let read_only = outside.join("read-only");
    std::fs::create_dir_all(&read_only).expect("read-only dir");
    std::fs::write(read_only.join("readable"), "yes").expect("readable file");
    let host_file = tempfile::NamedTempFile::new_in("/tmp").expect("a file in the host's /tmp");
    let mut daemon = SupDaemon::new(4);
    daemon.fixture_server(
        "boxed",
        "sandbox_report.sh",
        &[
            ("HOST_FILE", &host_file.path().display().to_string()),
            ("READ_ONLY_DIR", &read_only.display().to_string()),
        ],
        &format!(
            "sandbox: {{private_tmp: true, read_only_paths: [{}]}}\n",
            read_only.display()
        ),
    );
    daemon.start().await;
    let status = daemon.wait_state("boxed", "running", UP).await;
    let logs = wait_for_value(UP, "the sandbox report in boxed's log", || async {
        let (_, out) = daemon.ctl(&["logs", "boxed", "-n", "50"]).await;
        out.contains("read-only dir").then_some(out)
    })
    .await;
    for line in [
        "sandbox: tmp writable",
        "sandbox: host tmp hidden",
        "sandbox: read-only dir readable",
        "sandbox: read-only dir refused",
    ] {
        assert!(logs.contains(line), "no {line:?} in: {logs}");
    }
    assert!(!read_only.join("written").exists());
    // What the server wrote in its /tmp is not in the host's.
    let pid = pid_of(&status);
    assert!(!Path::new(&format!("/tmp/sandbox-probe-{pid}")).exists());
    // Its mounts are its own: the host's mount table has no tmpfs over /tmp from it.
    let own = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("its mounts");
    assert!(own.contains(" /tmp "), "{own}");
    assert_eq!(echo_on(port_of(&status), "boxed").await, Ok("boxed".into()));
}
