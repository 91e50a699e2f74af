#!/usr/bin/env bash
# Soak test of mcpd (not run in CI): continuous MCP tools/call traffic through the gateway to
# several echo servers while one designated "victim" server is killed with SIGKILL every few
# seconds and the configuration is reloaded every few seconds (a touched server file and
# SIGHUP, alternately). Then 10 000 idle connections are held open while /healthz is asked.
#
# Passes when: no failed request to a server that was not being killed; the daemon's RSS,
# open descriptors and threads end within a bound of where they stood after warm-up; no
# zombie children at any sample; mcpd exits 0 on SIGTERM and leaves no server process behind.
#
#   bench/soak.sh            # 15 minutes
#   bench/soak.sh --quick    # 3 minutes
#   options: --duration SECONDS, --profile release|debug (default release), --keep (keep the temp dir)
#
# Everything listens on 127.0.0.1 only. Results go to stdout; the samples to <tmp>/samples.csv.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=900
profile=release
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=180 ;;
    --duration) duration="$2"; shift ;;
    --profile) profile="$2"; shift ;;
    --keep) keep=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

KILL_EVERY=3     # seconds between SIGKILLs of the victim
RELOAD_EVERY=5   # seconds between reloads
SAMPLE_EVERY=10  # seconds between resource samples
CONNECTIONS=2    # MCP sessions per server
SERVERS="s1,s2,s3"
VICTIM=victim

echo "==> building ($profile)"
cargo build --quiet --profile "$( [ "$profile" = debug ] && echo dev || echo "$profile")" \
  -p mcpd -p mcpctl -p mcp-echo
bin_dir="$PWD/target/$profile"

