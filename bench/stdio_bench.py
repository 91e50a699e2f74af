"""The stdio benchmarks of bench/harness.py (`--only stdio`, and part of a full run).

- stdio gateway: tools/call through a `sessions: shared` stdio server (`mcp-echo --stdio`)
  and through the same echo over HTTP, both servers of one mcpd, in the same run, at 1/16/64
  connections. Target: stdio >= 0.8x the HTTP server's req/s at every connection count.
- stdio probes: 200 stdio servers (`mcp-echo --stdio`) at the default health settings
  (probe every 10 s): the CPU of the mcpd process over the idle window. Target < 1% of one
  CPU.

What the probe figure counts: utime+stime of the mcpd process (every thread: the probe
scheduler, the bridges writing each probe to a child's stdin and reading its answer from the
child's stdout, log capture, usage sampling), from /proc/<pid>/stat. The children's own CPU
(200 mcp-echo answering `ping` and sitting idle) is summed over their threads from
/proc/<pid>/task/*/schedstat (nanoseconds: each child's share is far below one clock tick)
and reported beside it, not counted in the target: it is the servers' cost, the same
whoever supervises them.
"""

import json
import os
import time

STDIO_GW_PORT = 18082  # the daemon with one stdio and one HTTP echo
STDIO_HTTP_ECHO_PORT = 18130  # its HTTP echo (range 18130-18139)
STDIO_PROBE_GW_PORT = 18083  # the daemon with 200 stdio servers
STDIO_PROBE_RANGE = "18140-18149"  # unused by stdio servers; port_range is required
STDIO_SERVERS, STDIO_FILES = 200, 20
CONNS = (1, 16, 64)


def ports():
    """The fixed ports these benchmarks listen on, for the harness's free-port check."""
    return [STDIO_GW_PORT, STDIO_HTTP_ECHO_PORT, STDIO_PROBE_GW_PORT]


def run(bench, h):
    """Both stdio benchmarks; `h` is the harness module (its helpers and constants)."""
    gateway(bench, h)
    probes(bench, h)


def gateway(bench, h):
    h.log("stdio: tools/call through a shared stdio echo vs the same echo over HTTP (one mcpd)")
    d = os.path.join(bench.tmp, "stdio-gw")
    config = bench.write_daemon_config(
        d, STDIO_GW_PORT, f"{STDIO_HTTP_ECHO_PORT}-{STDIO_HTTP_ECHO_PORT + 9}")
    with open(os.path.join(d, "mcp", "bench.yaml"), "w") as f:
        f.write(f"""mcp_servers:
  echo-http: {{binary: mcp-echo, port: {STDIO_HTTP_ECHO_PORT}}}
  echo-stdio: {{binary: mcp-echo, args: [--stdio], transport: stdio}}
""")
    daemon, _ = bench.start_daemon(config, cpu=h.SERVER_CPU, log_name="stdio-gw.log")
    sock = os.path.join(d, "mcpd.sock")
    bench.note_command(f"taskset -c {h.SERVER_CPU} mcpd --config stdio-gw/mcpd.yaml   "
                       "# echo-http (mcp-echo) and echo-stdio (mcp-echo --stdio, shared)")

    h.wait_until("stdio gateway servers running", 60, lambda: bench.all_running(sock))
    gw = f"http://127.0.0.1:{STDIO_GW_PORT}/api/v1/mcp"
    targets = [("http echo", "echo-http"), ("stdio echo", "echo-stdio")]
    raw = {(name, c): [] for name, _ in targets for c in CONNS}
    for run_ in range(bench.runs):
        for conns in CONNS:
            for name, server in targets:
                before_cpu = h.cpu_ticks(daemon.pid)
                before_req = bench.metrics_requests(STDIO_GW_PORT, server)
                result = bench.loadgen(f"{gw}/{server}/mcp", conns)
                requests = bench.metrics_requests(STDIO_GW_PORT, server) - before_req
                ticks = h.cpu_ticks(daemon.pid) - before_cpu
                result["cpu_us_per_req"] = ticks / h.TICK * 1e6 / max(requests, 1)
                raw[(name, conns)].append(result)
                h.log(f"run {run_ + 1}/{bench.runs} {name:10} c={conns:<3} "
                      f"{result['rps']:>7.0f} req/s p50 {result['p50_us']} us "
                      f"cpu {result['cpu_us_per_req']:.0f} us/req "
                      f"failed={result['failed_connections']}")
    table = []
    for conns in CONNS:
        for name, _ in targets:
            rs = raw[(name, conns)]
            table.append({
                "target": name, "connections": conns,
                "rps": h.median([r["rps"] for r in rs]),
                "p50_us": h.median([r["p50_us"] for r in rs]),
                "p99_us": h.median([r["p99_us"] for r in rs]),
                "cpu_us_per_req": h.median([r["cpu_us_per_req"] for r in rs]),
                "failed": sum(r["failed_connections"] for r in rs),
            })
    bench.results["stdio_gateway"] = table
    bench.procs.stop(daemon)


