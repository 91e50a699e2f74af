//! Interleaved measurement of several targets in one run: each target has its own
//! connections, and only one target's connections send requests at a time, in short slices
//! taken in turn. A machine whose speed drifts over seconds (other jobs, a host that
//! schedules this VM's CPUs) then slows every target alike, and the ratio of two targets is
//! far steadier than from runs one after the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Notify;

use crate::{Args, Caller, Measured, Session, percentile, target};

/// No target is active: workers wait, the coordinator drains.
const NONE: usize = usize::MAX;

/// What the coordinator and the workers share.
struct Turns {
    /// The index of the target whose connections may send, or `NONE`.
    active: AtomicUsize,
    /// Requests started and not yet answered, across all targets.
    in_flight: AtomicUsize,
    /// Whether answers count (false during the warm-up).
    measuring: AtomicBool,
    /// Set once, when the run is over.
    done: AtomicBool,
    /// Wakes workers when `active` or `done` changes.
    turn_changed: Notify,
    /// Wakes the coordinator when `in_flight` falls to zero.
    drained: Notify,
}

/// Counts a request in flight for as long as it lives, even when the worker fails.
struct InFlight<'a>(&'a Turns);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_one();
        }
    }
}

/// A repeated option's value for each of `targets` targets: none given, one for all, or one
/// per target in order; `-` stands for none.
fn per_target<'a>(
    values: &'a [String],
    targets: usize,
    flag: &str,
) -> anyhow::Result<Vec<Option<&'a str>>> {
    let value = |v: &'a String| (v != "-").then_some(v.as_str());
    match values.len() {
        0 => Ok(vec![None; targets]),
        1 => Ok(vec![value(&values[0]); targets]),
        n if n == targets => Ok(values.iter().map(value).collect()),
        n => bail!(
            "{n} {flag} for {targets} --url: give one for all, or one per --url (`-` for none)"
        ),
    }
}

/// One connection of target `index`, sending while it is that target's turn.
async fn worker(
    args: Arc<Args>,
    index: usize,
    token: Option<String>,
    tool: String,
    turns: Arc<Turns>,
) -> anyhow::Result<Measured> {
    let url = &args.url[index];
    let session = Session::open(&target(url)?, token, args.request_timeout).await?;
    let mut caller = Caller::new(&args, &tool, session, 50_000);
    loop {
        // Wait for this target's turn; registered before the check, so no change is missed.
        let changed = turns.turn_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if turns.done.load(Ordering::SeqCst) {
            return Ok(caller.measured);
        }
        // Counted in flight before the turn is checked: the coordinator either sees this
        // request or this worker sees that the turn has passed (both are SeqCst).
        turns.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&turns);
        if turns.active.load(Ordering::SeqCst) != index {
            drop(guard);
            changed.await;
            continue;
        }
        let measuring = turns.measuring.load(Ordering::SeqCst);
        // A request unanswered within --request-timeout fails this connection: the guard is
        // dropped with it, so the turn still ends.
        caller.call(Instant::now(), measuring).await?;
        drop(guard);
    }
}

/// CPU time used so far by the live threads of process `pid` (the scheduler's own count, in
/// nanoseconds: `/proc/PID/task/*/schedstat`), or `None` when the process is gone. A thread
/// that exits between listing and reading is skipped, not a failed reading: one short-lived
/// helper thread must not void the target's whole CPU figure.
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let total = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(total)
}

/// What each target got: its measured active time, and the CPU time of its `--cpu-pid`
/// process during its measured turns.
struct Shares {
    active: Vec<Duration>,
    cpu_ns: Vec<Option<u64>>,
}

