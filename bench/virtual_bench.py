"""Virtual-server benchmarks (issue 15), run by bench/harness.py (`--only virtual`).

- tools/call through a one-member virtual server vs the member's own route, same daemon and
  same run, at 1/16/64 connections (targets: >= 0.9x req/s, <= +30 us p50);
- the same virtual server vs the `mcp-proxy` crate (an aggregating MCP proxy, installed by
  bench/run.sh into target/bench-tools) fronting the same mcp-echo process (target: >= 1.0x);
- tools/list of a virtual server over 100 members with 20 tools each (target: p50 < 5 ms).

Ports: 18240-18243 and 18400-18499, checked to be free first.
"""

import json
import os
import urllib.request

VGW_PORT = 18240  # gateway of the daemon with the member and its one-member virtual server
VECHO_PORT = 18241  # its mcp-echo (the member)
PROXY_PORT = 18242  # mcp-proxy, fronting the same mcp-echo
VLIST_GW_PORT = 18243  # gateway of the daemon with 100 members
VLIST_FIRST, VLIST_COUNT = 18400, 100
VLIST_TOOLS = 20  # tools per member: mcp-echo's 4 and 16 from MCP_ECHO_EXTRA_TOOLS
MCP_PROXY_VERSION = "0.6.0"


def ports():
    return [VGW_PORT, VECHO_PORT, PROXY_PORT, VLIST_GW_PORT] + list(
        range(VLIST_FIRST, VLIST_FIRST + VLIST_COUNT))


def mcp_proxy_bin(bench):
    """The mcp-proxy binary: $MCPD_BENCH_MCP_PROXY, else what bench/run.sh installed."""
    path = os.environ.get("MCPD_BENCH_MCP_PROXY") or os.path.join(
        bench.root, "target", "bench-tools", "bin", "mcp-proxy")
    return path if os.access(path, os.X_OK) else None


def post(url, body, session=None):
    """One JSON-RPC POST; returns (session id, the answer's JSON-RPC message or None)."""
    headers = {"content-type": "application/json",
               "accept": "application/json, text/event-stream"}
    if session:
        headers["mcp-session-id"] = session
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        session = response.headers.get("mcp-session-id") or session
    datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    datas = [d for d in datas if d]
    if datas:
        text = datas[-1]
    return session, (json.loads(text) if text.strip() else None)


