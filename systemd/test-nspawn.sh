#!/usr/bin/env bash
# End-to-end test of the Debian package under a real systemd: bootstraps a minimal Debian 12
# root (cached under target/nspawn/), boots it with systemd-nspawn, installs the package with
# apt inside it (maintainer scripts, sysusers, tmpfiles and conffiles run for real) and drives
# the service as an operator would. Needs root, debootstrap and systemd-container.
#
#   systemd/test-nspawn.sh target/debian/mcpd_*.deb
#
# Skips, saying why, only when systemd-nspawn cannot boot a container on this machine.
# The host needs no systemd of its own: the container is not registered with machined and is
# entered with nsenter.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(realpath "${1:?usage: $0 PACKAGE.deb}")
cache=$PWD/target/nspawn
base=$cache/bookworm-base
machine=mcpd-e2e-$$
# What the cached base has; a change here rebuilds it.
include=systemd,systemd-sysv,dbus,python3,nodejs,passwd
log=$cache/boot.log
nspawn_pid=
leader=

step() { printf '\n--> %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*"
  if [ -n "$leader" ]; then
    in_ct systemctl status mcpd --no-pager -l 2>&1 | tail -30 || true
    in_ct journalctl -u mcpd --no-pager -n 60 2>&1 || true
  fi
  exit 1
}
skip() {
  printf 'SKIP: systemd-nspawn cannot boot a container here: %s\n' "$*"
  printf '0 passed, 0 failed, 1 skipped\n'
  exit 0
}
in_ct() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local until=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || fail "timed out after ${seconds}s waiting for: $what"
    sleep 0.2
  done
}
prop() { in_ct systemctl show -P "$1" mcpd; }
status_is() { [ "$(prop StatusText)" = "$1" ]; }

cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    [ -z "$leader" ] || in_ct systemctl poweroff >/dev/null 2>&1 || true
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || skip "not root (systemd-nspawn needs root)"
for tool in debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (.ci/run installs debootstrap and systemd-container)"
done

# The Debian mirror this machine's apt uses.
mirror=$(grep -h -o -E '^(URIs:|deb) +[a-z]+://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
  /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v -e security -e updates | head -1 | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
if [ "$(cat "$base/.mcpd-include" 2>/dev/null)" != "$include" ] || [ ! -e "$base/usr/lib/os-release" ]; then
  step "bootstrapping Debian 12 into $base (cached for later runs) from $mirror"
  rm -rf "$base" "$base.new"
  debootstrap --variant=minbase --include="$include" bookworm "$base.new" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; fail "debootstrap failed"; }
  echo "$include" >"$base.new/.mcpd-include"
  mv "$base.new" "$base"
fi

step "booting it with systemd-nspawn"
# --volatile=overlay: every write goes to a tmpfs over the cached base, which stays as it is.
# --private-network: only loopback, so the gateway's 127.0.0.1:8080 is the container's own.
systemd-nspawn --quiet --register=no --keep-unit --private-network --volatile=overlay \
  -M "$machine" -D "$base" -b --bind-ro="$deb:/root/mcpd.deb" \
  --bind-ro="$PWD/systemd/e2e:/usr/local/lib/mcpd-e2e" </dev/null >"$log" 2>&1 &
nspawn_pid=$!
# The container's init, once nspawn has exec'd it (nspawn's first child is a helper).
booted_state() {
  leader=$(pgrep -P "$nspawn_pid" -x systemd | head -1 || true)
  [ -n "$leader" ] || return 1
  state=$(in_ct systemctl is-system-running 2>/dev/null || true)
  case $state in running | degraded) return 0 ;; *) return 1 ;; esac
}
state=
boot_start=$SECONDS
until booted_state; do
  kill -0 "$nspawn_pid" 2>/dev/null || skip "$(grep -v '^$' "$log" | tail -5 | tr '\n' ' ')"
  [ $((SECONDS - boot_start)) -lt 300 ] || fail "systemd in the container did not finish booting in 300 s (state: ${state:-none}): $(tail -5 "$log" | tr '\n' ' ')"
  sleep 0.2
done
echo "booted: $(in_ct systemctl --version | head -1)"

passed=0
ok() { printf 'ok: %s\n' "$*"; passed=$((passed + 1)); }

# A short watchdog for the test, so that "past twice WatchdogSec" takes seconds.
in_ct mkdir -p /etc/systemd/system/mcpd.service.d
in_ct sh -c 'printf "[Service]\nWatchdogSec=3s\n" >/etc/systemd/system/mcpd.service.d/e2e-watchdog.conf'

