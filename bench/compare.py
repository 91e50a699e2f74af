"""`bench/run.sh --compare REV`: the gateway cases for two builds, alternately, in one run.

run.sh builds REV's mcpd and mcpctl into target/compare-<rev>/ and calls the harness with
--compare-bin; this module starts both builds' daemons side by side (each with its own
ports, all on the servers' CPU, the same mcp-echo and load generator for both) and runs
every case on one build then the other, swapping which goes first each round, so a noisy
machine slows both alike. Reported: each build's median req/s, p50 and mcpd CPU per
request, the ratios this build / REV, and each build's JWT + rules + audit / all off.
"""

import json
import os
import subprocess
import time

from harness import SERVER_CPU, log, median, port_free, ratio, wait_until

# (gateway, all-off gateway, first echo port, first all-off echo port) per build.
PORTS = {"rev": (18082, 18083, 18170, 18175), "this": (18084, 18085, 18180, 18185)}
CONNS = (1, 16, 64)
CASES = ("mcpd", "mcpd all off", "mcpd+authz")
RULES = '{"delete_*": [admin], "search": [tools:read, user], "*": [tools:write, user]}'
AUTHZ_TARGET = 0.95


class Build:
    """One build's two daemons: `gw` (audit on; echo, and echo-authz with JWT + per-tool
    rules) and `bare` (audit off, no oauth)."""

    def __init__(self, bench, key, bin_dir, secret):
        self.bench, self.key, self.bin_dir = bench, key, bin_dir
        gw, bare, echo, bare_echo = PORTS[key]
        self.ports = {"gw": gw, "bare": bare}
        root = os.path.join(bench.tmp, f"compare-{key}")
        self.dirs = {"gw": os.path.join(root, "gw"), "bare": os.path.join(root, "bare")}
        extra = "auth:\n  keys:\n    - {hs256_secret_file: jwt.secret}\n"
        bench.write_daemon_config(self.dirs["gw"], gw, f"{echo}-{echo + 4}", extra)
        with open(os.path.join(self.dirs["gw"], "mcp", "bench.yaml"), "w") as f:
            f.write(f"""mcp_servers:
  echo: {{binary: mcp-echo, port: {echo}}}
  echo-authz:
    binary: mcp-echo
    port: {echo + 1}
    oauth:
      required: true
      scopes: [user, tools:read, tools:write]
      tools: {RULES}
""")
        with open(os.path.join(self.dirs["gw"], "jwt.secret"), "w") as f:
            f.write(secret)
        bench.write_daemon_config(self.dirs["bare"], bare, f"{bare_echo}-{bare_echo + 4}",
                                  audit=False)
        with open(os.path.join(self.dirs["bare"], "mcp", "bench.yaml"), "w") as f:
            f.write(f"mcp_servers:\n  echo: {{binary: mcp-echo, port: {bare_echo}}}\n")
        self.procs = {}

    def mcpctl(self, which, *args):
        sock = os.path.join(self.dirs[which], "mcpd.sock")
        out = subprocess.run([os.path.join(self.bin_dir, "mcpctl"), "--socket", sock, *args],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"mcpctl {' '.join(args)} ({self.key}) failed: {out.stderr}")
        return out.stdout

    def start(self):
        for which, d in self.dirs.items():
            log_file = open(os.path.join(d, "mcpd.log"), "w")
            self.procs[which] = self.bench.procs.spawn(
                [os.path.join(self.bin_dir, "mcpd"), "--config", os.path.join(d, "mcpd.yaml")],
                cpu=SERVER_CPU, stdout=log_file, stderr=log_file)
        for which in self.dirs:
            def running(which=which):
                if self.procs[which].poll() is not None:
                    raise RuntimeError(f"{self.key} build's {which} daemon exited; see "
                                       f"{self.dirs[which]}/mcpd.log")
                try:
                    status = json.loads(self.mcpctl(which, "--json", "status"))
                    return all(s["state"] == "running" for s in status["servers"])
                except (RuntimeError, ValueError):
                    return False
            wait_until(f"{self.key} build's {which} daemon running", 60, running)
        self.token = self.mcpctl("gw", "token", "--scope", "user", "--ttl", "2h").strip()

    def target(self, case):
        """(url, token, server counted in /metrics, daemon)"""
        if case == "mcpd all off":
            return (f"http://127.0.0.1:{self.ports['bare']}/api/v1/mcp/echo/mcp", None, "echo",
                    "bare")
        if case == "mcpd+authz":
            return (f"http://127.0.0.1:{self.ports['gw']}/api/v1/mcp/echo-authz/mcp",
                    self.token, "echo-authz", "gw")
        return (f"http://127.0.0.1:{self.ports['gw']}/api/v1/mcp/echo/mcp", None, "echo", "gw")

    def turn(self, case):
        """(url, token, pid) of a case, for `Bench.interleaved`."""
        url, token, _server, which = self.target(case)
        return url, token, self.procs[which].pid


