#!/usr/bin/env python3
"""The mcpd benchmarks, driven by bench/run.sh (which builds and installs first).

Runs the gateway (direct, mcpd without and with auth, nginx), SSE streams, restart latency,
stdio servers (bench/stdio_bench.py), virtual servers (bench/virtual_bench.py: vs the member's
route and mcp-proxy, tools/list of 100 members) and supervision at scale (mcpd and supervisord
with 1000 servers), then rewrites bench/BENCH.md (with `--only`, one part's report goes to
target/bench/ instead). Everything runs in a temp dir on fixed loopback ports (18080-18199 and the range 5000-5999),
which are checked to be free first; every process started here is killed on exit. The results
so far are written to results.json in the temp dir after each section; when a section fails,
the temp dir is kept (with that file and the logs) and its path printed.
"""

import argparse
import base64
import calendar
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client

import stdio_bench
import virtual_bench

GW_PORT = 18080  # gateway of the small daemon
GW_BARE_PORT = 18081  # gateway of the all-off daemon (logs.audit: false)
ECHO_PORT = 18100  # mcpd's echo (auth off)
ECHO_AUTH_PORT = 18101  # mcpd's echo (auth on)
VICTIM_PORT = 18102  # the server killed in the restart benchmark
ECHO_AUTHZ_PORT = 18103  # mcpd's echo (JWT + per-tool rules)
ECHO_AUTH_RS_PORT = 18104  # mcpd's echo (auth on) for RS256 tokens: every target its own server
ECHO_BARE_PORT = 18120  # the all-off daemon's echo
DIRECT_PORT = 18150  # a bare mcp-echo, the backend of "direct" and nginx
NGINX_PORT = 18160
SCALE_GW_PORT = 18090
SUP_HTTP_PORT = 18095
SCALE_FIRST, SCALE_COUNT = 5000, 1000
SCALE_FILES = 100  # 100 files of 10 servers: "10 changed files" is 10% of the servers
BACKOFF_MS = 100
NOTES_MARKER = "<!-- notes: everything below this line is kept by bench/run.sh -->"

SERVER_CPU, LOADGEN_CPU = "0", "1"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Procs:
    """Every process started here, each in its own session; all killed on exit."""

    def __init__(self):
        self.procs = []

    def spawn(self, cmd, cpu=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=None):
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd
        # Default log levels everywhere: a RUST_LOG of the caller's shell would skew results.
        env = {k: v for k, v in (env or os.environ).items() if k != "RUST_LOG"}
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=60):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Children of a daemon live in their own groups; they die by PDEATHSIG or SIGTERM.

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


TICK = os.sysconf("SC_CLK_TCK")


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(what, timeout, cond, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class StateLog:
    """Follows a daemon's log file for its servers' state changes (`state changed server=NAME
    from=A to=B`, stamped in RFC 3339 UTC): each server's latest state, and the time of the
    change that left `count` servers running (`all_running_at`; None until then)."""

    LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+\w+\s+state changed "
                      r"server=(\S+) from=\S+ to=(\S+)")

    def __init__(self, path, count):
        self.path = path
        self.count = count
        self.offset = 0
        self.partial = ""
        self.state = {}
        self.running = 0
        self.all_running_at = None

    def read(self):
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            m = self.LINE.match(line)
            if not m:
                continue
            stamp, server, to = m.groups()
            self.running += (to == "running") - (self.state.get(server) == "running")
            self.state[server] = to
            if self.running == self.count and self.all_running_at is None:
                whole, _, fraction = stamp.partition(".")
                at = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
                self.all_running_at = at + (float("0." + fraction) if fraction else 0.0)


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def child_pid(pid):
    """The first child of process `pid` (nginx's worker under its master)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        return int(entry)
            except (OSError, ValueError, IndexError):
                continue
    return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if b else float("nan")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Bench:
    def __init__(self, args):
        self.root = args.root
        self.quick = args.quick
        self.rel = os.path.join(self.root, "target", "release")
        self.tmp = tempfile.mkdtemp(prefix="mcpd-bench-")
        self.procs = Procs()
        self.results = {}
        self.commands = []
        if self.quick:
            self.runs, self.duration, self.idle_secs, self.kills = 3, 2, 20, 10
        else:
            self.runs, self.duration, self.idle_secs, self.kills = 5, 5, 60, 20

    def bin(self, name):
        return os.path.join(self.rel, name)

    def note_command(self, text):
        if text not in self.commands:
            self.commands.append(text)

    # ------------------------------------------------------------------ helpers

    def mcpctl(self, sock, *args, check=True):
        out = subprocess.run([self.bin("mcpctl"), "--socket", sock, *args],
                             capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"mcpctl {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def status(self, sock, name=None):
        args = ["--json", "status"] + ([name] if name else [])
        return json.loads(self.mcpctl(sock, *args))

    def all_running(self, sock):
        """Every server of the daemon at `sock` is running; False while its socket is not
        there yet or does not answer (a daemon still starting)."""
        try:
            return all(s["state"] == "running" for s in self.status(sock)["servers"])
        except (RuntimeError, ValueError, OSError):
            return False

    def loadgen(self, url, conns, token=None, duration=None, sse=None, tool=None, method=None,
                min_tools=None):
        cmd = ["taskset", "-c", LOADGEN_CPU, self.bin("mcpd-loadgen"), "--url", url,
               "--connections", str(conns), "--duration", str(duration or self.duration)]
        if token:
            cmd += ["--token", token]
        if tool:
            cmd += ["--tool", tool]
        if method:
            cmd += ["--method", method, "--min-tools", str(min_tools or 1)]
        if sse:
            cmd += ["--sse-streams", str(sse)]
        self.note_command(" ".join(c if c != token else "$TOKEN" for c in cmd[:3])
                          + " --url URL --connections N --duration "
                          + str(duration or self.duration)
                          + (f" --sse-streams {sse}" if sse else "")
                          + (f" --method {method}" if method else ""))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"loadgen {url} gave nothing: {out.stderr}")
        return json.loads(lines[-1])

    def interleaved(self, targets, conns, duration=None, tools=None):
        """One load generator run over several targets in turns (`--url` repeated): each
        target has its own `conns` connections and they take turns of 0.25 s, so a drift of
        the machine's speed slows them alike. `targets` is a list of (url, token or None,
        pid or None): the CPU of that process during the target's turns is charged to it
        (`cpu_us_per_req`); `tools`, when given, names each target's tool. Returns one
        result per target, in order."""
        cmd = ["taskset", "-c", LOADGEN_CPU, self.bin("mcpd-loadgen"),
               "--connections", str(conns), "--duration", str(duration or self.duration),
               "--slice", "0.25"]
        for url, token, pid in targets:
            cmd += ["--url", url, "--token", token or "-", "--cpu-pid", str(pid or "-")]
        for tool in tools or []:
            cmd += ["--tool", tool]
        self.note_command(" ".join(cmd[:3]) + " --url URL1 --url URL2 ... --connections N "
                          f"--duration {duration or self.duration} --slice 0.25   # in turns")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"loadgen gave nothing: {out.stderr}")
        return json.loads(lines[-1])["targets"]

    def write_daemon_config(self, directory, gw_port, port_range, extra="", audit=True):
        os.makedirs(os.path.join(directory, "mcp"), exist_ok=True)
        path = os.path.join(directory, "mcpd.yaml")
        with open(path, "w") as f:
            f.write(f"""services_dir: mcp