/// Gives each target the turn in order, `slice` at a time; a turn ends when its last request
/// is answered. The CPU of a target's process is read between turns, while nothing is in
/// flight, so what it did for the other targets is not counted.
async fn coordinate(
    turns: &Turns,
    pids: &[Option<u32>],
    slice: Duration,
    duration: Duration,
) -> Shares {
    let targets = pids.len();
    let mut active_time = vec![Duration::ZERO; targets];
    let mut cpu_ns: Vec<Option<u64>> = pids.iter().map(|p| p.map(|_| 0)).collect();
    let warmup = Duration::from_secs(1);
    let mut warmed = Duration::ZERO;
    let mut round = 0usize;
    loop {
        let measuring = warmed >= warmup;
        turns.measuring.store(measuring, Ordering::SeqCst);
        if measuring && active_time.iter().all(|t| *t >= duration) {
            break;
        }
        // Every other round in reverse, so no target always follows the same one.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets).collect()
        } else {
            (0..targets).rev().collect()
        };
        for index in order {
            let cpu_before = pids[index].and_then(process_cpu_ns);
            let started = Instant::now();
            turns.active.store(index, Ordering::SeqCst);
            turns.turn_changed.notify_waiters();
            tokio::time::sleep(slice).await;
            turns.active.store(NONE, Ordering::SeqCst);
            while turns.in_flight.load(Ordering::SeqCst) != 0 {
                turns.drained.notified().await;
            }
            if measuring {
                active_time[index] += started.elapsed();
                let cpu_after = pids[index].and_then(process_cpu_ns);
                cpu_ns[index] = match (cpu_ns[index], cpu_before, cpu_after) {
                    (Some(sum), Some(before), Some(after)) => {
                        Some(sum + after.saturating_sub(before))
                    }
                    _ => None,
                };
            } else {
                warmed += started.elapsed();
            }
        }
        round += 1;
    }
    turns.done.store(true, Ordering::SeqCst);
    turns.turn_changed.notify_waiters();
    Shares {
        active: active_time,
        cpu_ns,
    }
}

/// Runs every `--url` interleaved and prints one JSON line with a result per target.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let targets = args.url.len();
    let tokens = per_target(&args.token, targets, "--token")?;
    let tools = per_target(&args.tool, targets, "--tool")?;
    let pids: Vec<Option<u32>> = per_target(&args.cpu_pid, targets, "--cpu-pid")?
        .into_iter()
        .map(|p| p.map(str::parse).transpose())
        .collect::<Result<_, _>>()
        .context("--cpu-pid takes a process id or `-`")?;
    let tokens: Vec<Option<String>> = tokens.into_iter().map(|t| t.map(str::to_owned)).collect();
    let tools: Vec<String> = tools
        .into_iter()
        .map(|t| t.unwrap_or("echo").to_owned())
        .collect();
    let args = Arc::new(args);
    let turns = Arc::new(Turns {
        active: AtomicUsize::new(NONE),
        in_flight: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        done: AtomicBool::new(false),
        turn_changed: Notify::new(),
        drained: Notify::new(),
    });
    let mut tasks = Vec::new();
    for (index, (token, tool)) in tokens.into_iter().zip(tools).enumerate() {
        for _ in 0..args.connections {
            let task = worker(
                args.clone(),
                index,
                token.clone(),
                tool.clone(),
                turns.clone(),
            );
            tasks.push((index, tokio::spawn(task)));
        }
    }
    let shares = coordinate(&turns, &pids, args.slice, args.duration).await;
    let mut latencies = vec![Vec::new(); targets];
    let mut requests_total = vec![0u64; targets];
    let mut failed = vec![0usize; targets];
    for (index, task) in tasks {
        match task.await? {
            Ok(m) => {
                latencies[index].extend(m.latencies_us);
                requests_total[index] += m.requests_total;
            }
            Err(error) => {
                failed[index] += 1;
                eprintln!("connection to {} failed: {error:#}", args.url[index]);
            }
        }
    }
    let results: Vec<serde_json::Value> = (0..targets)
        .map(|i| {
            let all = &mut latencies[i];
            all.sort_unstable();
            let seconds = shares.active[i].as_secs_f64();
            let cpu_us_per_req = shares.cpu_ns[i]
                .filter(|_| !all.is_empty())
                .map(|ns| (ns as f64 / 1000.0 / all.len() as f64 * 100.0).round() / 100.0);
            serde_json::json!({
                "url": args.url[i], "requests": all.len(), "requests_total": requests_total[i],
                "active_s": (seconds * 1000.0).round() / 1000.0,
                "rps": (all.len() as f64 / seconds).round(),
                "p50_us": percentile(all, 50.0), "p99_us": percentile(all, 99.0),
                "cpu_us_per_req": cpu_us_per_req, "failed_connections": failed[i],
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "method": args.method, "connections": args.connections,
            "slice_ms": args.slice.as_millis(), "targets": results,
        })
    );
    let errors: usize = failed.iter().sum();
    if errors > 0 {
        bail!("{errors} connections failed");
    }
    Ok(())
}
