#!/usr/bin/env python3
"""mcpd CPU per tools/call, layer by layer: all off, JWT, JWT + per-tool rules, and the same
with the audit log on (plus the audit log alone); and the same call through a one-member
virtual server (`one: {aggregate: [echo]}`, tool `echo_echo`), audit off and on.

CPU time (utime+stime of the mcpd process, from /proc) per request counted by the daemon, at
one connection, with the daemons and their echo servers on CPU 0 and the load generator on
CPU 1. CPU per request survives a loaded machine far better than req/s: other jobs make a
request wait, not cost more cycles. Cases run interleaved for several rounds; medians shown.
Beside it: context switches per request (every thread of the daemon), the audit writer
thread's CPU per request, the CPU per request of the daemon's servers (mcp-echo, on the same
CPU: what it spends on the longer, identity-headed request counts too), and each daemon's
idle CPU; `--strace` adds syscalls per request
(strace attached during each case: the CPU figures are then off), `--perf DIR` a flat
`perf record -e cpu-clock` of each case's first round (`perf report -i DIR/CASE.data`).

    python3 bench/layers.py --root . [--bin-dir target/release] [--rounds 5] [--duration 3]

With --callgrind the daemons run under valgrind's callgrind and the figure is instructions
per request (Ir, counted between `callgrind_control --zero` and `--dump` around each case, less the
daemon's idle rate measured first over 10 s):
exact and independent of the machine's load, and the dumps (kept with --keep) are a profile
of each layer (`callgrind_annotate FILE`). Valgrind makes the daemon ~50x slower, so use a
longer --duration (10 s gives ~1000 requests).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SERVER_CPU, TICK, cpu_ticks, median, wait_until  # noqa: E402

OFF_GW, AUDIT_GW = 18086, 18087
OFF_ECHO, AUDIT_ECHO = 18190, 18195

IDLE_SECS = 10
RULES = '{"delete_*": [admin], "search": [tools:read, user], "*": [tools:write, user]}'


def servers(first_port, names):
    lines = ["mcp_servers:"]
    for i, (name, oauth) in enumerate(names):
        lines.append(f"  {name}:")
        lines.append("    binary: mcp-echo")
        lines.append(f"    port: {first_port + i}")
        if oauth:
            lines.append(f"    oauth: {oauth}")
    # A one-member virtual server over `echo`: the same call through it (tool `echo_echo`).
    lines.append("  one: {aggregate: [echo], max_calls_per_caller: 128}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin-dir", help="mcpd, mcpctl, mcp-echo, mcpd-loadgen (default "
                        "ROOT/target/release)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per request under valgrind instead of CPU time "
                        "(needs a valgrind that handles the pidfd_open syscall: 3.19, Debian "
                        "12's, does not, and the daemon then stops at start)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and dumps)")
    parser.add_argument("--perf", metavar="DIR",
                        help="also profile the daemon during each case of the first round "
                        "(perf record -e cpu-clock, flat) into DIR/<case>.data")
    parser.add_argument("--perf-cpu", action="store_true",
                        help="with --perf: profile everything on the servers' CPU (kernel "
                        "softirq work and mcp-echo included) instead of the daemon alone")
    parser.add_argument("--perf-args", default="",
                        help="with --perf: more `perf record` options, e.g. "
                        "'--call-graph dwarf -F 1000'")
    parser.add_argument("--audit-off", action="store_true",
                        help="the second daemon's audit log off too: its cases then measure "
                        "the spread between two daemons set up alike (`audit only` vs "
                        "`all off` is an A/A check)")
    parser.add_argument("--strace", action="store_true",
                        help="also count the daemon's syscalls per request (strace -f -c "
                        "attached during each case; slows the daemon, so CPU figures are off)")
    parser.add_argument("--cases", help="comma-separated case names to run (default: all; "
                        "`all off` is always run, as the base)")
    args = parser.parse_args()
    bench = harness.Bench(types.SimpleNamespace(root=os.path.abspath(args.root), quick=True))
    if args.bin_dir:
        bench.rel = os.path.abspath(args.bin_dir)
    bench.duration = args.duration
    try:
        run(bench, args)
    finally:
        bench.procs.kill_all()
        if args.keep:
            print(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)


def run(bench, args):
    jwt = "{required: true, scopes: [user, tools:read, tools:write]}"
    rules = f"{{required: true, scopes: [user, tools:read, tools:write], tools: {RULES}}}"
    daemons = {}
    secret = os.urandom(32).hex()  # one secret: the token is good on both daemons
    for label, gw, echo, audit, names in [
        ("off", OFF_GW, OFF_ECHO, False,
         [("echo", None), ("echo-jwt", jwt), ("echo-rules", rules)]),
        ("audit", AUDIT_GW, AUDIT_ECHO, not args.audit_off, [("echo", None), ("echo-rules", rules)]),
    ]:
        d = os.path.join(bench.tmp, label)
        extra = "auth:\n  keys:\n    - {hs256_secret_file: jwt.secret}\n"
        config = bench.write_daemon_config(d, gw, f"{echo}-{echo + 4}", extra, audit=audit)
        with open(os.path.join(d, "mcp", "bench.yaml"), "w") as f:
            f.write(servers(echo, names))
        with open(os.path.join(d, "jwt.secret"), "w") as f:
            f.write(secret)
        daemons[label] = (d, gw)
    procs = {}
    for label, (d, gw) in daemons.items():
        config = os.path.join(d, "mcpd.yaml")
        if args.callgrind:
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.%p",
                   bench.bin("mcpd"), "--config", config]
            procs[label] = bench.procs.spawn(cmd, cpu=SERVER_CPU,
                                             stderr=open(os.path.join(d, "valgrind.log"), "w"))
        else:
            procs[label], _ = bench.start_daemon(config, cpu=SERVER_CPU)
    for label, (d, gw) in daemons.items():
        sock = os.path.join(d, "mcpd.sock")

        def running(sock=sock):
            try:
                servers = bench.status(sock)["servers"]
                return len(servers) > 1 and all(s["state"] == "running" for s in servers)
            except Exception:
                return False
        wait_until(f"{label} daemon's servers running", 240 if args.callgrind else 60, running)
    token = bench.mcpctl(os.path.join(daemons["off"][0], "mcpd.sock"), "token", "--scope",
                         "user", "--ttl", "2h").strip()
    cases = [
        ("all off", "off", "echo", None, None),
        ("JWT", "off", "echo-jwt", token, None),
        ("JWT + rules", "off", "echo-rules", token, None),
        ("JWT + rules + audit", "audit", "echo-rules", token, None),
        ("audit only", "audit", "echo", None, None),
        ("virtual server", "off", "one", None, "echo_echo"),
        ("virtual server + audit", "audit", "one", None, "echo_echo"),
    ]
    if args.cases:
        wanted = {"all off", *(c.strip() for c in args.cases.split(","))}
        unknown = wanted - {c[0] for c in cases}
        if unknown:
            raise SystemExit(f"unknown cases: {sorted(unknown)}")
        cases = [c for c in cases if c[0] in wanted]
    # Under callgrind, what the daemon does by the clock (probes, usage sampling, timers) is
    # counted at its idle rate and taken off each case, so a slower case is not charged more.
    idle_rate = {}
    if args.callgrind:
        for daemon, proc in procs.items():
            subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True,
                           capture_output=True)
            started = time.monotonic()
            time.sleep(IDLE_SECS)
            subprocess.run(["callgrind_control", "--dump=idle", str(proc.pid)], check=True,
                           capture_output=True)
            idle_rate[daemon] = latest_ir(daemons[daemon][0]) / (time.monotonic() - started)
            harness.log(f"{daemon} daemon idle: {idle_rate[daemon]:.0f} Ir/s")
    if not args.callgrind:
        # What each daemon spends with no traffic (probes, timers): charged to every request
        # of a case, more per request at a lower rate.
        for daemon, proc in procs.items():
            before, started = thread_cpu_ns(proc.pid), time.monotonic()
            time.sleep(IDLE_SECS / 2)
            idle = (thread_cpu_ns(proc.pid) - before) / 1e6 / (time.monotonic() - started)
            harness.log(f"{daemon} daemon idle: {idle:.2f} ms CPU/s")
    unit = "Ir" if args.callgrind else "us"
    cpu = {c[0]: [] for c in cases}
    rps = {c[0]: [] for c in cases}
    switches = {c[0]: [] for c in cases}
    writer = {c[0]: [] for c in cases}
    echo = {c[0]: [] for c in cases}
    syscalls = {c[0]: [] for c in cases}
    for round_ in range(args.rounds):
        order = cases if round_ % 2 == 0 else list(reversed(cases))
        for name, daemon, server, tok, tool in order:
            gw = daemons[daemon][1]
            url = f"http://127.0.0.1:{gw}/api/v1/mcp/{server}/mcp"
            pid = procs[daemon].pid
            before_req = bench.metrics_requests(gw, server)
            if args.callgrind:
                subprocess.run(["callgrind_control", "--zero", str(pid)], check=True,
                               capture_output=True)
            tracer = None
            if args.strace:
                trace_out = os.path.join(bench.tmp, "strace.out")
                tracer = subprocess.Popen(["strace", "-f", "-c", "-o", trace_out, "-p",
                                           str(pid)], stderr=subprocess.DEVNULL)
                time.sleep(1)  # attached to every thread before the load starts
                before_req = bench.metrics_requests(gw, server)
            profiler = None
            if args.perf and round_ == 0:
                os.makedirs(args.perf, exist_ok=True)
                data = os.path.join(args.perf, name.replace(" ", "_").replace("+", "") + ".data")
                target = ["-C", str(SERVER_CPU)] if args.perf_cpu else ["-p", str(pid)]
                profiler = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F",
                                             "4000", *target, *args.perf_args.split(),
                                             "-o", data],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before_switches = context_switches(pid)
            before_writer = thread_cpu_ns(pid, "mcpd-audit")
            before_echo = children_cpu_ns(pid)
            before_cpu = cpu_ticks(pid)
            started = time.monotonic()
            result = bench.loadgen(url, args.connections, tok, tool=tool)
            ticks = cpu_ticks(pid) - before_cpu
            echo_ns = children_cpu_ns(pid) - before_echo
            switched = context_switches(pid) - before_switches
            if profiler:
                profiler.send_signal(2)
                profiler.wait()
            writer_ns = thread_cpu_ns(pid, "mcpd-audit") - before_writer
            if tracer:
                traced_requests = bench.metrics_requests(gw, server) - before_req
                tracer.send_signal(2)
                tracer.wait()
                syscalls[name].append(strace_total(trace_out) / max(traced_requests, 1))
            if args.callgrind:
                subprocess.run(["callgrind_control", "--dump=" + name, str(pid)],
                               check=True, capture_output=True)
                elapsed = time.monotonic() - started
                ticks = latest_ir(daemons[daemon][0]) - idle_rate[daemon] * elapsed
            requests = bench.metrics_requests(gw, server) - before_req
            per_req = (ticks if args.callgrind else ticks / TICK * 1e6) / max(requests, 1)
            cpu[name].append(per_req)
            rps[name].append(result["rps"])
            switches[name].append(switched / max(requests, 1))
            writer[name].append(writer_ns / 1000 / max(requests, 1))
            echo[name].append(echo_ns / 1000 / max(requests, 1))
            harness.log(f"round {round_ + 1}/{args.rounds} {name:20} {per_req:6.1f} {unit}/req "
                        f"{result['rps']:7.0f} req/s {switches[name][-1]:5.2f} switches/req "
                        f"echo {echo[name][-1]:5.1f} us/req")
    base = median(cpu["all off"])
    echo_base = median(echo["all off"])
    print(f"\nmcpd CPU per tools/call, {args.connections} connection(s), "
          f"{args.rounds} rounds of {args.duration:g} s, medians "
          f"({time.strftime('%Y-%m-%d %H:%M %Z')}, load {os.getloadavg()[0]:.2f}):\n")
    what = "instructions/req" if args.callgrind else "CPU us/req"
    traced = " syscalls/req |" if args.strace else ""
    print(f"| layers | {what} | over all off | req/s | context switches/req | audit writer "
          f"thread CPU us/req | mcp-echo CPU us/req (over all off) |{traced}")
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.strace else ""))
    for name, *_ in cases:
        c = median(cpu[name])
        calls = f" {median(syscalls[name]):.2f} |" if args.strace else ""
        print(f"| {name} | {c:.{0 if args.callgrind else 1}f} | {c - base:+.{0 if args.callgrind else 1}f} | "
              f"{median(rps[name]):.0f} | {median(switches[name]):.2f} | "
              f"{median(writer[name]):.2f} | {median(echo[name]):.1f} "
              f"({median(echo[name]) - echo_base:+.1f}) |{calls}")


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of `pid` so far."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def thread_cpu_ns(pid, name=None):
    """CPU time (ns, from schedstat) of the threads of `pid` (those named `name`) so far."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/comm") as f:
                if name is not None and f.read().strip() != name:
                    continue
            with open(f"{task_dir}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total


def children_cpu_ns(pid):
    """CPU time (ns, from schedstat) so far of the processes `pid` started (its servers: the
    idle ones add next to nothing)."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/children") as f:
                children = f.read().split()
        except FileNotFoundError:
            continue
        for child in children:
            try:
                total += thread_cpu_ns(int(child))
            except FileNotFoundError:
                pass
    return total


def strace_total(path):
    """The call count of `strace -c`'s total line."""
    with open(path) as f:
        for line in f:
            if line.split()[-1:] == ["total"]:
                return int(line.split()[3])
    raise RuntimeError(f"no total in {path}")


def latest_ir(directory):
    """Ir of the newest callgrind dump in `directory` (its `summary:`/`totals:` line)."""
    dumps = [os.path.join(directory, f) for f in os.listdir(directory)
             if f.startswith("callgrind.")]
    newest = max(dumps, key=os.path.getmtime)
    with open(newest) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {newest}")


if __name__ == "__main__":
    sys.exit(main())
