#!/usr/bin/env bash
# A profile-guided (PGO) release build of gitgate: the build whose figures bench/RESULTS.md
# reports.
#
#   bench/pgo.sh [OUT]              default OUT: target/pgo/gitgate
#   PGO_TRAIN=e2e bench/pgo.sh      train on the end-to-end tests instead of the benchmark
#
# 1. Builds gitgate instrumented (-Cprofile-generate), apart from target/.
# 2. Trains it on real traffic. PGO_TRAIN=bench (the default, as root) runs
#    `bench/run.sh --quick --only gitgate`: large and small clones, a 1 GiB download, small
#    requests on one and on 16 connections, new connections, a push, 50 concurrent clones.
#    PGO_TRAIN=e2e runs `cargo test --release -p gitgate --test e2e` (needs what the
#    tests need, root included: README), with no benchmark in the loop. Only the gitgate runs that exit cleanly
#    write a profile (the tests' `cli` runs, restarts and shutdowns); the harness kills
#    the others. That binary is also built with the test-only features of shared
#    dependencies, so a few functions' profiles do not match the final build.
# 3. Merges what gitgate recorded with llvm-profdata (rustup's llvm-tools component, added
#    if missing; it must match rustc's LLVM).
# 4. Builds the release binary with -Cprofile-use and copies it to OUT.
#
# PGO changes how the compiler inlines and lays out code, never what the code does; the
# tests (`cargo test`) cover the same source. Work dir: $PGO_WORK (default
# /var/tmp/gitgate-pgo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# Absolute: the builds run from $root, and the instrumented programs write their profiles
# from wherever they run.
out="$(realpath -m "${1:-$root/target/pgo/gitgate}")"
work="$(realpath -m "${PGO_WORK:-/var/tmp/gitgate-pgo}")"
train="${PGO_TRAIN:-bench}"
profiles="$work/profiles"

log() { printf '[pgo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/pgo.sh: %s\n' "$*" >&2; exit 1; }

case $train in
  bench | e2e) [[ $(id -u) -eq 0 ]] || die "PGO_TRAIN=$train needs root (bench/run.sh, like the end-to-end tests' network-namespace test, does); run as root" ;;
  *) die "PGO_TRAIN=$train: expected bench or e2e" ;;
esac

host="$(rustc -vV | sed -n 's/^host: //p')"
tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"
if [[ ! -x $tools/llvm-profdata ]]; then
  log "rustup component add llvm-tools (for llvm-profdata and llvm-readobj)"
  rustup component add llvm-tools >&2 || die "cannot install llvm-tools; llvm-profdata must match rustc's LLVM ($(rustc -vV | sed -n 's/^LLVM version: //p'))"
fi

mkdir -p "$work"
rm -rf "$profiles"
generate=(env RUSTFLAGS="-Cprofile-generate=$profiles" cargo)
cd "$root"
case $train in
  bench)
    log "building instrumented gitgate"
    "${generate[@]}" build --release -q -p gitgate --target-dir "$work/target-generate"
    rm -rf "$profiles" # what build scripts recorded while the build ran
    log "training: bench/run.sh --quick --only gitgate"
    GITGATE_BIN="$work/target-generate/release/gitgate" "$here/run.sh" --quick --only gitgate \
      --out "$work/training.md" >"$work/training.log" 2>&1 \
      || die "training run failed; see $work/training.log"
    ;;
  e2e)
    log "building instrumented gitgate and the end-to-end tests"
    "${generate[@]}" test --release -q -p gitgate --test e2e --no-run --target-dir "$work/target-generate"
    rm -rf "$profiles"
    log "training: cargo test --release -p gitgate --test e2e"
    "${generate[@]}" test --release -q -p gitgate --test e2e --target-dir "$work/target-generate" \
      >"$work/training.log" 2>&1 || die "training run failed; see $work/training.log"
    ;;
esac

# Keep gitgate's own profile: each instrumented program (gitgate, and with PGO_TRAIN=e2e
# the test binary, which runs the GitHub stand-in) writes its own file, marked with the
# program's build ID.
build_id="$("$tools/llvm-readobj" --notes "$work/target-generate/release/gitgate" | sed -n 's/^ *Build ID: //p')"
[[ -n $build_id ]] || die "the instrumented gitgate has no build ID note"
mine=()
for f in "$profiles"/*.profraw; do
  [[ -e $f ]] || continue
  if "$tools/llvm-profdata" show --binary-ids "$f" | grep -qx "$build_id"; then mine+=("$f"); fi
done
((${#mine[@]})) || die "the training recorded no profile of gitgate (build ID $build_id) in $profiles; see $work/training.log"
log "merging ${#mine[@]} profile(s)"
"$tools/llvm-profdata" merge -o "$work/merged.profdata" "${mine[@]}"
# Named by its content: cargo rebuilds when RUSTFLAGS change, not when a file they name does.
profile="$work/gitgate-$(sha256sum "$work/merged.profdata" | cut -c1-16).profdata"
rm -f "$work"/gitgate-*.profdata
mv "$work/merged.profdata" "$profile"

log "building gitgate with the profile"
RUSTFLAGS="-Cprofile-use=$profile" \
  cargo build --release -q -p gitgate --target-dir "$work/target-use"
mkdir -p "$(dirname "$out")"
cp "$work/target-use/release/gitgate" "$out"
log "wrote $out"