step "apt install of the package"
in_ct apt-get install -y -q /root/mcpd.deb >"$cache/apt.log" 2>&1 || { tail -20 "$cache/apt.log"; fail "apt-get install"; }
in_ct getent passwd mcpd >/dev/null || fail "sysusers: no user mcpd"
[ "$(in_ct stat -c '%a %U:%G' /var/lib/mcpd)" = "750 mcpd:mcpd" ] || fail "tmpfiles: /var/lib/mcpd is $(in_ct stat -c '%a %U:%G' /var/lib/mcpd)"
in_ct dpkg-query -W -f='${Conffiles}\n' mcpd | grep -q /etc/mcpd/mcpd.yaml || fail "/etc/mcpd/mcpd.yaml is not a conffile"
ok "installed with apt: user, directories and conffile in place"

in_ct cp /usr/share/doc/mcpd/examples/echo.yaml /etc/mcpd/mcp/echo.yaml
in_ct cp /usr/local/lib/mcpd-e2e/servers.yaml /etc/mcpd/mcp/runtimes.yaml

step "start: Type=notify readiness and STATUS="
in_ct systemctl enable --now mcpd || fail "systemctl enable --now mcpd"
[ "$(prop ActiveState)" = active ] || fail "not active after start: $(prop ActiveState)"
ok "active (systemctl start returned after READY=1)"
wait_for 60 "STATUS=3/3 servers running" status_is "3/3 servers running"
ok "STATUS reached: $(prop StatusText) (echo, Python and Node servers under the unit's hardening)"
in_ct systemd-cgls --no-pager -u mcpd.service | grep -q 'mcpd reaper' || fail "no 'mcpd reaper' in the cgroup tree"
in_ct systemd-cgls --no-pager -u mcpd.service | grep -q '/bin/sh' && fail "a shell in the unit's cgroup tree"
ok "the reaper shows as 'mcpd reaper'"

step "each server in a cgroup of its own (Delegate=yes)"
unit_cgroup=$(prop ControlGroup)
if [ "$(in_ct stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  in_ct grep -q -x "$(prop MainPID)" "/sys/fs/cgroup$unit_cgroup/daemon/cgroup.procs" ||
    fail "mcpd is not in $unit_cgroup/daemon: $(in_ct systemd-cgls --no-pager -u mcpd.service)"
  for server in echo py js; do
    [ -n "$(in_ct cat "/sys/fs/cgroup$unit_cgroup/servers/$server/cgroup.procs")" ] ||
      fail "no process in $unit_cgroup/servers/$server"
  done
  [ "$(in_ct cat "/sys/fs/cgroup$unit_cgroup/servers/py/memory.max")" = 268435456 ] ||
    fail "py's memory.max is $(in_ct cat "/sys/fs/cgroup$unit_cgroup/servers/py/memory.max")"
  [ "$(in_ct cat "/sys/fs/cgroup$unit_cgroup/servers/py/pids.max")" = 64 ] || fail "py's pids.max"
  ok "mcpd in $unit_cgroup/daemon, each server in $unit_cgroup/servers/<name>, py's limits written"
else
  echo "not checked: the container's cgroups are v1 ($(in_ct stat -fc %T /sys/fs/cgroup)), which nspawn mounts read-only"
fi

step "watchdog"
main=$(prop MainPID)
# WatchdogSec=3s: wait until the service has been up for more than twice that (it was
# active before this point).
up_since=$SECONDS
past_two_watchdogs() { [ $((SECONDS - up_since)) -gt 7 ]; }
wait_for 30 "7 s of uptime" past_two_watchdogs
[ "$(prop MainPID)" = "$main" ] && [ "$(prop NRestarts)" = 0 ] && [ "$(prop ActiveState)" = active ] ||
  fail "the watchdog restarted mcpd: MainPID $(prop MainPID), NRestarts $(prop NRestarts)"
ok "alive past twice WatchdogSec (3 s) with the same main process"

step "editing a server file applies"
in_ct sh -c "sed 's/^  echo:/  echo2:/' /etc/mcpd/mcp/echo.yaml >/etc/mcpd/mcp/echo2.yaml"
wait_for 60 "STATUS=4/4 servers running" status_is "4/4 servers running"
in_ct mcpctl list | grep -q echo2 || fail "echo2 not in mcpctl list"
ok "a new server file started its server without a reload"

step "systemctl reload applies a daemon-file change"
origin_status() {
  in_ct python3 -c 'import sys, urllib.request, urllib.error
req = urllib.request.Request("http://127.0.0.1:8080/api/v1/mcp/registry", headers={"Origin": "http://app.example"})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)'
}
[ "$(origin_status)" = 403 ] || fail "an unlisted Origin was not refused: $(origin_status)"
in_ct sed -i 's|^  allowed_origins: \[\]|  allowed_origins: ["http://app.example"]|' /etc/mcpd/mcpd.yaml
in_ct grep -q 'app.example' /etc/mcpd/mcpd.yaml || fail "could not edit mcpd.yaml"
in_ct systemctl reload mcpd || fail "systemctl reload mcpd failed"
[ "$(origin_status)" = 200 ] || fail "the reloaded allowed_origins is not applied: $(origin_status)"
[ "$(prop ActiveState)" = active ] || fail "not active after reload"
ok "systemctl reload succeeded and applied gateway.allowed_origins"
# A setting that needs a restart is a notice: the reload still succeeds.
in_ct sed -i 's|^port_range: 5000-5999|port_range: 5000-5998|' /etc/mcpd/mcpd.yaml
in_ct systemctl reload mcpd || fail "systemctl reload failed for a restart notice"
in_ct sed -i 's|^port_range: 5000-5998|port_range: 5000-5999|' /etc/mcpd/mcpd.yaml
in_ct systemctl reload mcpd || fail "systemctl reload after reverting"
ok "a restart-needed notice does not fail systemctl reload"