def run(bench, rev_bin, rev_label, rounds):
    """Runs the comparison; returns the report (markdown)."""
    bench.rel = os.path.abspath(bench.rel)  # the daemons' bin_dirs
    ports = [p for gw, bare, echo, bare_echo in PORTS.values()
             for p in [gw, bare, *range(echo, echo + 5), *range(bare_echo, bare_echo + 5)]]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise SystemExit(f"ports in use, stop what holds them first: {busy}")
    secret = os.urandom(32).hex()
    builds = {"rev": Build(bench, "rev", rev_bin, secret),
              "this": Build(bench, "this", bench.rel, secret)}
    for build in builds.values():
        build.start()
    raw = {(k, case, c): [] for k in builds for case in CASES for c in CONNS}
    started = time.monotonic()
    turns = [(key, case) for case in CASES for key in builds]
    for round_ in range(rounds):
        for conns in CONNS:
            results = bench.interleaved([builds[key].turn(case) for key, case in turns], conns)
            for (key, case), result in zip(turns, results):
                raw[(key, case, conns)].append(result)
                log(f"compare round {round_ + 1}/{rounds} {key:4} {case:12} c={conns:<3} "
                    f"{result['rps']:>7.0f} req/s p50 {result['p50_us']} us "
                    f"{result['cpu_us_per_req']:.1f} us CPU/req")
    for build in builds.values():
        for proc in build.procs.values():
            bench.procs.stop(proc)

    def med(key, case, conns, field):
        return median([r[field] for r in raw[(key, case, conns)]])

    def paired(a, b, field="rps"):
        """The median over rounds of each round's ratio a / b (measured in turns)."""
        return median([ratio(x[field], y[field]) for x, y in zip(raw[a], raw[b])])

    load = os.getloadavg()
    out = [f"# Gateway comparison: this tree vs {rev_label}\n",
           f"{rounds} rounds; in each, every case of both builds for {bench.duration} s, "
           "in turns of 0.25 s (`Bench.interleaved`); medians, and ratios as the median of "
           f"each round's ratio. {time.strftime('%Y-%m-%d %H:%M %Z')}, "
           f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; took "
           f"{(time.monotonic() - started) / 60:.1f} min.\n",
           "| case | conns | req/s rev | req/s this | this / rev | p50 us rev | p50 us this | "
           "CPU us/req rev | CPU us/req this | CPU this / rev |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for conns in CONNS:
        for case in CASES:
            r = {k: {f: med(k, case, conns, f) for f in ("rps", "p50_us", "cpu_us_per_req")}
                 for k in builds}
            out.append(f"| {case} | {conns} | {r['rev']['rps']:.0f} | {r['this']['rps']:.0f} | "
                       f"{paired(('this', case, conns), ('rev', case, conns)):.3f} | "
                       f"{r['rev']['p50_us']:.0f} | {r['this']['p50_us']:.0f} | "
                       f"{r['rev']['cpu_us_per_req']:.1f} | {r['this']['cpu_us_per_req']:.1f} | "
                       f"{paired(('this', case, conns), ('rev', case, conns), 'cpu_us_per_req'):.3f} |")
    out += ["", f"JWT + per-tool rules + audit on / all off, req/s (target >= {AUTHZ_TARGET}):\n",
            "| conns | rev | met | this | met |", "|---:|---:|:---:|---:|:---:|"]
    for conns in CONNS:
        cells = []
        for key in ("rev", "this"):
            value = paired((key, "mcpd+authz", conns), (key, "mcpd all off", conns))
            cells += [f"{value:.3f}", "yes" if value >= AUTHZ_TARGET else "**no**"]
        out.append(f"| {conns} | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def run_authz(bench, rounds):
    """`bench/run.sh --authz`: this build only, "mcpd all off" and "mcpd+authz" in turns of
    0.25 s within each round (`Bench.interleaved`) at 1, 16 and 64 connections. Reports the
    median of the rounds' ratios with their spread, and CPU per request."""
    bench.rel = os.path.abspath(bench.rel)
    gw, bare, echo, bare_echo = PORTS["this"]
    ports = [gw, bare, *range(echo, echo + 5), *range(bare_echo, bare_echo + 5)]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise SystemExit(f"ports in use, stop what holds them first: {busy}")
    build = Build(bench, "this", bench.rel, os.urandom(32).hex())
    build.start()
    cases = ("mcpd all off", "mcpd+authz")
    raw = {(case, c): [] for case in cases for c in CONNS}
    started = time.monotonic()
    for round_ in range(rounds):
        for conns in CONNS:
            results = bench.interleaved([build.turn(case) for case in cases], conns)
            for case, result in zip(cases, results):
                raw[(case, conns)].append(result)
                log(f"authz round {round_ + 1}/{rounds} {case:12} c={conns:<3} "
                    f"{result['rps']:>7.0f} req/s p50 {result['p50_us']} us "
                    f"{result['cpu_us_per_req']:.1f} us CPU/req")
    for proc in build.procs.values():
        bench.procs.stop(proc)
    load = os.getloadavg()
    out = ["# JWT + per-tool rules + audit on vs all off\n",
           f"{rounds} rounds; in each, both cases for {bench.duration} s in turns of 0.25 s. "
           f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load average after: "
           f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; took "
           f"{(time.monotonic() - started) / 60:.1f} min.\n",
           "| conns | req/s all off | req/s on | on / off (median of the rounds) | per-round on / off, "
           "min - max | CPU us/req off | CPU us/req on | met |",
           "|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for conns in CONNS:
        off, on = raw[("mcpd all off", conns)], raw[("mcpd+authz", conns)]
        per_round = [ratio(a["rps"], b["rps"]) for a, b in zip(on, off)]
        value = median(per_round)
        out.append(f"| {conns} | {median([r['rps'] for r in off]):.0f} | "
                   f"{median([r['rps'] for r in on]):.0f} | {value:.3f} | "
                   f"{min(per_round):.2f} - {max(per_round):.2f} | "
                   f"{median([r['cpu_us_per_req'] for r in off]):.1f} | "
                   f"{median([r['cpu_us_per_req'] for r in on]):.1f} | "
                   f"{'yes' if value >= AUTHZ_TARGET else '**no**'} |")
    out.append("")
    return "\n".join(out)