def tool_names(url):
    """initialize, notifications/initialized, tools/list: the names listed at `url`."""
    session, _ = post(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"}}})
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    _, answer = post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
    return [t["name"] for t in answer["result"]["tools"]]


def run(bench, h):
    """Runs the three measurements into bench.results["virtual"]; `h` is the harness module
    (its helpers: log, port_free, wait_until, accepts, cpu_ticks, median, TICK, SERVER_CPU)."""
    log, wait_until, accepts, cpu_ticks, median = (
        h.log, h.wait_until, h.accepts, h.cpu_ticks, h.median)
    tick, server_cpu = h.TICK, h.SERVER_CPU
    busy = [p for p in ports() if not h.port_free(p)]
    if busy:
        raise SystemExit(f"ports in use, stop what holds them first: {busy[:20]}")
    # In bench.results from the start: when a later part fails, the harness still writes what
    # the earlier parts measured.
    results = bench.results["virtual"] = {}
    d = os.path.join(bench.tmp, "virtual")
    config = bench.write_daemon_config(d, VGW_PORT, f"{VECHO_PORT}-{VECHO_PORT}")
    with open(os.path.join(d, "mcp", "bench.yaml"), "w") as f:
        f.write(f"""mcp_servers:
  echo: {{binary: mcp-echo, port: {VECHO_PORT}}}
  one:
    aggregate: [echo]
    description: one member, prefixed names (echo_echo)
    # The load generator is one caller with up to 64 calls in flight; the default cap (16)
    # would refuse the rest.
    max_calls_per_caller: 128
""")
    log("virtual: mcpd with mcp-echo and a one-member virtual server; mcp-proxy in front of "
        "the same mcp-echo (servers on CPU 0, loadgen on CPU 1)")
    daemon, _ = bench.start_daemon(config, cpu=server_cpu)
    sock = os.path.join(d, "mcpd.sock")
    bench.note_command(f"taskset -c {server_cpu} mcpd --config virtual/mcpd.yaml   "
                       "# echo + `one: {aggregate: [echo], max_calls_per_caller: 128}`")

    def running(names):
        def check():
            try:
                servers = bench.status(sock)["servers"]
            except (RuntimeError, json.JSONDecodeError):
                return False
            states = {s["name"]: s["state"] for s in servers}
            return all(states.get(n) == "running" for n in names)
        return check
    wait_until("mcpd's echo and virtual server running", 30, running(["echo", "one"]))
    gw = f"http://127.0.0.1:{VGW_PORT}/api/v1/mcp"
    # (name, url, tool, process whose CPU is counted)
    targets = [("member route", f"{gw}/echo/mcp", "echo", daemon),
               ("virtual server", f"{gw}/one/mcp", "echo_echo", daemon)]
    proxy_bin = mcp_proxy_bin(bench)
    proxy = None
    if proxy_bin:
        pd = os.path.join(d, "mcp-proxy")
        os.makedirs(pd, exist_ok=True)
        proxy_conf = os.path.join(pd, "proxy.toml")
        with open(proxy_conf, "w") as f:
            f.write(f"""[proxy]
name = "bench"
separator = "_"

[proxy.listen]
host = "127.0.0.1"
port = {PROXY_PORT}

[[backends]]
name = "echo"
transport = "http"
url = "http://127.0.0.1:{VECHO_PORT}/mcp"
""")
        proxy = bench.procs.spawn([proxy_bin, "--config", proxy_conf], cpu=server_cpu,
                                  stderr=open(os.path.join(pd, "stderr.log"), "w"))
        bench.note_command(f"taskset -c {server_cpu} mcp-proxy --config proxy.toml   "
                           f"# mcp-proxy {MCP_PROXY_VERSION} (cargo install), one http backend "
                           "`echo` = the same mcp-echo, separator `_`")
        proxy_url = f"http://127.0.0.1:{PROXY_PORT}/"
        wait_until("mcp-proxy to listen", 30, lambda: accepts(PROXY_PORT))

        def proxy_lists_echo():
            try:
                return "echo_echo" in tool_names(proxy_url)
            except (OSError, ValueError, KeyError, TypeError):
                return False
        wait_until("mcp-proxy to list echo_echo", 30, proxy_lists_echo)
        targets.append(("mcp-proxy", proxy_url, "echo_echo", proxy))
    else:
        log("virtual: mcp-proxy is not installed (bench/run.sh installs it into "
            "target/bench-tools); its rows are left out")

    conns_list = [1, 16, 64]
    raw = {(t[0], c): [] for t in targets for c in conns_list}
    for run_ in range(bench.runs):
        for conns in conns_list:
            turns = [(url, None, proc.pid) for _, url, _, proc in targets]
            measured = bench.interleaved(turns, conns, tools=[t[2] for t in targets])
            for (name, *_), result in zip(targets, measured):
                raw[(name, conns)].append(result)
                log(f"run {run_ + 1}/{bench.runs} {name:14} c={conns:<3} "
                    f"{result['rps']:>7.0f} req/s p50 {result['p50_us']} us "
                    f"cpu {result['cpu_us_per_req']:.0f} us/req "
                    f"failed={result['failed_connections']}")
    # Ratios as the median of each run's ratio (the targets were measured in turns); versus
    # mcp-proxy only when it was measured.
    pairs = [("virtual server", "member route")]
    if proxy:
        pairs.append(("virtual server", "mcp-proxy"))
    results["ratios"] = {
        f"{a}/{b}/{c}": median([x["rps"] / y["rps"] for x, y in zip(raw[(a, c)], raw[(b, c)])])
        for a, b in pairs for c in conns_list}
    results["calls"] = [{
        "target": name, "connections": conns,
        "rps": median([r["rps"] for r in raw[(name, conns)]]),
        "p50_us": median([r["p50_us"] for r in raw[(name, conns)]]),
        "p99_us": median([r["p99_us"] for r in raw[(name, conns)]]),
        "cpu_us_per_req": median([r["cpu_us_per_req"] for r in raw[(name, conns)]]),
        "failed": sum(r["failed_connections"] for r in raw[(name, conns)]),
    } for conns in conns_list for name, *_ in targets]
    if proxy:
        bench.procs.stop(proxy)
    bench.procs.stop(daemon)

    log(f"virtual: tools/list of a virtual server over {VLIST_COUNT} members with "
        f"{VLIST_TOOLS} tools each")
    d = os.path.join(bench.tmp, "virtual-list")
    config = bench.write_daemon_config(
        d, VLIST_GW_PORT, f"{VLIST_FIRST}-{VLIST_FIRST + VLIST_COUNT - 1}")
    extra = ",".join(f"tool{i:02}" for i in range(VLIST_TOOLS - 4))
    lines = ["mcp_servers:"]
    for i in range(VLIST_COUNT):
        lines.append(f"  m{i:03}: {{binary: mcp-echo, env: {{MCP_ECHO_EXTRA_TOOLS: \"{extra}\"}}}}")
    lines.append("  all: {aggregate: [\"*\"]}")
    with open(os.path.join(d, "mcp", "members.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    daemon, _ = bench.start_daemon(config, cpu=server_cpu)
    sock = os.path.join(d, "mcpd.sock")
    bench.note_command(f"taskset -c {server_cpu} mcpd --config virtual-list/mcpd.yaml   "
                       f"# {VLIST_COUNT} mcp-echo with MCP_ECHO_EXTRA_TOOLS (20 tools each) "
                       "+ `all: {aggregate: [\"*\"]}`")
    wait_until(f"{VLIST_COUNT} members running", 120,
               running([f"m{i:03}" for i in range(VLIST_COUNT)] + ["all"]))
    url = f"http://127.0.0.1:{VLIST_GW_PORT}/api/v1/mcp/all/mcp"
    expected = VLIST_COUNT * VLIST_TOOLS
    listed = len(tool_names(url))
    if listed != expected:
        raise RuntimeError(f"the virtual server lists {listed} tools, not {expected}")
    lists = []
    for run_ in range(bench.runs):
        before = cpu_ticks(daemon.pid)
        result = bench.loadgen(url, 1, method="tools/list", min_tools=expected)
        ticks = cpu_ticks(daemon.pid) - before
        result["cpu_us_per_req"] = ticks / tick * 1e6 / max(result["requests_total"], 1)
        lists.append(result)
        log(f"run {run_ + 1}/{bench.runs} tools/list of {expected} tools: "
            f"{result['rps']:.0f} req/s p50 {result['p50_us']} us p99 {result['p99_us']} us")
    results["list"] = {
        "members": VLIST_COUNT, "tools": expected,
        "rps": median([r["rps"] for r in lists]),
        "p50_us": median([r["p50_us"] for r in lists]),
        "p99_us": median([r["p99_us"] for r in lists]),
        "cpu_us_per_req": median([r["cpu_us_per_req"] for r in lists]),
        "failed": sum(r["failed_connections"] for r in lists),
    }
    bench.procs.stop(daemon)


def report(w, results):
    """Writes the section of BENCH.md; returns its rows of the targets table."""
    v = results.get("virtual")
    if not v:
        return []
    w("## Virtual servers: tools/call through a one-member virtual server, and tools/list\n")
    w("Same daemon and run: `member route` is `/api/v1/mcp/echo/mcp` (tool `echo`), `virtual "
      "server` is `one: {aggregate: [echo]}` (tool `echo_echo`), `mcp-proxy` is the "
      f"`mcp-proxy` crate {MCP_PROXY_VERSION} (defaults as installed) with the same mcp-echo "
      "process as its one HTTP backend (tool `echo_echo`). The three are measured in turns "
      "within each run, like the gateway's targets; ratios are the median of the runs' "
      "ratios. CPU per request: the proxy process's (mcpd or mcp-proxy) during its "
      "target's turns divided by the requests answered in them.\n")
    w("| target | conns | req/s | p50 us | p99 us | proxy CPU us/req | failed conns |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for row in v["calls"]:
        w(f"| {row['target']} | {row['connections']} | {row['rps']:.0f} | {row['p50_us']:.0f} | "
          f"{row['p99_us']:.0f} | {row['cpu_us_per_req']:.0f} | {row['failed']} |")
    w("")
    g = {(row["target"], row["connections"]): row for row in v["calls"]}
    conns = sorted({row["connections"] for row in v["calls"]})
    has_proxy = any(t == "mcp-proxy" for t, _ in g)
    w("| conns | virtual / member req/s | virtual added p50 us | virtual / mcp-proxy req/s |")
    w("|---:|---:|---:|---:|")
    q = v["ratios"]
    for c in conns:
        vs, m = g[("virtual server", c)], g[("member route", c)]
        key = f"virtual server/mcp-proxy/{c}"
        versus_proxy = f"{q[key]:.2f}" if key in q else "-"
        w(f"| {c} | {q[f'virtual server/member route/{c}']:.3f} | "
          f"{vs['p50_us'] - m['p50_us']:.0f} | {versus_proxy} |")
    w("")
    lst = v["list"]
    w(f"tools/list of `all: {{aggregate: [\"*\"]}}` over {lst['members']} members "
      f"({lst['tools']} tools, one connection): {lst['rps']:.0f} req/s, p50 "
      f"{lst['p50_us'] / 1000:.2f} ms, p99 {lst['p99_us'] / 1000:.2f} ms, mcpd CPU "
      f"{lst['cpu_us_per_req']:.0f} us per list.\n")
    worst = min(q[f"virtual server/member route/{c}"] for c in conns)
    # Added latency at one connection, as for the gateway's own target: at 16 and 64 the
    # p50 is mostly queueing behind the other connections' requests.
    added = g[("virtual server", 1)]["p50_us"] - g[("member route", 1)]["p50_us"]
    rows = [
        ("Virtual server / member's own route tools/call throughput >= 0.9x (worst of "
         "1/16/64 conns)", f"{worst:.2f}x", worst >= 0.9),
        ("Virtual server added p50 over the member's own route, 1 conn <= 30 us",
         f"{added:.0f} us", added <= 30),
    ]
    if has_proxy:
        vs_proxy = min(q[f"virtual server/mcp-proxy/{c}"] for c in conns)
        rows.append(("Virtual server / mcp-proxy tools/call throughput >= 1.0x (worst)",
                     f"{vs_proxy:.2f}x", vs_proxy >= 1.0))
    rows.append((f"tools/list of a virtual server over {lst['members']} members x "
                 f"{lst['tools'] // lst['members']} tools, p50 < 5 ms",
                 f"{lst['p50_us'] / 1000:.2f} ms", lst["p50_us"] < 5000))
    return rows