dir=$(mktemp -d /tmp/mcpd-soak-XXXXXX)
mcpd_pid=
client_pid=
cleanup() {
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null || true
  [ -n "$mcpd_pid" ] && kill -TERM "$mcpd_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gateway_port=$(free_port)
# Below the ephemeral range (32768+), which the 10 000 client connections draw from.
range_start=$(( 28000 + (gateway_port % 4000) ))
mkdir -p "$dir/mcp" "$dir/run"
cat > "$dir/mcpd.yaml" <<EOF
services_dir: mcp
port_range: ${range_start}-$((range_start + 49))
state_dir: state
gateway: {listen: "127.0.0.1:${gateway_port}"}
control: {socket: run/mcpd.sock}
defaults:
  restart: {policy: on-failure, backoff: 100ms, max_backoff: 1s, reset_after: 30s, burst: 100000, window: 60s}
  health: {interval: 1s, timeout: 2s, failures: 3, start_timeout: 10s}
  stop_timeout: 2s
EOF
for name in ${SERVERS//,/ } $VICTIM; do
  printf 'mcp_servers:\n  %s:\n    binary: %s/mcp-echo\n' "$name" "$bin_dir" > "$dir/mcp/$name.yaml"
done

ctl() { "$bin_dir/mcpctl" --socket "$dir/run/mcpd.sock" "$@"; }
field() { # field SERVER KEY: one value of `mcpctl --json status`
  ctl --json status 2>/dev/null | python3 -c "import json,sys
try:
    servers = json.load(sys.stdin)['servers']
except (ValueError, KeyError):
    servers = []
for s in servers:
    if s['name']=='$1': print(s.get('$2') if s.get('$2') is not None else '')"
}

echo "==> starting mcpd (gateway 127.0.0.1:$gateway_port, dir $dir)"
RUST_LOG=info,rmcp=off "$bin_dir/mcpd" --config "$dir/mcpd.yaml" 2> "$dir/mcpd.log" &
mcpd_pid=$!
for _ in $(seq 1 200); do
  all=1
  for name in ${SERVERS//,/ } $VICTIM; do
    [ "$(field "$name" state)" = running ] || all=0
  done
  [ $all = 1 ] && break
  sleep 0.1
done
[ $all = 1 ] || { echo "servers did not start"; tail -50 "$dir/mcpd.log"; exit 1; }

sample() { # elapsed rss_kib fds threads zombies
  local rss threads fds zombies
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$mcpd_pid/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$mcpd_pid/status")
  fds=$(ls "/proc/$mcpd_pid/fd" | wc -l)
  zombies=$(ps -o stat= --ppid "$mcpd_pid" | grep -c '^Z' || true)
  echo "$1,$rss,$fds,$threads,$zombies" >> "$dir/samples.csv"
}
echo "elapsed_s,rss_kib,fds,threads,zombie_children" > "$dir/samples.csv"

echo "==> ${duration}s of traffic to $SERVERS,$VICTIM; SIGKILL $VICTIM every ${KILL_EVERY}s, reload every ${RELOAD_EVERY}s"
python3 bench/soak_client.py --port "$gateway_port" --servers "$SERVERS,$VICTIM" \
  --connections "$CONNECTIONS" --duration "$duration" > "$dir/client.json" &
client_pid=$!

start=$(date +%s)
kills=0
reloads=0
next_kill=$KILL_EVERY
next_reload=$RELOAD_EVERY
next_sample=0
while kill -0 "$client_pid" 2>/dev/null; do
  elapsed=$(( $(date +%s) - start ))
  if [ "$elapsed" -ge "$next_sample" ]; then
    sample "$elapsed"
    next_sample=$(( next_sample + SAMPLE_EVERY ))
  fi
  if [ "$elapsed" -ge "$next_kill" ]; then
    pid=$(field "$VICTIM" pid)
    if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    next_kill=$(( elapsed + KILL_EVERY ))
  fi
  if [ "$elapsed" -ge "$next_reload" ]; then
    if [ $((reloads % 2)) = 0 ]; then touch "$dir/mcp/s1.yaml"; else kill -HUP "$mcpd_pid"; fi
    reloads=$((reloads + 1))
    next_reload=$(( elapsed + RELOAD_EVERY ))
  fi
  kill -0 "$mcpd_pid" || { echo "mcpd died"; tail -50 "$dir/mcpd.log"; exit 1; }
  sleep 0.5
done
wait "$client_pid" || true
client_pid=
sample "$(( $(date +%s) - start ))"

echo "==> 10000 idle connections held while /healthz is asked"
held=$(python3 - "$gateway_port" <<'EOF'
import socket, sys, time, http.client
port = int(sys.argv[1])
socks = []
for _ in range(10000):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        socks.append(s)
    except OSError:
        s.close()
started = time.monotonic()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
conn.request("GET", "/healthz")
status = conn.getresponse().status
print(f"{len(socks)} {status} {time.monotonic() - started:.3f}")
for s in socks:
    s.close()
EOF
)
echo "held connections, /healthz status, seconds: $held"
# Let the daemon notice the closed connections, then sample again (a row of its own).
for _ in $(seq 1 50); do
  [ "$(ls "/proc/$mcpd_pid/fd" | wc -l)" -lt 200 ] && break
  sleep 0.2
done
sample "after-10k"

echo "==> stopping mcpd"
groups=$(ls "$dir/state/groups" 2>/dev/null | while read -r f; do cat "$dir/state/groups/$f"; echo; done)
kill -TERM "$mcpd_pid"
code=0
wait "$mcpd_pid" || code=$?
mcpd_pid=
left=0
for g in $groups; do
  n=$(pgrep -g "$g" 2>/dev/null | wc -l || true)
  left=$(( left + n ))
done

python3 - "$dir" "$kills" "$reloads" "$code" "$left" "$VICTIM" "$held" <<'EOF'
import csv, json, sys
d, kills, reloads, code, left, victim, held = sys.argv[1:8]
client = json.load(open(f"{d}/client.json"))
all_rows = list(csv.DictReader(open(f"{d}/samples.csv")))
after_10k = {k: float(v) for k, v in all_rows[-1].items() if k != "elapsed_s"}
rows = [{k: float(v) for k, v in r.items()} for r in all_rows[:-1]]
base = rows[min(1, len(rows) - 1)]  # after warm-up
last = rows[-1]  # when the traffic stopped
peak = {k: max(r[k] for r in rows) for k in rows[0]}
problems = []
for name, s in client["servers"].items():
    line = f"  {name:8} ok={s['ok']:8} failed={s['failed']:5}"
    print(line + ("  (victim)" if name == victim else ""))
    if name != victim and s["failed"]:
        problems.append(f"{name}: {s['failed']} failed requests: {s['first_errors']}")
print(f"  victim SIGKILLs: {kills}, reloads: {reloads}, seconds: {client['seconds']}")
for key, bound in (("rss_kib", lambda b: b * 1.5 + 20480), ("fds", lambda b: b + 64), ("threads", lambda b: b + 16)):
    print(f"  {key:8} after warm-up={base[key]:.0f} end={last[key]:.0f} peak={peak[key]:.0f}")
    if last[key] > bound(base[key]):
        problems.append(f"{key} grew from {base[key]:.0f} to {last[key]:.0f}")
print(f"  after the 10 000 connections closed: rss_kib={after_10k['rss_kib']:.0f} "
      f"fds={after_10k['fds']:.0f} threads={after_10k['threads']:.0f}")
if after_10k["fds"] > last["fds"] + 64:
    problems.append(f"{after_10k['fds']:.0f} descriptors still open after the 10 000 connections closed")
print(f"  zombie children, peak: {peak['zombie_children']:.0f}")
if peak["zombie_children"]:
    problems.append("zombie children seen")
count, status, _ = held.split()
if status != "200":
    problems.append(f"/healthz answered {status} with {count} connections held")
print(f"  mcpd exit code on SIGTERM: {code}; server processes left: {left}")
if code != "0":
    problems.append(f"mcpd exited {code}")
if left != "0":
    problems.append(f"{left} server processes left behind")
print("soak: " + ("PASS" if not problems else "FAIL\n  " + "\n  ".join(problems)))
sys.exit(1 if problems else 0)
EOF