step "mcpctl access by group"
in_ct useradd -m -G mcpd alice
in_ct useradd -m bob
in_ct runuser -u alice -- mcpctl list >/dev/null || fail "alice (group mcpd) cannot use mcpctl"
if out=$(in_ct runuser -u bob -- mcpctl list 2>&1); then fail "bob (not in group mcpd) used mcpctl: $out"; fi
ok "a member of group mcpd can use mcpctl, another user cannot ($out)"

step "systemctl kill -s KILL of the main process"
ports_of() { in_ct mcpctl --json list | python3 -c 'import json, sys
servers = json.load(sys.stdin)
servers = servers["servers"] if isinstance(servers, dict) else servers
print(" ".join("%s=%s" % (s["name"], s["port"]) for s in sorted(servers, key=lambda s: s["name"])))'; }
# Processes of user mcpd in the container (minbase has no procps).
mcpd_pids() { in_ct find /proc -maxdepth 1 -user mcpd -name '[0-9]*' -printf '%f\n'; }
ports_before=$(ports_of)
main=$(prop MainPID)
server_pids=$(mcpd_pids | grep -v -x "$main" | tr '\n' ' ')
[ -n "$server_pids" ] || fail "no server processes found"
in_ct systemctl kill -s KILL --kill-whom=main mcpd
no_old_process() {
  local pid
  for pid in $server_pids $main; do
    in_ct test -e "/proc/$pid" && [ "$(in_ct awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && return 1
  done
  return 0
}
wait_for 30 "every old process ($main $server_pids) to be gone" no_old_process
ok "no process of the killed daemon's servers left"
restarted() { [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" != "$main" ] && [ "$(prop MainPID)" != 0 ]; }
wait_for 60 "systemd to restart mcpd" restarted
wait_for 60 "STATUS=4/4 servers running after the restart" status_is "4/4 servers running"
[ "$(ports_of)" = "$ports_before" ] || fail "ports changed: $ports_before -> $(ports_of)"
ok "systemd restarted mcpd; every server is back on its old port ($ports_before)"

step "systemctl stop"
cgroup=$(prop ControlGroup)
in_ct systemctl stop mcpd
[ "$(prop ActiveState)" = inactive ] || fail "not inactive after stop: $(prop ActiveState)"
left=$( (in_ct cat "/sys/fs/cgroup$cgroup/cgroup.procs" 2>/dev/null || true; mcpd_pids) | tr '\n' ' ')
[ -z "${left// /}" ] || fail "processes left after stop: $left"
ok "stopped with no process left in the unit's cgroup ($cgroup)"

step "journal"
stamped=$(in_ct journalctl -u mcpd -o cat --no-pager | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:|\x1b\[' || true)
[ -z "$stamped" ] || fail "journal lines with their own timestamp or colours: $(echo "$stamped" | head -3)"
[ "$(in_ct journalctl -u mcpd -o cat --no-pager | grep -c 'mcpd ready')" -ge 2 ] || fail "the journal lacks mcpd's own lines"
ok "journalctl -u mcpd lines carry no timestamp of their own"

step "systemd-analyze security"
exposure=$(in_ct systemd-analyze security mcpd.service --no-pager | grep -o -E 'exposure level for mcpd.service: [0-9.]+' | awk '{print $NF}')
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security"
awk -v e="$exposure" 'BEGIN { exit !(e <= 3.0) }' || fail "exposure $exposure > 3.0"
ok "systemd-analyze security mcpd: exposure $exposure (<= 3.0)"

printf '\nnspawn: %d passed, 0 failed\n' "$passed"
