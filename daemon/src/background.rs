//! Scheduling of the daemon's background writer threads (server logs, audit log).

/// Puts the calling thread under `SCHED_BATCH`: it keeps its fair share of the CPU, but its
/// wake-ups do not preempt the thread running there. A writer is woken by the first line or
/// record of a batch, often in the middle of a gateway thread's request on the same CPU;
/// preempting it then costs that request a switch and its batch of ready connections
/// (measured: bench/BENCH.md, "Background writers under SCHED_BATCH"). Best effort: on
/// failure the thread keeps the default policy.
pub fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the call's duration; pid 0 is this thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "a background writer keeps the default scheduling policy");
    }
}
