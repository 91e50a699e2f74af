//! Each server's box: its cgroup (when this host gives mcpd one), the [`Confine`] its process
//! enters before exec, what an exit means when the OOM killer was involved, live changes of
//! limits on reload, and the usage figures sampled on a grid into the `Directory`.
//!
//! The server task calls in here with one line at each point (spawn, exit, kill, update,
//! end); nothing here knows the lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::cgroup::{self, CgroupUsage, Driver};
use super::confine::{Confine, set_open_files};
use super::lifecycle::Exit;
use super::proc_usage;
use crate::config::{CgroupSetting, ServerConfig, format_bytes};
use crate::directory::{Directory, ServerEntry, ServerUsage};

/// How often usage figures are read, at least.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The pause between samples grows by this much per server, so the cost of reading stays
/// near a fixed share of a CPU on large hosts (30 s at 1000 servers): an idle daemon's CPU
/// must not grow with its server count.
pub const SAMPLE_EVERY_PER_SERVER: Duration = Duration::from_millis(30);

#[derive(Debug, Default)]
struct BoxState {
    in_cgroup: bool,
    oom_baseline: u64,
    oom_total: u64,
    memory_limit: Option<u64>,
    /// The last CPU sample: pid, CPU time, when.
    last_cpu: Option<(u32, u64, Instant)>,
}

#[derive(Debug)]
pub struct Boxes {
    driver: Option<Box<dyn Driver>>,
    /// Why there is no driver.
    missing: String,
    warned: AtomicBool,
    state: Mutex<HashMap<String, BoxState>>,
    /// The stat files of servers' processes, kept open between samples.
    kept_stats: Mutex<proc_usage::KeptStats>,
}