def probes(bench, h):
    h.log(f"stdio: {STDIO_SERVERS} stdio servers at the default probe interval, idle")
    d = os.path.join(bench.tmp, "stdio-probes")
    config = bench.write_daemon_config(d, STDIO_PROBE_GW_PORT, STDIO_PROBE_RANGE)
    per_file = STDIO_SERVERS // STDIO_FILES
    for f in range(STDIO_FILES):
        with open(os.path.join(d, "mcp", f"stdio{f:02}.yaml"), "w") as out:
            out.write("mcp_servers:\n")
            for i in range(f * per_file, (f + 1) * per_file):
                out.write(f"  s{i:03}: {{binary: mcp-echo, args: [--stdio], "
                          "transport: stdio, env: {RUST_LOG: warn}}\n")
    sock = os.path.join(d, "mcpd.sock")
    daemon, _ = bench.start_daemon(config, log_name="stdio-probes.log")
    bench.note_command(f"mcpd --config stdio-probes/mcpd.yaml   # {STDIO_SERVERS} x "
                       "mcp-echo --stdio, default health (interval 10 s)")

    def all_running():
        try:
            servers = bench.status(sock)["servers"]
        except (RuntimeError, json.JSONDecodeError, OSError):
            return False
        return len(servers) == STDIO_SERVERS and all(s["state"] == "running" for s in servers)
    h.wait_until(f"{STDIO_SERVERS} stdio servers running", 180, all_running, interval=0.2)
    pids = [s["pid"] for s in bench.status(sock)["servers"] if s.get("pid")]
    time.sleep(5)  # let start-up work (first usage samples, log files) settle

    secs = bench.idle_secs
    ticks0, children0, t0 = h.cpu_ticks(daemon.pid), on_cpu_ns(pids), time.monotonic()
    time.sleep(secs)
    elapsed = time.monotonic() - t0
    daemon_pct = (h.cpu_ticks(daemon.pid) - ticks0) / h.TICK / elapsed * 100
    children_pct = (on_cpu_ns(pids) - children0) / 1e9 / elapsed * 100
    still = sum(s["state"] == "running" for s in bench.status(sock)["servers"])
    bench.results["stdio_probes"] = {
        "servers": STDIO_SERVERS, "idle_secs": secs, "daemon_cpu_pct": daemon_pct,
        "children_cpu_pct": children_pct, "running_after": still,
        "rss_mib": h.rss_kib(daemon.pid) / 1024,
    }
    h.log(f"stdio probes: {bench.results['stdio_probes']}")
    bench.procs.stop(daemon, timeout=120)


def on_cpu_ns(pids):
    """Time on CPU of every thread of `pids`, in nanoseconds (processes gone count 0)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def report(results, w, targets, ratio):
    """The stdio sections of BENCH.md (through `w`) and their rows of the target table."""
    if "stdio_gateway" in results:
        rows = results["stdio_gateway"]
        g = {(row["target"], row["connections"]): row for row in rows}
        w("## stdio servers: tools/call, shared stdio vs HTTP (one mcpd)\n")
        w("| target | conns | req/s | p50 us | p99 us | mcpd CPU us/req | failed conns |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            w(f"| {row['target']} | {row['connections']} | {row['rps']:.0f} | "
              f"{row['p50_us']:.0f} | {row['p99_us']:.0f} | {row['cpu_us_per_req']:.0f} | "
              f"{row['failed']} |")
        w("")
        ratios = {c: ratio(g[("stdio echo", c)]["rps"], g[("http echo", c)]["rps"])
                  for c in CONNS}
        w("stdio / HTTP req/s: " + ", ".join(f"{ratios[c]:.2f}x at {c}" for c in CONNS)
          + ". Both echoes are children of the same mcpd (servers and mcpd on CPU 0); the "
          "stdio one is `mcp-echo --stdio` with `sessions: shared`, so every connection's "
          "calls go over one pipe.\n")
        worst = min(ratios.values())
        targets.append(("stdio (shared) / HTTP tools/call throughput >= 0.8x (worst of "
                        "1/16/64 conns)", f"{worst:.2f}x", worst >= 0.8))
    if "stdio_probes" in results:
        p = results["stdio_probes"]
        w(f"## stdio servers: probing {p['servers']} at the default interval\n")
        w(f"Over {p['idle_secs']} s idle: mcpd **{p['daemon_cpu_pct']:.2f}%** of one CPU "
          f"(utime+stime of the mcpd process: probe scheduling and the pipe I/O of every "
          f"probe, log capture, usage sampling); the {p['servers']} children together "
          f"{p['children_cpu_pct']:.2f}% (answering the probes; not counted in the target). "
          f"{p['running_after']}/{p['servers']} still running afterwards; mcpd RSS "
          f"{p['rss_mib']:.1f} MiB.\n")
        targets.append((f"Probing {p['servers']} stdio servers: mcpd CPU < 1%",
                        f"{p['daemon_cpu_pct']:.2f}%", p["daemon_cpu_pct"] < 1))