port_range: {port_range}
bin_dirs: [{self.rel}]
state_dir: state
gateway:
  listen: 127.0.0.1:{gw_port}
  public_url: http://127.0.0.1:{gw_port}
control:
  socket: {directory}/mcpd.sock
logs:
  dir: logs
  audit: {"true" if audit else "false"}
{extra}""")
        return path

    def start_daemon(self, config, cpu=None, log_name="mcpd.log"):
        log_path = os.path.join(os.path.dirname(config), log_name)
        log_file = open(log_path, "w")
        proc = self.procs.spawn([self.bin("mcpd"), "--config", config], cpu=cpu,
                                stdout=log_file, stderr=log_file)
        return proc, log_path

    def metrics_requests(self, gw_port, server):
        with urllib.request.urlopen(f"http://127.0.0.1:{gw_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith("mcpd_gateway_requests_total{") and f'server="{server}"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    # ------------------------------------------------------------------ setup

    def check_ports(self, scale):
        ports = [GW_PORT, GW_BARE_PORT, ECHO_PORT, ECHO_AUTH_PORT, VICTIM_PORT, ECHO_AUTHZ_PORT,
                 ECHO_AUTH_RS_PORT,
                 ECHO_BARE_PORT, DIRECT_PORT, NGINX_PORT, SCALE_GW_PORT, SUP_HTTP_PORT]
        if scale:
            ports += list(range(SCALE_FIRST, SCALE_FIRST + SCALE_COUNT))
        ports += stdio_bench.ports()
        busy = [p for p in ports if not port_free(p)]
        if busy:
            raise SystemExit(f"ports in use, stop what holds them first: {busy[:20]}")

    def keys(self, directory):
        with open(os.path.join(directory, "jwt.secret"), "w") as f:
            f.write(os.urandom(32).hex())
        key = os.path.join(directory, "rsa.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out",
                        os.path.join(directory, "rsa-public.pem")], check=True,
                       capture_output=True)
        self.note_command("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem")
        return key

    def rs256_token(self, key):
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        now = int(time.time())
        claims = {"sub": "bench", "aud": "mcp", "scope": "bench", "iat": now, "exp": now + 3600}
        payload = b64url(json.dumps(claims).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                             capture_output=True, check=True).stdout
        return f"{header}.{payload}.{b64url(sig)}"

    def start_nginx(self, directory):
        os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    upstream echo {{
        server 127.0.0.1:{DIRECT_PORT};
        keepalive 128;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{NGINX_PORT};
        # The default of 1000 closes a client connection after 1000 requests; mcpd has no
        # such limit, and the load generator keeps one session per connection.
        keepalive_requests 10000000;
        location /mcp {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{DIRECT_PORT};
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
""")
        self.nginx_conf = conf
        proc = self.procs.spawn(["nginx", "-p", directory, "-c", conf], cpu=SERVER_CPU,
                                stderr=open(os.path.join(directory, "stderr.log"), "w"))
        wait_until("nginx to listen", 10, lambda: accepts(NGINX_PORT))
        return proc

    # ------------------------------------------------------------------ gateway

    def gateway(self):
        log("gateway: starting direct echo, mcpd and nginx (servers on CPU 0, loadgen on CPU 1)")
        d = os.path.join(self.tmp, "gw")
        os.makedirs(d)
        key = self.keys(d)
        extra = f"""auth:
  keys:
    - {{hs256_secret_file: jwt.secret}}
    - {{public_key_file: rsa-public.pem, algorithm: RS256}}
defaults:
  restart: {{backoff: {BACKOFF_MS}ms, max_backoff: {BACKOFF_MS}ms, burst: 1000, window: 1s}}
"""
        config = self.write_daemon_config(d, GW_PORT, f"{ECHO_PORT}-{ECHO_PORT + 19}", extra)
        with open(os.path.join(d, "mcp", "bench.yaml"), "w") as f:
            f.write(f"""mcp_servers:
  echo: {{binary: mcp-echo, port: {ECHO_PORT}}}
  echo-auth:
    binary: mcp-echo
    port: {ECHO_AUTH_PORT}
    oauth: {{required: true, scopes: [bench]}}
  echo-auth-rs:
    binary: mcp-echo
    port: {ECHO_AUTH_RS_PORT}
    oauth: {{required: true, scopes: [bench]}}
  echo-authz:
    binary: mcp-echo
    port: {ECHO_AUTHZ_PORT}
    oauth:
      required: true
      scopes: [user, tools:read, tools:write]
      tools: {{"delete_*": [admin], "search": [tools:read, user], "*": [tools:write, user]}}
  victim: {{binary: mcp-echo, port: {VICTIM_PORT}}}
""")
        # The all-off baseline: a second daemon with no oauth and no audit log.
        bare_dir = os.path.join(self.tmp, "gw-bare")
        bare_config = self.write_daemon_config(bare_dir, GW_BARE_PORT,
                                               f"{ECHO_BARE_PORT}-{ECHO_BARE_PORT + 19}",
                                               audit=False)
        with open(os.path.join(bare_dir, "mcp", "bench.yaml"), "w") as f:
            f.write(f"""mcp_servers:
  echo: {{binary: mcp-echo, port: {ECHO_BARE_PORT}}}
""")
        direct = self.procs.spawn([self.bin("mcp-echo")], cpu=SERVER_CPU,
                                  env={**os.environ, "MCP_PORT": str(DIRECT_PORT)})
        self.note_command(f"MCP_PORT={DIRECT_PORT} taskset -c {SERVER_CPU} mcp-echo >/dev/null")
        daemon, self.gw_log = self.start_daemon(config, cpu=SERVER_CPU)
        self.gw_daemon, self.gw_sock = daemon, os.path.join(d, "mcpd.sock")
        self.note_command(f"taskset -c {SERVER_CPU} mcpd --config gw/mcpd.yaml")
        bare, _ = self.start_daemon(bare_config, cpu=SERVER_CPU)
        bare_sock = os.path.join(bare_dir, "mcpd.sock")
        self.note_command(f"taskset -c {SERVER_CPU} mcpd --config gw-bare/mcpd.yaml   "
                          "# logs.audit: false, no oauth")
        nginx = self.start_nginx(os.path.join(self.tmp, "nginx"))
        self.note_command(f"taskset -c {SERVER_CPU} nginx -p DIR -c nginx.conf "
                          "(1 worker, keepalive upstream, proxy_buffering off)")
        wait_until("direct echo", 20, lambda: accepts(DIRECT_PORT))
        wait_until("mcpd servers running", 30, lambda: self.all_running(self.gw_sock))
        wait_until("all-off mcpd's server running", 30, lambda: self.all_running(bare_sock))
        hs = self.mcpctl(self.gw_sock, "token", "--scope", "bench", "--ttl", "2h").strip()
        rs = self.rs256_token(key)
        user = self.mcpctl(self.gw_sock, "token", "--scope", "user", "--ttl", "2h").strip()
        self.note_command("mcpctl token --scope bench --ttl 2h   # HS256; RS256 signed with openssl dgst")
        self.note_command("mcpctl token --scope user --ttl 2h   # mcpd+authz")

        gw = f"http://127.0.0.1:{GW_PORT}/api/v1/mcp"
        bare_gw = f"http://127.0.0.1:{GW_BARE_PORT}/api/v1/mcp"
        nginx_worker = child_pid(nginx.pid)
        # (name, url, token, the process whose CPU is charged to it)
        targets = [
            ("direct", f"http://127.0.0.1:{DIRECT_PORT}/mcp", None, None),
            ("nginx", f"http://127.0.0.1:{NGINX_PORT}/mcp", None, nginx_worker),
            ("mcpd", f"{gw}/echo/mcp", None, daemon.pid),
            ("mcpd+HS256", f"{gw}/echo-auth/mcp", hs, daemon.pid),
            ("mcpd+RS256", f"{gw}/echo-auth-rs/mcp", rs, daemon.pid),
            ("mcpd all off", f"{bare_gw}/echo/mcp", None, bare.pid),
            ("mcpd+authz", f"{gw}/echo-authz/mcp", user, daemon.pid),
        ]
        conns_list = [1, 16, 64]
        raw = {(t[0], c): [] for t in targets for c in conns_list}
        for run in range(self.runs):
            for conns in conns_list:
                results = self.interleaved([(url, token, pid) for _, url, token, pid in targets],
                                           conns)
                for (name, *_), result in zip(targets, results):
                    raw[(name, conns)].append(result)
                    log(f"run {run + 1}/{self.runs} {name:12} c={conns:<3} "
                        f"{result['rps']:>7.0f} req/s p50 {result['p50_us']} us "
                        f"p99 {result['p99_us']} us failed={result['failed_connections']}")
        # Ratios of two targets: the median over runs of each run's ratio (the two were
        # measured in turns within that run).
        pairs = [("mcpd", "nginx"), ("mcpd", "direct"), ("mcpd+HS256", "mcpd"),
                 ("mcpd+RS256", "mcpd"), ("mcpd", "mcpd all off"), ("mcpd+authz", "mcpd all off"),
                 ("nginx", "direct")]
        self.results["gateway_ratios"] = [
            {"a": a, "b": b, "connections": c,
             "ratio": median([ratio(x["rps"], y["rps"]) for x, y in zip(raw[(a, c)], raw[(b, c)])]),
             "spread": [min(ratio(x["rps"], y["rps"]) for x, y in zip(raw[(a, c)], raw[(b, c)])),
                        max(ratio(x["rps"], y["rps"]) for x, y in zip(raw[(a, c)], raw[(b, c)]))],
             "added_p50_us": median([x["p50_us"] - y["p50_us"]
                                     for x, y in zip(raw[(a, c)], raw[(b, c)])])}
            for a, b in pairs for c in conns_list]
        table = []
        for conns in conns_list:
            for name, *_ in targets:
                rs_ = raw[(name, conns)]
                table.append({
                    "target": name, "connections": conns,
                    "rps": median([r["rps"] for r in rs_]),
                    "p50_us": median([r["p50_us"] for r in rs_]),
                    "p99_us": median([r["p99_us"] for r in rs_]),
                    "cpu_us_per_req": median([r.get("cpu_us_per_req") for r in rs_]),
                    "failed": sum(r["failed_connections"] for r in rs_),
                    "runs": len(rs_),
                })
        self.results["gateway"] = table

        # One burst is one sample of a noisy figure: direct and through mcpd in turns, the
        # order swapped every round, and the ratio taken per round (as for the gateway).
        # nginx relays the same bursts to the same bare mcp-echo as direct: the reference for
        # what a second hop on the server's CPU costs a burst.
        log(f"sse: 500 progress streams (20 events, 50 ms apart) direct, through mcpd and "
            f"through nginx, {self.runs} rounds in turns")
        urls = [("direct", f"http://127.0.0.1:{DIRECT_PORT}/mcp"), ("mcpd", f"{gw}/echo/mcp"),
                ("nginx", f"http://127.0.0.1:{NGINX_PORT}/mcp")]
        rounds = {name: [] for name, _ in urls}
        for run in range(self.runs):
            # Each target goes first in some round and last in another.
            turn = urls[run % len(urls):] + urls[:run % len(urls)]
            for name, url in (turn if run % 2 == 0 else turn[::-1]):
                rounds[name].append(self.loadgen(url, 1, sse=500))
                log(f"sse {name} round {run + 1}: {rounds[name][-1]}")
        sse = {}
        for name, runs in rounds.items():
            sse[name] = {key: median([r[key] for r in runs])
                         for key in ("events", "expected_events", "p50_delay_us",
                                     "p99_delay_us")}
            sse[name]["failed_streams"] = sum(r["failed_streams"] for r in runs)
            sse[name]["runs"] = len(runs)
        sse["ratios"] = [ratio(m["p50_delay_us"], d["p50_delay_us"])
                         for m, d in zip(rounds["mcpd"], rounds["direct"])]
        sse["nginx_ratios"] = [ratio(n["p50_delay_us"], d["p50_delay_us"])
                               for n, d in zip(rounds["nginx"], rounds["direct"])]
        sse["mcpd_nginx_ratios"] = [ratio(m["p50_delay_us"], n["p50_delay_us"])
                                    for m, n in zip(rounds["mcpd"], rounds["nginx"])]
        self.results["sse"] = sse

        self.restart()
        for proc in (nginx, direct):
            self.procs.stop(proc)
        self.procs.stop(daemon)
        self.procs.stop(bare)

    # ------------------------------------------------------------------ restart

    def restart(self):
        log(f"restart: {self.kills} x kill -9 of one server (backoff {BACKOFF_MS} ms + jitter)")
        latencies, delays = [], []
        for _ in range(self.kills):
            status = self.status(self.gw_sock, "victim")["servers"][0]
            old = status["pid"]
            with open(self.gw_log) as f:
                f.seek(0, os.SEEK_END)
                offset = f.tell()
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)

            def back():
                s = self.status(self.gw_sock, "victim")["servers"][0]
                return s["state"] == "running" and s["pid"] not in (None, old)
            wait_until("victim to run again", 20, back, interval=0.002)
            elapsed = (time.monotonic() - killed) * 1000
            delay = self.logged_backoff(offset)
            latencies.append(elapsed - delay)
            delays.append(delay)
        self.results["restart"] = {
            "median_ms": median(latencies), "max_ms": max(latencies),
            "backoff_ms": median(delays), "kills": len(latencies),
        }
        log(f"restart: {self.results['restart']}")

    def logged_backoff(self, offset):
        """The delay the daemon logged for the last restart of `victim` after `offset`."""
        pattern = re.compile(r"restarting after backoff.*server=victim.*delay=([\d.]+)(ns|µs|us|ms|s)"
                             r"|server=victim.*restarting after backoff.*delay=([\d.]+)(ns|µs|us|ms|s)")
        scale = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
        with open(self.gw_log, errors="replace") as f:
            f.seek(offset)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
        found = None
        for match in pattern.finditer(text):
            value, unit = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
            found = float(value) * scale[unit]
        if found is None:
            return float(BACKOFF_MS)  # the log line moved: assume the configured backoff
        return found

    # ------------------------------------------------------------------ scale

    def scale_services(self, directory, description="bench"):
        mcp = os.path.join(directory, "mcp")
        os.makedirs(mcp, exist_ok=True)
        per_file = SCALE_COUNT // SCALE_FILES
        for f in range(SCALE_FILES):
            self.write_scale_file(mcp, f, per_file, description)

    def write_scale_file(self, mcp, f, per_file, description):
        lines = ["mcp_servers:"]
        for i in range(f * per_file, (f + 1) * per_file):
            lines.append(f"  s{i:04}: {{binary: mcp-echo, description: \"{description}\"}}")
        path = os.path.join(mcp, f"servers-{f:03}.yaml")
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.rename(tmp, path)

    def scale(self):
        log(f"scale: mcpd with {SCALE_COUNT} servers on {SCALE_FIRST}-{SCALE_FIRST + SCALE_COUNT - 1}")
        d = os.path.join(self.tmp, "scale")
        config = self.write_daemon_config(d, SCALE_GW_PORT,
                                          f"{SCALE_FIRST}-{SCALE_FIRST + SCALE_COUNT - 1}")
        self.scale_services(d)
        sock = os.path.join(d, "mcpd.sock")
        started = time.time()
        daemon, log_path = self.start_daemon(config)
        self.note_command("mcpd --config scale/mcpd.yaml   # 100 files x 10 servers, allocated ports")

        # When every server is running is read from the daemon's own log (each server's
        # last state change, with its time), not by asking the daemon: a status request
        # every 50 ms during start-up is work the daemon would not otherwise do.
        states = StateLog(log_path, SCALE_COUNT)

        def all_running():
            states.read()
            return states.all_running_at is not None
        wait_until("1000 servers running", 180, all_running, interval=0.05)
        start_s = states.all_running_at - started
        servers = self.status(sock)["servers"]
        if len(servers) != SCALE_COUNT or any(s["state"] != "running" for s in servers):
            raise RuntimeError("the log said every server is running; mcpctl status does not")
        log(f"scale: all running after {start_s:.2f} s")

        settle = 5
        time.sleep(settle)
        log(f"scale: idle {self.idle_secs} s (probes every 10 s)")
        ticks0, t0 = cpu_ticks(daemon.pid), time.monotonic()
        peak = rss_kib(daemon.pid)
        while time.monotonic() - t0 < self.idle_secs:
            time.sleep(1)
            peak = max(peak, rss_kib(daemon.pid))
        idle_cpu = (cpu_ticks(daemon.pid) - ticks0) / TICK / (time.monotonic() - t0) * 100
        rss = rss_kib(daemon.pid)

        status_ms = self.hyperfine([self.bin("mcpctl"), "--socket", sock, "--json", "status"],
                                   runs=30 if not self.quick else 15,
                                   label="mcpctl --json status")
        reload_ms = self.hyperfine([self.bin("mcpctl"), "--socket", sock, "reload"],
                                   runs=10 if not self.quick else 5,
                                   label="mcpctl reload   # no change")

        # Ten files (100 servers) get a new description: by the file watcher, then by mcpctl.
        mcp = os.path.join(d, "mcp")
        per_file = SCALE_COUNT // SCALE_FILES
        changed = {f"s{i:04}" for i in range(10 * per_file)}

        def applied(desc):
            listing = json.loads(self.mcpctl(sock, "--json", "list"))["servers"]
            return all(s["description"] == desc for s in listing if s["name"] in changed)

        t = time.monotonic()
        for f in range(10):
            self.write_scale_file(mcp, f, per_file, "watched")
        wait_until("watched change applied", 30, lambda: applied("watched"), interval=0.01)
        watched_ms = (time.monotonic() - t) * 1000
        time.sleep(1)
        t = time.monotonic()
        for f in range(10):
            self.write_scale_file(mcp, f, per_file, "reloaded")
        self.mcpctl(sock, "reload")
        reloaded_ms = (time.monotonic() - t) * 1000
        ok = applied("reloaded")
        running = sum(s["state"] == "running" for s in self.status(sock)["servers"])
        log(f"scale: reload 10 files: watch {watched_ms:.0f} ms, mcpctl {reloaded_ms:.0f} ms "
            f"(applied={ok}, running={running})")

        t = time.monotonic()
        self.procs.stop(daemon, timeout=120)
        stop_s = time.monotonic() - t
        wait_until("ports 5000-5999 free", 60, lambda: all(
            port_free(p) for p in range(SCALE_FIRST, SCALE_FIRST + SCALE_COUNT)), interval=0.2)
        self.results["scale_mcpd"] = {
            "start_s": start_s, "rss_mib": rss / 1024, "peak_rss_mib": peak / 1024,
            "idle_cpu_pct": idle_cpu, "idle_secs": self.idle_secs, "status_ms": status_ms,
            "reload_nochange_ms": reload_ms, "reload_watch_ms": watched_ms,
            "reload_ctl_ms": reloaded_ms, "reload_applied": ok, "stop_s": stop_s,
        }
        log(f"scale mcpd: {self.results['scale_mcpd']}")

    def hyperfine(self, cmd, runs, label, ignore_failure=False):
        out = os.path.join(self.tmp, "hyperfine.json")
        args = ["hyperfine", "-N", "--warmup", "2", "--runs", str(runs), "--export-json", out,
                "--style", "none"]
        if ignore_failure:
            args.append("-i")
        subprocess.run(args + [" ".join(cmd)], check=True, capture_output=True)
        self.note_command(f"hyperfine -N --warmup 2 --runs {runs} '{label}'")
        with open(out) as f:
            return json.load(f)["results"][0]["median"] * 1000

    def supervisord(self):
        log(f"scale: supervisord with the same {SCALE_COUNT} programs")
        d = os.path.join(self.tmp, "sup")
        os.makedirs(os.path.join(d, "logs"))
        conf = os.path.join(d, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"""[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/logs
minfds={min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)}
minprocs=4096

[unix_http_server]
file={d}/supervisor.sock

[inet_http_server]
port=127.0.0.1:{SUP_HTTP_PORT}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock
""")
            for i in range(SCALE_COUNT):
                f.write(f"""
[program:s{i:04}]
command={self.bin("mcp-echo")}
environment=MCP_PORT="{SCALE_FIRST + i}"
autorestart=true
""")
        started = time.monotonic()
        proc = self.procs.spawn(["supervisord", "-c", conf])
        self.note_command("supervisord -c supervisord.conf   # 1000 [program:x] with MCP_PORT, startsecs=1 (default)")
        rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{SUP_HTTP_PORT}/RPC2")

        def all_running():
            try:
                infos = rpc.supervisor.getAllProcessInfo()
            except (OSError, xmlrpc.client.Error):
                return False
            return len(infos) == SCALE_COUNT and all(i["statename"] == "RUNNING" for i in infos)
        wait_until("supervisord: all RUNNING", 180, all_running, interval=0.1)
        start_s = time.monotonic() - started
        log(f"supervisord: all RUNNING after {start_s:.2f} s")
        time.sleep(5)
        ticks0, t0 = cpu_ticks(proc.pid), time.monotonic()
        idle = min(self.idle_secs, 20)
        time.sleep(idle)
        idle_cpu = (cpu_ticks(proc.pid) - ticks0) / TICK / (time.monotonic() - t0) * 100
        rss = rss_kib(proc.pid)
        status_ms = self.hyperfine(["supervisorctl", "-c", conf, "status"],
                                   runs=3 if self.quick else 5,
                                   label="supervisorctl status", ignore_failure=True)
        t = time.monotonic()
        self.procs.stop(proc, timeout=300)
        stop_s = time.monotonic() - t
        self.results["scale_supervisord"] = {
            "start_s": start_s, "rss_mib": rss / 1024, "idle_cpu_pct": idle_cpu,
            "idle_secs": idle, "status_ms": status_ms, "stop_s": stop_s,
        }
        log(f"scale supervisord: {self.results['scale_supervisord']}")

    # ------------------------------------------------------------------ report

    def machine(self):
        model = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        mem = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024 // 1024
        load = os.getloadavg()
        return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
                "mem_gib": mem, "load_before": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                "rustc": subprocess.run(["rustc", "--version"], capture_output=True,
                                        text=True).stdout.strip(),
                "nginx": subprocess.run(["nginx", "-v"], capture_output=True,
                                        text=True).stderr.strip(),
                "supervisord": subprocess.run(["supervisord", "--version"], capture_output=True,
                                              text=True).stdout.strip()}

    def save_results(self, machine):
        """Writes every result so far to results.json in the temp dir (replaced whole, never
        half-written); returns its path."""
        path = os.path.join(self.tmp, "results.json")
        with open(path + ".part", "w") as f:
            json.dump({"machine": machine, "results": self.results}, f, indent=1, default=str)
        os.replace(path + ".part", path)
        return path

    def write_report(self, machine, elapsed, path=None):
        """Writes the report to `path` (bench/BENCH.md unless given), keeping the notes below
        its marker."""
        path = path or os.path.join(self.root, "bench", "BENCH.md")
        notes = ""
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if NOTES_MARKER in text:
                notes = text.split(NOTES_MARKER, 1)[1]
        r = self.results
        out = []
        w = out.append
        mode = "--quick" if self.quick else "full"
        w("# mcpd benchmarks\n")
        w(f"Written by `bench/run.sh{' --quick' if self.quick else ''}` ({mode} mode, "
          f"{self.runs} runs of {self.duration} s per case, medians shown; took "
          f"{elapsed / 60:.1f} min). Re-run it to refresh everything above the notes.\n")
        w("## Machine\n")
        w(f"- {machine['nproc']} CPUs: {machine['cpu']}; {machine['mem_gib']} GiB RAM; "
          f"kernel {machine['kernel']}")
        w(f"- {machine['rustc']}; {machine['nginx']}; supervisord {machine['supervisord']}")
        w(f"- {machine['date']}; load average before the run: {machine['load_before']} "
          "(the machine is shared: other jobs add noise)\n")
        w("## Method\n")
        w(f"- Servers on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU} (`taskset`). "
          "mcp-echo, mcpd and nginx share CPU 0 in every case, so a proxy pays for its own "
          "CPU time out of the backend's budget, as it does on a real host; the load generator "
          "never competes with them. Under taskset mcp-echo's tokio runtime sees one CPU "
          "and starts one worker thread, and mcpd starts one gateway worker thread; nginx runs one worker.")
        w("- One MCP session per connection (rmcp serializes the requests of a session). "
          "Each measurement is preceded by a 1 s warm-up on the same connections.")
        w("- `direct` and `nginx` use the same bare mcp-echo (stdout to /dev/null); mcpd "
          "proxies its own supervised mcp-echo, whose `call` line per request the daemon "
          "captures into its log ring and file (realistic, and a cost nginx does not have).")
        w("- `mcpd` is the daemon as installed: no oauth on the server, audit log on (every "
          "`tools/call` is audited). `mcpd all off` is a second daemon on the same CPU with "
          "`logs.audit: false` and no oauth. `mcpd+authz` is the first daemon's server with "
          "`oauth.required`, scopes `[user, tools:read, tools:write]` and the per-tool rules "
          "`delete_*: [admin]`, `search: [tools:read, user]`, `*: [tools:write, user]`, "
          "called with an HS256 token of scope `user` (the tool `echo` matches the third "
          "rule): JWT, per-tool rules and audit on. `mcpd+HS256` and `mcpd+RS256` are the "
          "first daemon's servers with `oauth.required` (scope `bench`), one each. Every "
          "mcpd target has a server and an mcp-echo of its own. Every POST body is read and "
          "its JSON-RPC envelope parsed in all of them.")
        w("- Gateway cases are measured in turns: one load generator run holds every target, "
          "each with its own connections, and only one target's connections send at a time, "
          "for 0.25 s, in rotation (the order reversed every other round) until each target "
          "has had the run's duration; a turn ends when its last answer is in. Whatever "
          "slows the machine for seconds at a time (other jobs, the host scheduling this VM's "
          "CPUs) then slows every target alike. Proxy CPU per request: the process's CPU "
          "during its targets' turns (all threads, `/proc/PID/task/*/schedstat`) divided by "
          "the requests answered in them.")
        w("- Scale: 1000 mcp-echo servers in 100 files of 10, ports allocated from the whole "
          "5000-5999 range, default health settings (interval 10 s); no CPU pinning. `running` "
          "means an MCP readiness probe (`server/discover` or "
          "`initialize`, then `tools/list`) passed; start to all running is the time of the "
          "last server's change to `running` in the daemon's log, less the daemon's start "
          "(checked with one `mcpctl status` after; nothing asks the daemon during "
          "start-up). supervisord runs the same 1000 "
          "mcp-echo programs (MCP_PORT each) with default `startsecs=1`: RUNNING means alive "
          "for 1 s, a weaker condition.")
        w("- Restart: kill -9 of one server's process until `mcpctl status` shows it `running` "
          f"with a new pid, minus the backoff the daemon logged (configured {BACKOFF_MS} ms, "
          "plus up to 20% jitter).\n")
        w("Commands:\n")
        w("```")
        for c in self.commands:
            w(c)
        w("```\n")

        targets = []
        if "gateway" in r:
            g = {(row["target"], row["connections"]): row for row in r["gateway"]}
            q = {(x["a"], x["b"], x["connections"]): x for x in r["gateway_ratios"]}

            def rq(a, b, c):
                return q[(a, b, c)]["ratio"]

            w("## Gateway: MCP tools/call\n")
            w("All seven targets are measured in each run in turns of 0.25 s (each with its own "
              "connections), so the machine's drift slows them alike; a ratio below is the "
              "median over runs of that run's ratio.\n")
            w("| target | conns | req/s | p50 us | p99 us | proxy CPU us/req | failed conns |")
            w("|---|---:|---:|---:|---:|---:|---:|")
            for row in r["gateway"]:
                cpu = f"{row['cpu_us_per_req']:.0f}" if row["cpu_us_per_req"] is not None else "-"
                w(f"| {row['target']} | {row['connections']} | {row['rps']:.0f} | "
                  f"{row['p50_us']:.0f} | {row['p99_us']:.0f} | {cpu} | {row['failed']} |")
            w("")
            w("Ratios (medians of each run's ratio; in brackets the lowest and highest run):\n")
            w("| conns | mcpd / nginx req/s | mcpd / direct req/s | mcpd added p50 us | "
              "nginx added p50 us | HS256 / off | RS256 / off | audit / all off | "
              "JWT+rules+audit / all off |")
            w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

            def cell(a, b, c):
                x = q[(a, b, c)]
                return f"{x['ratio']:.3f} ({x['spread'][0]:.2f}-{x['spread'][1]:.2f})"

            for c in (1, 16, 64):
                w(f"| {c} | {cell('mcpd', 'nginx', c)} | {rq('mcpd', 'direct', c):.2f} | "
                  f"{q[('mcpd', 'direct', c)]['added_p50_us']:.0f} | "
                  f"{q[('nginx', 'direct', c)]['added_p50_us']:.0f} | "
                  f"{rq('mcpd+HS256', 'mcpd', c):.3f} | {rq('mcpd+RS256', 'mcpd', c):.3f} | "
                  f"{rq('mcpd', 'mcpd all off', c):.3f} | {cell('mcpd+authz', 'mcpd all off', c)} |")
            w("")
            w("HS256 / off and RS256 / off compare with `mcpd` (both audited); the last two "
              "columns with `mcpd all off`. Proxy CPU: the nginx worker's or the mcpd "
              "daemon's (all threads, from the scheduler's count) during the target's turns, "
              "divided by the requests the load generator counted in them.\n")
            worst_ratio = min(rq("mcpd", "nginx", c) for c in (1, 16, 64))
            added = q[("mcpd", "direct", 1)]["added_p50_us"]
            jwt = min(rq(t, "mcpd", c) for t in ("mcpd+HS256", "mcpd+RS256") for c in (1, 16, 64))
            authz = min(rq("mcpd+authz", "mcpd all off", c) for c in (1, 16, 64))
            nginx_added = q[("nginx", "direct", 1)]["added_p50_us"]
            targets += [
                ("Gateway tools/call req/s >= 1.05x nginx's (worst of 1/16/64 conns)",
                 f"{worst_ratio:.2f}x", worst_ratio >= 1.05),
                ("Added p50 over direct, 1 conn <= 0.9x nginx's added p50",
                 f"{added:.0f} us vs {nginx_added:.0f} us ({ratio(added, nginx_added):.2f}x)",
                 added <= 0.9 * nginx_added),
                ("JWT on / off throughput >= 0.95x (worst)", f"{jwt:.2f}x", jwt >= 0.95),
                ("JWT + per-tool rules + audit on / all off throughput >= 0.95x (worst)",
                 f"{authz:.2f}x", authz >= 0.95),
            ]
            for c in (1, 16, 64):
                each = rq("mcpd+authz", "mcpd all off", c)
                targets.append((f"- same, {c} connection{'s' if c > 1 else ''}",
                                f"{each:.2f}x", each >= 0.95))
        if "sse" in r:
            w("## SSE: 500 concurrent `progress` streams (20 events, 50 ms apart)\n")
            w("| target | events | expected | p50 delay us | p99 delay us | failed streams |")
            w("|---|---:|---:|---:|---:|---:|")
            for name in ("direct", "mcpd", "nginx"):
                if name not in r["sse"]:
                    continue
                s = r["sse"][name]
                w(f"| {name} | {s['events']:.0f} | {s['expected_events']:.0f} | "
                  f"{s['p50_delay_us']:.0f} | {s['p99_delay_us']:.0f} | {s['failed_streams']} |")
            w("")
            ratios = r["sse"]["ratios"]
            sse_ratio = median(ratios)
            w("Delay: arrival of event n minus n x 50 ms after the request was sent. The 500 "
              "sessions are all opened first and the 500 calls then sent at once, so session "
              f"set-up is not in the figure. {len(ratios)} bursts each, direct, through mcpd and "
              "through nginx in turns (the order rotated every round); figures are medians over "
              "the bursts, "
              f"failed streams their sum. p50 delay through mcpd / direct, the median of each "
              f"round's ratio: **{sse_ratio:.2f}x** (rounds: "
              + ", ".join(f"{x:.2f}" for x in ratios) + ").\n")
            if "nginx_ratios" in r["sse"]:
                n_ratios = r["sse"]["nginx_ratios"]
                mn_ratios = r["sse"]["mcpd_nginx_ratios"]
                w("nginx is the gateway cases' nginx, in front of the direct mcp-echo: p50 "
                  "delay through nginx / direct "
                  f"**{median(n_ratios):.2f}x** (rounds: "
                  + ", ".join(f"{x:.2f}" for x in n_ratios) + "); through mcpd / through "
                  f"nginx **{median(mn_ratios):.2f}x** (rounds: "
                  + ", ".join(f"{x:.2f}" for x in mn_ratios) + ").\n")
            targets.append(("SSE: 500 progress streams, p50 event delay through mcpd / "
                            "direct <= 1.2x", f"{sse_ratio:.2f}x", sse_ratio <= 1.2))
        if "restart" in r:
            rs_ = r["restart"]
            w("## Restart after kill -9\n")
            w(f"Median over {rs_['kills']} kills: **{rs_['median_ms']:.0f} ms** beyond the "
              f"backoff (max {rs_['max_ms']:.0f} ms; logged backoff median "
              f"{rs_['backoff_ms']:.0f} ms). Includes the MCP readiness probe of the new "
              "process and `mcpctl status` polling (about 2-5 ms per poll).\n")
            targets.append(("Restart: running within backoff + 200 ms",
                            f"+{rs_['median_ms']:.0f} ms", rs_["median_ms"] <= 200))
        if "scale_mcpd" in r:
            m = r["scale_mcpd"]
            s = r.get("scale_supervisord")
            w("## Supervision at scale: 1000 servers\n")
            w("| | mcpd | supervisord |")
            w("|---|---:|---:|")

            def sv(key, fmt):
                return fmt.format(s[key]) if s and key in s else "-"
            w(f"| start to all running | {m['start_s']:.2f} s | {sv('start_s', '{:.2f} s')} |")
            w(f"| daemon RSS (idle) | {m['rss_mib']:.1f} MiB (peak {m['peak_rss_mib']:.1f}) | "
              f"{sv('rss_mib', '{:.1f} MiB')} |")
            w(f"| daemon CPU while idle | {m['idle_cpu_pct']:.2f}% over {m['idle_secs']} s | "
              f"{sv('idle_cpu_pct', '{:.2f}%')} |")
            w(f"| status latency | {m['status_ms']:.1f} ms (`mcpctl --json status`) | "
              f"{sv('status_ms', '{:.0f} ms')} (`supervisorctl status`) |")
            w(f"| reload, no change | {m['reload_nochange_ms']:.1f} ms (`mcpctl reload`) | - |")
            w(f"| reload, 10 files changed, by the file watcher | {m['reload_watch_ms']:.0f} ms "
              "(includes the 100 ms quiet period) | - |")
            w(f"| reload, 10 files changed, `mcpctl reload` | {m['reload_ctl_ms']:.0f} ms "
              f"(applied: {m['reload_applied']}) | - |")
            w(f"| stop all (SIGTERM to exit) | {m['stop_s']:.2f} s | {sv('stop_s', '{:.2f} s')} |")
            w("")
            sup_cpu = s.get("idle_cpu_pct") if s else None
            targets += [
                ("1000 HTTP servers: start to all running <= 2 s", f"{m['start_s']:.2f} s",
                 m["start_s"] <= 2),
                ("1000 servers: daemon RSS <= 28 MiB", f"{m['rss_mib']:.1f} MiB",
                 m["rss_mib"] <= 28),
                ("1000 servers: idle daemon CPU, probes included <= supervisord's (no probes)",
                 f"{m['idle_cpu_pct']:.2f}% vs "
                 + (f"{sup_cpu:.2f}%" if sup_cpu is not None else "not measured"),
                 sup_cpu is not None and m["idle_cpu_pct"] <= sup_cpu),
                ("1000 servers: `mcpctl status --json` <= 10 ms", f"{m['status_ms']:.1f} ms",
                 m["status_ms"] <= 10),
                ("1000 servers: reload of 10 changed files by the watcher <= 300 ms",
                 f"{m['reload_watch_ms']:.0f} ms", m["reload_watch_ms"] <= 300),
            ]
        stdio_bench.report(r, w, targets, ratio)
        targets += virtual_bench.report(w, r)
        w("## Targets\n")
        w("The targets of the performance issue, this run. For every miss, the notes below "
          "(\"Misses that remain: measured cause and plan\") give the measured cause and the plan.\n")
        w("| target | measured | met |")
        w("|---|---:|:---:|")
        for name, value, ok in targets:
            w(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
        w("")
        w(NOTES_MARKER)
        text = "\n".join(out) + (notes if notes else "\n")
        with open(path, "w") as f:
            f.write(text)
        self.save_results(machine)
        log(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["gateway", "scale", "stdio", "virtual"],
                        help="run one part; its report goes to target/bench/BENCH-<part>.md "
                        "and BENCH.md is left as it is")
    parser.add_argument("--no-supervisord", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--compare-bin", help="compare the gateway with the mcpd and mcpctl "
                        "in this dir (bench/run.sh --compare REV builds them); BENCH.md is "
                        "left as it is")
    parser.add_argument("--compare-label", default="the other build")
    parser.add_argument("--compare-report", help="also write the comparison to this file")
    parser.add_argument("--rounds", type=int, help="rounds of a comparison (default: runs)")
    parser.add_argument("--authz", action="store_true", help="only JWT + per-tool rules + "
                        "audit on vs all off, alternately, --rounds times; BENCH.md is left "
                        "as it is")
    args = parser.parse_args()
    bench = Bench(args)
    started = time.monotonic()
    machine = bench.machine()
    if args.authz:
        import compare
        try:
            print(compare.run_authz(bench, args.rounds or 3 * bench.runs))
        finally:
            bench.procs.kill_all()
            if not args.keep:
                shutil.rmtree(bench.tmp, ignore_errors=True)
        return
    if args.compare_bin:
        import compare
        try:
            report = compare.run(bench, os.path.abspath(args.compare_bin), args.compare_label,
                                 args.rounds or bench.runs)
        finally:
            bench.procs.kill_all()
            if not args.keep:
                shutil.rmtree(bench.tmp, ignore_errors=True)
        print(report)
        if args.compare_report:
            with open(args.compare_report, "w") as f:
                f.write(report)
            log(f"wrote {args.compare_report}")
        return
    sections = []
    if args.only in (None, "gateway"):
        sections.append(("gateway", bench.gateway))
    if args.only in (None, "virtual"):
        sections.append(("virtual", lambda: virtual_bench.run(bench, sys.modules[__name__])))
    if args.only in (None, "scale"):
        sections.append(("scale", bench.scale))
        if not args.no_supervisord:
            sections.append(("supervisord", bench.supervisord))
    if args.only in (None, "stdio"):
        sections.append(("stdio", lambda: stdio_bench.run(bench, sys.modules[__name__])))
    # What is running now, for the message when it fails; None when nothing was measured yet
    # or everything is written.
    running = None
    try:
        bench.check_ports(scale=args.only in (None, "scale"))
        for name, section in sections:
            running = f"section {name}"
            section()
            # After each section, so a later one's failure loses nothing measured before it.
            bench.save_results(machine)
        running = "the report"
        # One part's figures would replace every table of BENCH.md: they get a file of their
        # own under target/, and BENCH.md stays the last full run's.
        partial = None
        if args.only:
            os.makedirs(os.path.join(args.root, "target", "bench"), exist_ok=True)
            partial = os.path.join(args.root, "target", "bench", f"BENCH-{args.only}.md")
        bench.write_report(machine, time.monotonic() - started, partial)
        running = None
        if args.keep:
            log(f"raw results in {bench.tmp}/results.json")
    except BaseException:
        if running:
            path = bench.save_results(machine)
            log(f"{running} failed; the results so far ({', '.join(bench.results) or 'none'}) "
                f"are in {path}, and the temp dir {bench.tmp} is kept")
        raise
    finally:
        bench.procs.kill_all()
        if not args.keep and running is None:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
