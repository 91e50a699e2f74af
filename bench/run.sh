#!/usr/bin/env bash
# mcpd benchmarks: builds the release binaries once, installs the comparison tools if missing,
# runs every benchmark (bench/harness.py) and rewrites bench/BENCH.md.
#
#   bench/run.sh            # full run (about 15 minutes on 2 cores)
#   bench/run.sh --quick    # fewer, shorter runs (about 8 minutes)
#   bench/run.sh --compare REV [--quick]   # the gateway cases, this tree vs REV, alternately
#   bench/run.sh --authz [--rounds N]        # JWT + rules + audit on vs all off, alternately
#
# Options after the mode go to the harness (see `python3 bench/harness.py --help`), e.g.
# `bench/run.sh --quick --only gateway` (or `--only virtual`: the virtual-server rows); one
# part's report goes to target/bench/BENCH-<part>.md, and BENCH.md stays the last full run's.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

# --compare REV (anywhere in the arguments); the rest goes to the harness.
compare=""
# --compare and --authz measure mcpd builds against each other: no nginx, supervisord or
# mcp-proxy to install (and build) first.
mcpd_only=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --compare) compare="${2:?--compare needs a revision}"; mcpd_only=1; shift 2 ;;
        --compare=*) compare="${1#--compare=}"; mcpd_only=1; shift ;;
        --authz) mcpd_only=1; args+=("$1"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done

# The comparison tools come from Debian packages; install only what is missing.
need=()
if [ -z "$mcpd_only" ]; then
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v supervisord >/dev/null 2>&1 || need+=(supervisor)
    command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
fi
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# The Rust `mcp-proxy` crate, the aggregating MCP proxy the virtual-server rows compare with:
# built once into target/bench-tools and kept (MCPD_BENCH_MCP_PROXY=PATH uses another binary).
MCP_PROXY_VERSION=0.6.0
if [ -z "$mcpd_only" ] && [ -z "${MCPD_BENCH_MCP_PROXY:-}" ] && [ ! -x target/bench-tools/bin/mcp-proxy ]; then
    echo "installing mcp-proxy $MCP_PROXY_VERSION into target/bench-tools (once; a few minutes)"
    nice cargo install mcp-proxy --version "$MCP_PROXY_VERSION" --locked --root target/bench-tools --quiet ||
        echo "mcp-proxy did not build: the virtual-server rows leave it out"
fi

# 1000 servers, each with a few sockets and pipes, plus the gateway's connections.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "building release binaries"
cargo build --release --quiet -p mcpd -p mcpctl -p mcp-echo -p mcpd-loadgen

if [ -n "$compare" ]; then
    # REV's mcpd and mcpctl, built in a worktree of its own with its own target dir. Both
    # stay under target/compare-<rev>/ (the worktree is moved to REV's commit, not made
    # anew), so the next comparison with the same REV builds only what changed.
    sha=$(git rev-parse --verify --quiet "$compare^{commit}") \
        || { echo "--compare: no such revision: $compare" >&2; exit 2; }
    dir="$root/target/compare-$(printf '%s' "$compare" | tr -c 'A-Za-z0-9._-' '-')"
    tree="$dir/tree"
    # Only a worktree of its own (inside this one, `git -C` would find this tree instead).
    if [ -d "$tree" ] && [ "$(git -C "$tree" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$tree" && pwd -P)" ]; then
        git -C "$tree" checkout --quiet --detach --force "$sha"
    else
        rm -rf "$tree"
        git worktree prune
        git worktree add --quiet --detach "$tree" "$sha"
    fi
    echo "building $compare (${sha:0:12}) into $dir/target"
    (cd "$tree" && CARGO_TARGET_DIR="$dir/target" cargo build --release --quiet -p mcpd -p mcpctl)
    exec python3 "$root/bench/harness.py" --root "$root" --compare-bin "$dir/target/release" \
        --compare-label "$compare (${sha:0:12})" --compare-report "$dir/report.md" \
        ${args[@]+"${args[@]}"}
fi

exec python3 "$root/bench/harness.py" --root "$root" ${args[@]+"${args[@]}"}