impl Boxes {
    /// Detects the cgroup hierarchy for `setting`; says once in the log what it found.
    pub fn new(setting: &CgroupSetting) -> Boxes {
        let (driver, missing) = match cgroup::detect(setting) {
            Ok(driver) => {
                info!(cgroups = %driver.describe(), "each server runs in its own cgroup");
                (Some(driver), String::new())
            }
            Err(why) => (None, why),
        };
        Boxes {
            driver,
            missing,
            warned: AtomicBool::new(false),
            state: Mutex::new(HashMap::new()),
            kept_stats: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BoxState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one warning about limits this host does not enforce, naming them and the servers
    /// asking for them; said at most once.
    pub fn warn_unenforced<'a>(&self, servers: impl IntoIterator<Item = &'a ServerConfig>) {
        let enforced: &[&str] = self.driver.as_ref().map_or(&[], |d| d.enforces());
        let mut keys: Vec<&str> = Vec::new();
        let mut names = Vec::new();
        for server in servers {
            let missing: Vec<&str> = server
                .limits
                .cgroup_keys()
                .into_iter()
                .filter(|key| !enforced.contains(key))
                .collect();
            if !missing.is_empty() {
                names.push(server.name.as_str());
                for key in missing {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        if keys.is_empty() || self.warned.swap(true, Ordering::SeqCst) {
            return;
        }
        let why = match &self.driver {
            None => self.missing.clone(),
            Some(driver) => format!("{} lacks their controllers", driver.describe()),
        };
        warn!(
            not_enforced = %keys.join(", "),
            servers = %names.join(", "),
            "resource limits NOT enforced: {why}; open_files (an rlimit) still applies. \
             Run mcpd under systemd with Delegate=yes, or set `cgroup:` in mcpd.yaml to a writable cgroup"
        );
    }

    /// Before a spawn: the server's cgroup made and its limits written, and what the child
    /// does to itself. An error when limits were asked for and cannot be set.
    pub fn prepare(&self, config: &ServerConfig) -> Result<Confine, String> {
        self.warn_unenforced([config]);
        let mut confine = Confine {
            cgroup_procs: Vec::new(),
            open_files: config.limits.open_files,
            run_as: config.run_as.as_ref().map(|run| (run.uid, run.gid)),
            sandbox: config.sandbox.clone(),
        };
        let name = &config.name;
        let mut states = self.lock();
        let state = states.entry(name.clone()).or_default();
        state.in_cgroup = false;
        let Some(driver) = &self.driver else {
            return Ok(confine);
        };
        match driver
            .create(name)
            .and_then(|()| driver.apply(name, &config.limits))
        {
            Ok(()) => {
                state.in_cgroup = true;
                state.oom_baseline = driver.oom_kills(name);
                state.memory_limit = config.limits.memory;
                confine.cgroup_procs = driver.procs_files(name);
            }
            Err(err) if config.limits.cgroup_keys().is_empty() => {
                warn!(server = %name, error = %err, "cannot make the server's cgroup; it runs without one");
                driver.remove(name);
            }
            Err(err) => {
                driver.remove(name);
                return Err(format!(
                    "cannot set the server's limits in its cgroup: {err}"
                ));
            }
        }
        Ok(confine)
    }

    /// A reload changed `config`: new limits written to the running server's cgroup, and
    /// `open_files` set on its process `pid`.
    pub fn update(&self, config: &ServerConfig, pid: Option<u32>) {
        self.warn_unenforced([config]);
        let name = &config.name;
        let mut states = self.lock();
        let Some(state) = states.get_mut(name) else {
            return;
        };
        if let Some(driver) = self.driver.as_ref().filter(|_| state.in_cgroup) {
            match driver.apply(name, &config.limits) {
                Ok(()) => state.memory_limit = config.limits.memory,
                Err(err) => warn!(server = %name, error = %err, "cannot apply the new limits"),
            }
        }
        if let (Some(pid), Some(files)) = (pid, config.limits.open_files)
            && let Err(err) = set_open_files(pid, files)
        {
            warn!(
                server = %name,
                error = %err,
                "cannot apply the new open_files limit to the running process (raising it needs \
                 CAP_SYS_RESOURCE); it applies at the next start"
            );
        }
    }

    /// How the last process ended, in words: `out of memory (limit 512MiB)` when the OOM
    /// killer killed it.
    pub fn exit_text(&self, name: &str, exit: Exit) -> String {
        let mut states = self.lock();
        let (Some(driver), Some(state)) = (&self.driver, states.get_mut(name)) else {
            return exit.to_string();
        };
        if !state.in_cgroup {
            return exit.to_string();
        }
        let now = driver.oom_kills(name);
        let new = now.saturating_sub(state.oom_baseline);
        state.oom_baseline = now;
        state.oom_total += new;
        let limit = state.memory_limit.map_or("none".to_owned(), format_bytes);
        match (new, exit) {
            (0, _) => exit.to_string(),
            (_, Exit::Signal(libc::SIGKILL)) => format!("out of memory (limit {limit})"),
            (kills, _) => {
                format!(
                    "{exit}, after the OOM killer killed {kills} of its processes (limit {limit})"
                )
            }
        }
    }

    /// The server's processes are being killed: every one left in its cgroup too (whatever
    /// process group it made), then the cgroup is removed (also one an earlier removal left
    /// behind because a process was slow to die).
    pub fn kill_all(&self, name: &str) {
        let mut states = self.lock();
        let (Some(driver), Some(state)) = (&self.driver, states.get_mut(name)) else {
            return;
        };
        driver.kill_all(name);
        driver.remove(name);
        state.in_cgroup = false;
    }

    /// The server is gone from the configuration.
    pub fn forget(&self, name: &str) {
        self.kill_all(name);
        self.lock().remove(name);
    }

    /// Reads every server's usage into its entry: one cgroup read per server in a cgroup,
    /// one pass over /proc for the others.
    pub fn sample(&self, entries: &BTreeMap<String, Arc<ServerEntry>>) {
        let known: HashMap<String, (bool, u64)> = self
            .lock()
            .iter()
            .map(|(name, state)| (name.clone(), (state.in_cgroup, state.oom_total)))
            .collect();
        let mut reads = Vec::new();
        for (name, entry) in entries {
            let pid = entry.status.load().pid;
            let (in_cgroup, oom_kills) = known.get(name).copied().unwrap_or((false, 0));
            let cgroup = match (&self.driver, pid, in_cgroup) {
                (Some(driver), Some(_), true) => driver.usage(name),
                _ => None,
            };
            reads.push(Read {
                name,
                entry,
                pid,
                cgroup,
                oom_kills,
            });
        }
        let wanted: Vec<u32> = reads
            .iter()
            .filter(|read| read.cgroup.is_none())
            .filter_map(|read| read.pid)
            .collect();
        let groups = {
            let mut kept = self.kept_stats.lock().unwrap_or_else(|e| e.into_inner());
            proc_usage::by_group(&wanted, &mut kept)
        };
        let now = Instant::now();
        let mut states = self.lock();
        for read in reads {
            let from_proc = read
                .pid
                .and_then(|pid| groups.get(&pid))
                .map(|group| CgroupUsage {
                    memory: group.rss_bytes,
                    memory_peak: None,
                    cpu_ns: group.cpu_ns,
                    tasks: group.tasks,
                });
            let from_cgroup = read.cgroup.is_some();
            let figures = match (read.cgroup.or(from_proc), read.pid) {
                (Some(usage), Some(pid)) => {
                    let state = states.get_mut(read.name.as_str());
                    let last = state.as_ref().and_then(|s| s.last_cpu);
                    if let Some(state) = state {
                        state.last_cpu = Some((pid, usage.cpu_ns, now));
                    }
                    ServerUsage {
                        memory_bytes: usage.memory,
                        memory_peak_bytes: usage.memory_peak,
                        cpu_seconds: usage.cpu_ns as f64 / 1e9,
                        cpu_percent: last
                            .and_then(|last| cpu_percent(last, pid, usage.cpu_ns, now)),
                        tasks: usage.tasks,
                        oom_kills: read.oom_kills,
                        from_cgroup,
                    }
                }
                _ => ServerUsage {
                    oom_kills: read.oom_kills,
                    ..ServerUsage::default()
                },
            };
            read.entry.usage.store(Arc::new(figures));
        }
    }
}

/// One server's figures read in [`Boxes::sample`].
struct Read<'a> {
    name: &'a String,
    entry: &'a Arc<ServerEntry>,
    pid: Option<u32>,
    cgroup: Option<CgroupUsage>,
    oom_kills: u64,
}

/// The share of one CPU used since the `last` sample (pid, CPU time, when), in percent; none
/// when the process changed since.
fn cpu_percent(last: (u32, u64, Instant), pid: u32, cpu_ns: u64, now: Instant) -> Option<f64> {
    let (last_pid, last_ns, at) = last;
    let wall = now.duration_since(at).as_nanos() as f64;
    (last_pid == pid && wall > 0.0 && cpu_ns >= last_ns)
        .then(|| (cpu_ns - last_ns) as f64 / wall * 100.0)
}

/// Samples usage every [`SAMPLE_EVERY`] (longer on hosts with many servers, see
/// [`SAMPLE_EVERY_PER_SERVER`]) until the supervisor is gone.
pub async fn sample_loop(boxes: Weak<Boxes>, directory: Weak<Directory>) {
    loop {
        let (Some(boxes), Some(directory)) = (boxes.upgrade(), directory.upgrade()) else {
            return;
        };
        let entries = directory.all();
        drop(directory);
        let servers = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        let _ = tokio::task::spawn_blocking(move || boxes.sample(&entries)).await;
        tokio::time::sleep(SAMPLE_EVERY.max(SAMPLE_EVERY_PER_SERVER * servers)).await;
    }
}
