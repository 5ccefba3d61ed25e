#!/usr/bin/env bash
# gitgate performance benchmark: one command.
#
#   bench/run.sh            full run (5 rounds per scenario, 11 for ka1, 9 for clones50; ~13 min)
#   bench/run.sh --quick    one round per scenario (< 3 min once the data exists)
#   bench/run.sh --pgo      benchmark a profile-guided build (bench/pgo.sh; +8 min to build)
#
# Other options are passed to bench/bench.py (--only gitgate,squid, --scenarios download,
# --rounds N, --out FILE). Needs root (nginx on 127.0.0.1:443, apt-get, mount namespaces).
# Work dir: $BENCH_WORK (default /var/tmp/gitgate-bench): data, logs, venv, last report.
# GITGATE_BIN=/path/to/gitgate benchmarks that binary instead of building target/release;
# GITGATE_REV=HEAD (or any commit) exports that commit and builds it apart from the work tree.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
work="${BENCH_WORK:-/var/tmp/gitgate-bench}"
export BENCH_WORK="$work"
mkdir -p "$work"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "bench/run.sh must run as root (nginx binds 127.0.0.1:443; apt-get; unshare -m)" >&2
  exit 1
fi

# --pgo is this script's; everything else goes to bench.py.
pgo=0
args=()
for arg in "$@"; do
  if [[ $arg == --pgo ]]; then pgo=1; else args+=("$arg"); fi
done
if ((pgo)) && [[ -n ${GITGATE_BIN:-}${GITGATE_REV:-} ]]; then
  echo "bench/run.sh: --pgo builds the work tree; it cannot be combined with GITGATE_BIN or GITGATE_REV" >&2
  exit 2
fi

# --- system packages, each only if missing -------------------------------------------
need=()
for pkg in nginx:nginx fcgiwrap:fcgiwrap squid-openssl:squid-openssl tinyproxy:tinyproxy \
           curl:curl openssl:openssl git:git python3-venv:python3-venv util-linux:util-linux; do
  check="${pkg#*:}"; name="${pkg%%:*}"
  if ! dpkg -s "$check" >/dev/null 2>&1; then
    # nginx: any flavour providing /usr/sbin/nginx will do.
    if [[ $check == nginx ]] && command -v nginx >/dev/null; then continue; fi
    need+=("$name")
  fi
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  # Never let the packages' init scripts start system-wide daemons.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d 2>/dev/null || true
  trap - EXIT
fi

# --- mitmproxy from PyPI, in a venv -----------------------------------------------------
py="$(command -v python3)"
if [[ ! -x $work/venv/bin/mitmdump ]]; then
  log "installing mitmproxy into $work/venv"
  rm -rf "$work/venv"
  if ! "$py" -m venv "$work/venv" 2>/dev/null; then
    py=/usr/bin/python3
    "$py" -m venv "$work/venv"
  fi
  "$work/venv/bin/pip" install -q --disable-pip-version-check mitmproxy
fi

# --- gitgate (release) and the latency client -------------------------------------------
if [[ -n ${GITGATE_BIN:-} ]]; then
  log "using GITGATE_BIN=$GITGATE_BIN (not building)"
elif ((pgo)); then
  log "profile-guided build: bench/pgo.sh (trains on bench/run.sh --quick)"
  "$here/pgo.sh" "$work/pgo/gitgate"
  tree="$(git -C "$root" log -1 --format='%h %cs')"
  export GITGATE_BIN="$work/pgo/gitgate" GITGATE_BUILT_FROM="PGO build (bench/pgo.sh) of the work tree at $tree"
elif [[ -n ${GITGATE_REV:-} ]]; then
  # Benchmark a commit, whatever the work tree holds: export it and build it apart.
  sha="$(git -C "$root" rev-parse --short=12 "$GITGATE_REV^{commit}")"
  src="$work/src-$sha"
  if [[ ! -d $src ]]; then
    mkdir -p "$src.tmp" && git -C "$root" archive "$sha" | tar -x -C "$src.tmp" && mv "$src.tmp" "$src"
  fi
  log "cargo build --release -p gitgate at $sha (exported to $src)"
  (cd "$src" && cargo build --release -q -p gitgate --target-dir "$work/target-rev")
  export GITGATE_BIN="$work/target-rev/release/gitgate" GITGATE_BUILT_FROM="commit $sha"
else
  log "cargo build --release -p gitgate"
  if ! (cd "$root" && cargo build --release -q -p gitgate); then
    echo "bench: building gitgate failed; fix the build, or set GITGATE_BIN=/path/to/gitgate" >&2
    exit 1
  fi
fi
log "building the latency client (bench/client)"
cargo build --release -q --manifest-path "$here/client/Cargo.toml" --target-dir "$work/client-target"
log "building the byte relay (bench/relay, the opt-in rustls-relay contender)"
cargo build --release -q --manifest-path "$here/relay/Cargo.toml" --target-dir "$work/relay-target"

# --- run ----------------------------------------------------------------------------------
# bench.py stops everything it started on exit, error or signal; this trap covers a
# kill of this script while bench.py runs (it has its own session-less process group).
child=
cleanup() { [[ -n $child ]] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null; true; }
trap cleanup INT TERM HUP
"$py" "$here/bench.py" ${args[@]+"${args[@]}"} &
child=$!
set +e
wait "$child"
status=$?
# wait returns early when a trapped signal arrives: wait for the real exit.
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit "$status"
